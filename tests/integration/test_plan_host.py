"""conduit plan against the real Docker daemon of the test harness."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from click.testing import CliRunner

from harness import free_port_block
from conduit.cli.root import main
from conduit.drivers.docker import CountingClient, create_container, create_volume
from conduit.spec.load import load_text
from conduit.drivers.observe import HostAccess
from conduit.engine.images import record_learned
from conduit.engine.intent import Apply
from conduit.engine.observe import plan_on_host
from conduit.engine.settle import settle
from conduit.state.db import Database
from conduit.state.images import Images
from conduit.render.container import labels
from conduit.render.desired import render
from conduit.spec.resolve import nodes
from tests.helpers import CONDUIT, SMALL_VPS, cli_env, minimal

pytestmark = pytest.mark.integration

COUNT = 3
# Each test's metrics ports, chosen when it starts: a block chosen when the module is
# collected may be taken by something else by the time its test runs.
PORT_BASES: dict[str, int] = {}


def port_base(prefix: str) -> int:
    if prefix not in PORT_BASES:
        PORT_BASES[prefix] = free_port_block(COUNT + 2)
    return PORT_BASES[prefix]


def spec_text(image: str, prefix: str, **changes) -> str:
    conduit = {"max_clients": 40, "bandwidth_mbps": 2, "metrics_port_base": port_base(prefix)}
    conduit.update(changes.pop("conduit", {}))
    containers = {
        "count": COUNT,
        "image": image,
        "naming": {"prefix": prefix, "volume_prefix": f"{prefix}-data"},
        "resources": {"cpus": 0.2, "memory": "96MiB", "ulimit_nofile": 4096},
    }
    containers.update(changes.pop("containers", {}))
    doc = minimal(
        containers=containers,
        conduit=conduit,
        sysctl={"enabled": False},
        tracker={"enabled": False},
        **changes,
    )
    doc["metadata"]["name"] = prefix
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def host(docker_engine, tmp_path):
    return HostAccess(root=tmp_path / "root", state_dir=tmp_path / "state", docker_host=docker_engine.host)


@pytest.fixture
def prefix(docker_cleanup):
    return docker_cleanup.name("plan")


def load(text):
    doc = load_text(text, "cluster.yaml", SMALL_VPS)
    return settle(doc).spec


def converge(host: HostAccess, text: str) -> None:
    """Make the host match the spec with plain Docker calls, as an operator would."""
    doc = load(text)
    client = CountingClient(host.docker_host)
    desired = {r.id: r for r in render(doc) if r.kind == "container"}
    for node in nodes(doc):
        create_volume(client, node.volume, doc.metadata.name)
        props = desired[node.name].props
        container_id = create_container(client, node.name, props, labels(doc, node, props))
        client.api.start(container_id)


def test_empty_host_plans_creates(host, standin_image, prefix):
    plan = plan_on_host(Apply(), load(spec_text(standin_image, prefix)), host)[0]
    creates = [(s.kind, s.id) for s in plan.changes if s.action == "create"]
    assert [i for k, i in creates if k == "container"] == [f"{prefix}-{i}" for i in range(1, COUNT + 1)]
    assert [i for k, i in creates if k == "volume"] == [f"{prefix}-data-{i}" for i in range(1, COUNT + 1)]
    assert plan.problems == [] and len(plan.changes) == 2 * COUNT


def test_converged_host_plans_nothing_in_three_api_calls(host, standin_image, prefix):
    text = spec_text(standin_image, prefix)
    converge(host, text)
    first, seen = plan_on_host(Apply(), load(text), host)  # asks the image once (a few throwaway containers)
    record_learned(Images(Database(host.state_dir)), seen.learned)  # as an apply records what its plan learned
    plan = plan_on_host(Apply(), load(text), host)[0]
    assert plan.changes == [], [(s.id, s.changes) for s in plan.changes]
    assert first.api_calls > plan.api_calls
    # one inspect of the image (its facts cached by image ID), one labelled list of
    # containers and one list of volumes; limits come from the cgroups
    assert plan.api_calls == 3


def test_one_containers_memory_is_one_in_place_update(host, standin_image, prefix):
    converge(host, spec_text(standin_image, prefix))
    changed = spec_text(standin_image, prefix, containers={"overrides": {2: {"memory": "128MiB"}}})
    plan = plan_on_host(Apply(), load(changed), host)[0]
    (step,) = plan.changes
    assert (step.action, step.id) == ("update", f"{prefix}-2")
    assert [(c.field, c.old, c.new) for c in step.changes] == [("memory", 96 << 20, 128 << 20)]


def test_max_clients_change_replaces_every_container(host, standin_image, prefix):
    converge(host, spec_text(standin_image, prefix))
    plan = plan_on_host(Apply(), load(spec_text(standin_image, prefix, conduit={"max_clients": 50})), host)[0]
    names = [f"{prefix}-{i}" for i in range(1, COUNT + 1)]
    assert [(s.action, s.id) for s in plan.changes] == [("backup", ",".join(names))] + [("replace", name) for name in names]
    assert all(c.field == "command" and c.forces_replacement for s in plan.changes for c in s.changes)


def test_hand_edits_show_as_drift(host, standin_image, prefix, docker_engine):
    text = spec_text(standin_image, prefix)
    converge(host, text)
    client = docker_engine.client
    client.containers.get(f"{prefix}-1").update(mem_limit="112m", memswap_limit="112m")
    client.containers.get(f"{prefix}-3").stop(timeout=5)
    plan = plan_on_host(Apply(), load(text), host)[0]
    steps = {s.id: s for s in plan.changes}
    assert set(steps) == {f"{prefix}-1", f"{prefix}-3"}
    assert steps[f"{prefix}-1"].reason == "drift"
    assert [(c.field, c.old, c.new) for c in steps[f"{prefix}-1"].changes] == [("memory", 112 << 20, 96 << 20)]
    assert steps[f"{prefix}-3"].reason == "drift"
    assert [(c.field, c.old, c.new) for c in steps[f"{prefix}-3"].changes] == [("state", "exited", "running")]


def test_removed_containers_are_deleted_and_volumes_kept(host, standin_image, prefix):
    converge(host, spec_text(standin_image, prefix))
    plan = plan_on_host(Apply(), load(spec_text(standin_image, prefix, containers={"count": 1})), host)[0]
    assert [(s.action, s.kind, s.id) for s in plan.changes] == [
        ("delete", "container", f"{prefix}-2"),
        ("delete", "container", f"{prefix}-3"),
    ]


def test_foreign_container_with_our_name_is_a_problem_and_untouched(host, standin_image, prefix, docker_engine):
    docker_engine.client.containers.create(standin_image, name=f"{prefix}-2", command=["--version"])
    plan = plan_on_host(Apply(), load(spec_text(standin_image, prefix)), host)[0]
    assert any(f"{prefix}-2 exists and is not managed by conduit" in p for p in plan.problems)
    assert docker_engine.client.containers.get(f"{prefix}-2").status == "created"


def test_cli_plan_output_and_detailed_exitcode(host, standin_image, prefix, tmp_path):
    spec = tmp_path / "cluster.yaml"
    spec.write_text(spec_text(standin_image, prefix))
    args = ["--docker-host", host.docker_host, "--root", str(host.root), "--state-dir", str(host.state_dir)]
    runner = CliRunner()
    result = runner.invoke(main, [*args, "plan", "--detailed-exitcode", str(spec)])
    assert result.exit_code == 2, result.output
    assert f"  + container {prefix}-1" in result.output
    assert f"Plan: {2 * COUNT} to add, 0 to change, 0 to destroy." in result.output
    converge(host, spec.read_text())
    result = runner.invoke(main, [*args, "plan", "--detailed-exitcode", "--json", str(spec)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["summary"] == {"add": 0, "change": 0, "destroy": 0, "adopt": 0, "pull": 0, "batches": 0, "new_identity": 0}


def test_unreachable_engine_is_one_line(tmp_path):
    spec = tmp_path / "cluster.yaml"
    spec.write_text(spec_text("conduit-standin:2.0.0", "x"))
    result = subprocess.run(
        [*CONDUIT, "--docker-host", f"unix://{tmp_path}/none.sock", "--root", str(tmp_path), "plan", str(spec)],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: cannot reach the Docker daemon at unix://")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_port_held_by_another_process_is_a_plan_error(host, standin_image, prefix):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port_base(prefix) + 1))  # the metrics port of container 2
        sock.listen()
        plan = plan_on_host(Apply(), load(spec_text(standin_image, prefix)), host)[0]
    (problem,) = [p for p in plan.problems if f"{port_base(prefix) + 1}/tcp" in p]
    assert f"metrics of {prefix}-2" in problem and "already in use by another process" in problem


def test_lacking_permission_on_the_engine_is_one_line(tmp_path):
    """An engine socket the caller may not open: one line that says so, no traceback.

    The socket belongs to another user and the CLI runs as root without capabilities,
    which is what a user outside the docker group meets.
    """
    import os
    import socket

    from harness import need

    setpriv = need("setpriv")
    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    os.chown(path, 65534, 65534)
    path.chmod(0o600)
    spec = tmp_path / "cluster.yaml"
    spec.write_text(spec_text("conduit-standin:2.0.0", "perm"))
    try:
        result = subprocess.run(
            [setpriv, "--bounding-set=-all", "--inh-caps=-all", *CONDUIT, "--docker-host", f"unix://{path}",
             "--state-dir", str(tmp_path / "state"), "--root", str(tmp_path), "plan", str(spec)],
            capture_output=True, text=True, env=cli_env(),
        )
    finally:
        server.close()
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: permission denied on the Docker daemon at unix://{path}")
