"""Two clusters on one host and one state directory: each applies and runs its own tracker beside
the other; a spec that would share a name, a volume or a port with the other is refused, and one
that leaves its sizing to the defaults, which count the whole host, is warned of the other."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conduit.drivers.tracker import tracker_pidfile
from conduit.execute.executor import stop_pidfile
from conduit.facts.oneline import one_line
from conduit.render.container import CLUSTER, MANAGED_BY, MANAGER
from harness import free_port_block
from tests.helpers import cli_env, default_policy_with_standin
from tests.integration import test_apply as base

pytestmark = pytest.mark.integration


class Cluster(base.Cluster):
    """Under the default host policy a real host gets, plus the stand-in images."""

    policy = None

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        Cluster.policy = Cluster.policy or default_policy_with_standin()
        env = cli_env() | {"CONDUIT_POLICY": Cluster.policy}
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)

    def rename(self, name: str) -> None:
        doc = yaml.safe_load(self.spec.read_text())
        doc["metadata"]["name"] = name
        self.spec.write_text(yaml.safe_dump(doc, sort_keys=False))


def _cluster(tmp: Path, engine, image: str, state: Path, prefix: str, port_base: int | None = None) -> Cluster:
    """A cluster named for its prefix (rename() names it otherwise)."""
    tmp.mkdir()
    cluster = Cluster(tmp, engine, image, prefix, port_base or free_port_block(2))
    cluster.state = state  # one state directory for both, as /var/lib/conduit is on a real host
    return cluster


@pytest.fixture
def two(tmp_path, docker_engine, standin_image, docker_cleanup):
    state = tmp_path / "state"
    a = _cluster(tmp_path / "a", docker_engine, standin_image, state, docker_cleanup.name("ca"))
    b = _cluster(tmp_path / "b", docker_engine, standin_image, state, docker_cleanup.name("cb"))
    yield a, b
    for cluster in (a, b):  # a tracker must not outlive its test
        stop_pidfile(tracker_pidfile(state, cluster.prefix))


def test_two_clusters_apply_and_run_side_by_side(two):
    a, b = two
    for cluster in (a, b):
        cluster.write(tracker=True)
        applied = cluster.apply()
        assert applied.returncode == 0, applied.stdout + applied.stderr
    for cluster in (a, b):
        pid = int(tracker_pidfile(a.state, cluster.prefix).read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--cluster") + 1] == cluster.prefix.encode()
        assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}
    # Neither takes the other's nodes or tracker for drift.
    for cluster in (a, b):
        again = cluster.run("plan", "--detailed-exitcode", str(cluster.spec))
        assert again.returncode == 0, again.stdout + again.stderr


def _refusal(cluster: Cluster) -> list[str]:
    planned = cluster.run("plan", str(cluster.spec))
    assert planned.returncode == 1, planned.stdout + planned.stderr
    return planned.stderr.splitlines()


def test_a_spec_that_collides_with_another_cluster_is_refused(two, tmp_path):
    a, b = two
    a.write()
    assert a.apply().returncode == 0
    # The same node names, under another cluster name.
    b.prefix = a.prefix
    b.write()
    b.rename("second")
    lines = _refusal(b)
    assert any(f"container {a.prefix}-1 belongs to cluster {a.prefix} (managed by conduit); give cluster second another name/prefix" in line
               for line in lines), lines  # fmt: skip
    # Other names, but the first cluster's volumes: two nodes on one key.
    other = _cluster(tmp_path / "c", a.engine, a.image, a.state, f"{a.prefix}x")
    other.write(volume_prefix=f"{a.prefix}-data")
    other.rename("second")
    lines = _refusal(other)
    assert any(f"volume {a.prefix}-data-1 of {a.prefix}x-1 (cluster second) is the volume of {a.prefix}-1 (cluster {a.prefix})" in line
               for line in lines), lines  # fmt: skip
    # Other names and volumes, the first cluster's metrics ports.
    ports = _cluster(tmp_path / "d", a.engine, a.image, a.state, f"{a.prefix}y", port_base=a.port_base)
    ports.write()
    ports.rename("second")
    lines = _refusal(ports)
    assert any(f"port {a.port_base}/tcp of {a.prefix}y-1 (cluster second) is held by {a.prefix}-1 (cluster {a.prefix})" in line
               for line in lines), lines  # fmt: skip
    assert not [n for n in a.names() if n.startswith(f"{a.prefix}x") or n.startswith(f"{a.prefix}y")]


def _ids(cluster: Cluster) -> dict[str, str]:
    return {name: cluster.engine.client.containers.get(name).id for name in cluster.names()}


def test_each_cluster_rolls_back_to_its_own_generation(two):
    a, b = two
    a.write()
    assert a.apply().returncode == 0  # generation 1
    b.write()
    assert b.apply().returncode == 0  # generation 2
    a.write(max_clients=60)
    assert a.apply().returncode == 0  # generation 3: the last good one on the host is cluster a's
    kept = _ids(a)
    b.write(max_clients=50, env={"STANDIN_EXIT_AFTER": "0"})
    failed = b.apply()
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "Rolled back to generation 2" in failed.stderr, failed.stderr
    assert b.names() == {f"{b.prefix}-1": "running", f"{b.prefix}-2": "running"}
    assert b.command_of(f"{b.prefix}-1")[2] == "40"  # generation 2's -m
    assert _ids(a) == kept and a.command_of(f"{a.prefix}-1")[2] == "60"

    unnamed = a.run("rollback", "--auto-approve")
    assert unnamed.returncode == 2 and unnamed.stdout == ""
    assert unnamed.stderr == f"error: the state directory holds clusters {', '.join(sorted((a.prefix, b.prefix)))}; give --cluster NAME\n"
    kept = _ids(b)
    back = a.run("rollback", "--auto-approve", "--cluster", a.prefix)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "Rolling back from generation 3 to generation 1" in back.stdout
    assert a.command_of(f"{a.prefix}-1")[2] == "40" and _ids(b) == kept
    other = a.run("rollback", "2", "--auto-approve", "--cluster", a.prefix)
    assert other.returncode == 2 and other.stderr.startswith(f"error: generation 2 is of cluster {b.prefix}, not {a.prefix};")
    shown = a.run("history").stdout.splitlines()
    assert shown[0].split()[:2] == ["gen", "cluster"] and [line.split()[1] for line in shown[1:] if line[:1].isdigit()][:4] == [
        a.prefix, b.prefix, a.prefix, b.prefix]


def _sized_by_default(cluster: Cluster) -> None:
    """The cluster's spec with its CPUs, memory and clients left to the host's defaults."""
    doc = yaml.safe_load(cluster.spec.read_text())
    spec = doc["spec"]
    spec["host"].update(vcpus="auto", memory="auto")  # the whole machine, as read
    del spec["containers"]["resources"]["cpus"], spec["containers"]["resources"]["memory"], spec["conduit"]["max_clients"]
    cluster.spec.write_text(yaml.safe_dump(doc, sort_keys=False))


def _shared(text: str) -> list[str]:
    return [line for line in text.splitlines() if "on this host too" in line]


def test_a_spec_sized_by_default_is_warned_of_the_other_cluster_and_an_explicit_one_is_not(two):
    a, b = two
    for cluster in (a, b):
        cluster.write()
        _sized_by_default(cluster)
    first = a.apply()
    assert first.returncode == 0, first.stdout + first.stderr
    assert _shared(first.stdout + first.stderr) == []  # alone on the host
    planned = b.run("plan", str(b.spec))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert _shared(planned.stdout + planned.stderr) == [
        f"warning: cluster {a.prefix} has 2 nodes on this host too, but this spec leaves containers.resources.cpus, "
        "containers.resources.memory and conduit.max_clients to defaults sized for the whole host: set them, or "
        "host.vcpus and host.memory, to this cluster's part of the host so that both clusters fit"
    ]
    second = b.apply()
    assert second.returncode == 0, second.stdout + second.stderr
    assert _shared(second.stdout + second.stderr) == _shared(planned.stdout + planned.stderr)
    # Each is warned of the other on every plan, and the warning is no change and no drift.
    again = a.run("plan", "--detailed-exitcode", str(a.spec))
    assert again.returncode == 0, again.stdout + again.stderr
    assert [line.split(" on this host")[0] for line in _shared(again.stdout)] == [f"warning: cluster {b.prefix} has 2 nodes"]
    status = a.run("status", "--json", str(a.spec))
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["drift"] == []
    # The host's part described in the spec: the defaults are sized from it, nothing to warn of.
    doc = yaml.safe_load(b.spec.read_text())
    doc["spec"]["host"].update(vcpus=1, memory="2GiB")
    b.spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    described = b.run("plan", str(b.spec))
    assert described.returncode == 0, described.stdout + described.stderr
    assert _shared(described.stdout + described.stderr) == []
    # Sized in the spec: nothing to warn of.
    b.write()
    explicit = b.run("plan", str(b.spec))
    assert explicit.returncode == 0, explicit.stdout + explicit.stderr
    assert _shared(explicit.stdout + explicit.stderr) == [] and "No changes" not in explicit.stdout


def test_another_clusters_label_with_a_newline_is_one_line_in_the_warning_and_the_refusal(two):
    """Any local process can make a container with any label: one that would split the warning, forge a
    line of its own and clear the screen is shown escaped and cut, in the one line it belongs to."""
    _, b = two
    b.write()
    _sized_by_default(b)
    forged = "x\nwarning: cluster forged has 9 nodes\x1b[2J\u202e" + "y" * 300
    labels = {MANAGED_BY: MANAGER, CLUSTER: forged}
    b.engine.client.containers.create(b.image, name=f"{b.prefix}-elsewhere", labels=labels)
    shown = "x\\nwarning: cluster forged has 9 nodes\\x1b[2J\\u202e" + "y" * 29 + "…"
    assert one_line(forged) == shown
    planned = b.run("plan", str(b.spec))
    out = planned.stdout + planned.stderr
    assert planned.returncode == 0, out
    assert _shared(out) == [
        f"warning: cluster {shown} has 1 node on this host too, but this spec leaves containers.resources.cpus, "
        "containers.resources.memory and conduit.max_clients to defaults sized for the whole host: set them, or "
        "host.vcpus and host.memory, to this cluster's part of the host so that both clusters fit"
    ]
    assert "\x1b" not in out and "\u202e" not in out and not [line for line in out.splitlines() if line.startswith("warning: cluster forged")]
    # The same label on a container with the name of one of this cluster's nodes: refused, in one line.
    b.engine.client.containers.create(b.image, name=f"{b.prefix}-1", labels=labels)
    lines = _refusal(b)
    assert f"error: container {b.prefix}-1 belongs to cluster {shown} (managed by conduit); give cluster {b.prefix} another name/prefix " \
           "(containers.naming) or remove it there" in lines, lines
    assert not [line for line in lines if "\x1b" in line or line.startswith("warning: cluster forged")], lines
