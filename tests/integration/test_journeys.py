"""A volunteer's first week, command by command: the `conduit` CLI as a subprocess on the private
Docker daemon, under the default host policy plus the stand-in images. Each journey asserts what
the person would check (exit codes, the lines they would look for, the host's real state) and
leaves its transcript in the test artifacts (journeys/<name>.txt) to be read as a new user would.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

from conduit.state.stores import open_state
from harness import free_port_block, wait_for
from tests.integration.test_adopt_samnet import community_image, samnet_host, telegram  # noqa: F401 - fixtures
from tests.journey import Journey, host_policy

pytestmark = pytest.mark.integration


@pytest.fixture
def journey(request, tmp_path, docker_engine, docker_cleanup):
    """journey(policy=None, name=None) -> a Journey in tmp_path; its transcript is saved at the end, pass or fail."""
    from conduit.execute.executor import stop_pidfile

    made: list[Journey] = []

    def make(policy: str | None = None, name: str | None = None, cwd: Path | None = None, state: Path | None = None) -> Journey:
        made.append(Journey(name or request.node.name.removeprefix("test_"), cwd or tmp_path, docker_engine, policy or host_policy(), state=state))
        return made[-1]

    yield make
    for j in made:
        j.save()
        for pidfile in j.state.glob("tracker-*.pid"):  # one per cluster: a tracker must not outlive its journey
            stop_pidfile(pidfile)


def edit(path: Path, change) -> dict:
    """Load the YAML, let `change` edit the document, write it back (comments are lost; the person's editor would keep them)."""
    doc = yaml.safe_load(path.read_text())
    change(doc["spec"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return doc


def write_spec(path: Path, name: str, image: str, port_base: int, count: int = 2, **more) -> None:
    """A spec as a person would keep it after the first week: a name and prefix of its own, the
    stand-in image, a free block of metrics ports, sizes left to the host (no frozen per-node numbers)."""
    doc = {
        "apiVersion": "conduit.psiphon.ca/v1alpha1",
        "kind": "ConduitCluster",
        "metadata": {"name": name},
        "spec": {
            "containers": {"count": count, "image": image, "naming": {"prefix": name, "volume_prefix": f"{name}-data"}, **more.pop("containers", {})},
            "conduit": {"max_clients": 40, "bandwidth_mbps": 2, "metrics_port_base": port_base},
            "sysctl": {"enabled": False},  # the harness's --root has no kernel behind it
            "tracker": {"enabled": False},
            "health": {"gate_timeout_seconds": 20, "settle_seconds": 1},  # the stand-in starts in half a second
            "rollout": {"max_unavailable": 1, "drain_seconds": 0},
            **more,
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def running(engine, prefix: str) -> dict[str, str]:
    return {c.name: c.status for c in engine.client.containers.list(all=True) if re.fullmatch(rf"{re.escape(prefix)}-\d+", c.name)}


def keys(engine, volume_prefix: str) -> dict[str, bytes]:
    out = {}
    for volume in engine.client.volumes.list():
        if volume.name.startswith(f"{volume_prefix}-"):
            out[volume.name] = (Path(volume.attrs["Mountpoint"]) / "conduit_key.json").read_bytes()
    return out


def get(url: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return 0, None


# ---------------------------------------------------------------------------- 1. a fresh VPS


def test_fresh_vps(journey, docker_engine, standin_image):
    j = journey()
    init = j.run("init", "-o", "cluster.yaml")
    assert init.returncode == 0, init.stderr
    assert "cluster.yaml" in init.stdout + init.stderr
    written = (j.cwd / "cluster.yaml").read_text()
    resources = yaml.safe_load(written)["spec"]["containers"].get("resources") or {}
    j.check(not {"cpus", "memory"} & set(resources), f"init freezes per-node sizes: {resources}")
    prefix, port_base = "fresh", free_port_block(8)

    def first_week(spec: dict) -> None:
        spec["containers"]["count"] = 2  # two keys to grow reputation on, not the one init starts with
        spec["conduit"]["max_clients"] = 50  # a small VPS shared with other work
        spec["containers"]["image"] = standin_image  # the stand-in: no registry is reachable here
        spec["containers"]["naming"]["prefix"] = prefix  # the engine is shared with other tests; init's "conduit" could collide
        spec["conduit"]["metrics_port_base"] = port_base  # 9090 may be taken on this machine
        spec["health"] = {"gate_timeout_seconds": 30, "settle_seconds": 1}  # the stand-in starts in half a second
        spec["tracker"]["interface"] = "lo"  # the harness host's NIC name is unknown; the nodes' region metrics feed it anyway

    j.note("edit cluster.yaml: count 2, max_clients 50, the stand-in image, prefix 'fresh', a free metrics port block")
    edit(j.cwd / "cluster.yaml", first_week)

    validate = j.run("validate", "cluster.yaml")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    plan = j.run("plan", "cluster.yaml")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"{prefix}-1" in plan.stdout and f"{prefix}-2" in plan.stdout
    assert running(docker_engine, prefix) == {}  # a plan changes nothing

    apply = j.run("apply", "--auto-approve", "cluster.yaml")
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert running(docker_engine, prefix) == {f"{prefix}-1": "running", f"{prefix}-2": "running"}
    assert [(g.id, g.outcome) for g in open_state(j.state).history.generations()] == [(1, "succeeded")]
    assert set(keys(docker_engine, "conduit-data")) == {"conduit-data-1", "conduit-data-2"}  # init names the volumes conduit-data-N whatever the prefix

    status = j.run("status", "cluster.yaml")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{prefix}-1" in status.stdout and f"{prefix}-2" in status.stdout

    token = j.run("tokens", "create", "phone", "--role", "viewer")
    assert token.returncode == 0, token.stderr
    secret = token.stdout.strip()
    assert secret and "only this once" in token.stderr

    port = free_port_block(1)
    serve = j.start("serve", "--port", str(port), "cluster.yaml")
    url = f"http://127.0.0.1:{port}"
    nodes = wait_for(lambda: (lambda r: r[1] if r[0] == 200 and len(r[1]) == 2 else None)(get(f"{url}/api/v1/nodes", secret)),
                     timeout=60, message="the agent answering with two nodes")  # fmt: skip
    assert sorted((n["name"], n["state"], n["max_clients"]) for n in nodes) == [(f"{prefix}-1", "running", 50), (f"{prefix}-2", "running", 50)]
    assert get(f"{url}/api/v1/nodes", "not-a-token")[0] == 0  # refused (401) without a good token
    j.stop(serve)
    j.check(url in serve.stdout() + serve.stderr(), "serve does not say where it listens")

    claim = j.run("claim", "--yes", "cluster.yaml")
    assert claim.returncode == 0, claim.stdout + claim.stderr
    assert len(claim.stdout.splitlines()) > 10 and "network.ryve.app://" in claim.stdout  # the QR code and its link
    j.verdict()


# ------------------------------------------------------------ 2. adopting a bash-manager install


def test_adopt_a_bash_manager_install_with_telegram(journey, samnet_host, telegram):
    stub = telegram
    # The one thing beyond the defaults: the Bot API stand-in listens on the loopback, not api.telegram.org.
    j = journey(host_policy(telegram_api_urls=["https://api.telegram.org", "http://127.0.0.1:*"]))
    j.note("a host as SamNet conduit-manager v1.2 left it: containers conduit, conduit-2; /opt/conduit/settings.conf copied here")
    keys_before = samnet_host.keys()
    base = free_port_block(2)
    # --name: the secret files in /etc/conduit/secrets are named for the cluster; the fixture removes them after.
    imported = j.run("import-v1", "--settings", "settings.conf", "--name", samnet_host.cluster, "--metrics-port-base", str(base), "-o", "cluster.yaml")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "conduit plan cluster.yaml" in imported.stdout  # the next step
    text = (j.cwd / "cluster.yaml").read_text()
    assert "AAFakeToken" not in text  # the bot token went to a secret file, not into the spec
    alerts = yaml.safe_load(text)["spec"]["alerts"]["telegram"]
    secret_files = [alerts["bot_token"]["file"], alerts["chat_id"]["file"]]
    j.check(all(f.startswith("/etc/conduit/secrets/") for f in secret_files), f"import-v1 put the Telegram secrets outside the default policy's /etc/conduit/secrets: {secret_files}")

    def review(spec: dict) -> None:
        spec["alerts"]["telegram"]["api_url"] = stub.url  # the Bot API stand-in
        spec["health"] = {"gate_timeout_seconds": 60, "settle_seconds": 1}  # the stand-in starts in half a second

    j.note(f"edit cluster.yaml: alerts.telegram.api_url {stub.url}; health.settle_seconds 1")
    edit(j.cwd / "cluster.yaml", review)

    plan = j.run("plan", "cluster.yaml")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "conduit" in plan.stdout and "adopt" in plan.stdout.lower()
    applied = j.run("apply", "--auto-approve", "cluster.yaml")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Traceback" not in applied.stderr
    for name in ("conduit", "conduit-2"):
        container = samnet_host.client.containers.get(name)
        assert container.status == "running" and container.labels["io.conduit.cluster"] == samnet_host.cluster
    assert samnet_host.keys() == keys_before  # the same identities, byte for byte
    again = j.run("plan", "--detailed-exitcode", "cluster.yaml")
    assert again.returncode == 0, again.stdout + again.stderr

    alert = j.run("alerts", "test", "cluster.yaml")
    assert alert.returncode == 0, alert.stdout + alert.stderr
    ((path, body),) = stub.requests
    assert path == "/bot1234567890:AAFakeTokenForTests-abcdefghijklmno/sendMessage" and body["chat_id"] == "123456789"
    assert "AAFakeToken" not in "\n".join(j.lines)  # never shown to the person
    j.verdict()


# ------------------------------------------------------------- 3. resize, roll back, and back again


def test_resize_rollback_and_back_with_watch(journey, docker_engine, standin_image, docker_cleanup):
    j = journey()
    name = docker_cleanup.name("rs")
    spec = j.cwd / "cluster.yaml"
    write_spec(spec, name, standin_image, free_port_block(4))
    state = lambda: [(g.id, g.outcome) for g in open_state(j.state).history.generations()] if (j.state / "state.db").exists() else []  # noqa: E731
    watch = j.start("watch", "--interval", "30", "cluster.yaml")
    wait_for(lambda: state() == [(1, "succeeded")], timeout=90, message="the watch's first apply")
    assert running(docker_engine, name) == {f"{name}-1": "running", f"{name}-2": "running"}
    first_keys = keys(docker_engine, f"{name}-data")
    assert len(first_keys) == 2

    j.note("edit cluster.yaml: count 2 -> 3")
    write_spec(spec, name, standin_image, int(yaml.safe_load(spec.read_text())["spec"]["conduit"]["metrics_port_base"]), count=3)
    wait_for(lambda: state() == [(1, "succeeded"), (2, "succeeded")], timeout=90, message="the watch applying 3 nodes")
    assert set(running(docker_engine, name)) == {f"{name}-1", f"{name}-2", f"{name}-3"}
    assert {v: k for v, k in keys(docker_engine, f"{name}-data").items() if v in first_keys} == first_keys

    rollback = j.run("rollback", "--auto-approve")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    # Right after it, before the watch's next interval (30 s): the 2-node generation runs again.
    assert running(docker_engine, name) == {f"{name}-1": "running", f"{name}-2": "running"}
    said = rollback.stdout + rollback.stderr
    j.check("cluster.yaml" in said or "watch" in said, "rollback does not say that the spec file (and its watch) will undo it")
    generations = open_state(j.state).history.generations()
    j.check(json.loads(json.dumps(yaml.safe_load(generations[-1].spec_text)["spec"]["containers"]["count"])) == 2,
            f"rollback without N re-applied generation {generations[-1].id}'s count, not the 2-node generation")  # fmt: skip

    # The file still says 3: the watch puts it back at its next interval.
    wait_for(lambda: len(running(docker_engine, name)) == 3 and state()[-1][1] == "succeeded" and len(state()) == 4,
             timeout=120, message="the watch re-applying cluster.yaml")  # fmt: skip
    assert {v: k for v, k in keys(docker_engine, f"{name}-data").items() if v in first_keys} == first_keys
    j.stop(watch)
    history = j.run("history")
    assert history.returncode == 0 and history.stdout.count("succeeded") == 4, history.stdout
    j.verdict()


# --------------------------------------------------------------------------------- 4. faults


def problem_lines(result) -> list[str]:
    """What a command said was wrong: stderr less warnings and step progress."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, as a VPS whose disk is nearly full."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs: {done.stderr.strip()}", pytrace=False)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * (64 << 10))
                out.flush()
        except OSError:
            pass
    return filler


def test_faults(journey, docker_engine, standin_image, docker_cleanup, small_disk):
    j = journey(state=small_disk / "state")
    spec = j.cwd / "cluster.yaml"
    name, base = docker_cleanup.name("f"), free_port_block(4)

    j.note("a YAML slip: an unclosed bracket on line 4")
    spec.write_text("apiVersion: conduit.psiphon.ca/v1alpha1\nkind: ConduitCluster\nmetadata: {name: x}\nspec: {containers: [count: 2\n")
    broken = j.run("validate", "cluster.yaml")
    assert broken.returncode == 2 and len(problem_lines(broken)) == 1, broken.stderr
    assert re.match(r"(error: )?cluster\.yaml:\d+(:\d+)?: ", problem_lines(broken)[0]), broken.stderr

    j.note("a bad field: max_clients: lots")
    write_spec(spec, name, standin_image, base)
    spec.write_text(spec.read_text().replace("max_clients: 40", "max_clients: lots"))
    bad = j.run("plan", "cluster.yaml")
    assert bad.returncode == 2 and len(problem_lines(bad)) == 1, bad.stderr
    line = next(n for n, text in enumerate(spec.read_text().splitlines(), 1) if "max_clients" in text)
    assert re.match(rf"(error: )?cluster\.yaml:{line}:\d+: spec\.conduit\.max_clients", problem_lines(bad)[0]), bad.stderr

    write_spec(spec, name, standin_image, base)
    first = j.run("apply", "--auto-approve", "cluster.yaml")
    assert first.returncode == 0, first.stdout + first.stderr
    nodes = {f"{name}-1": "running", f"{name}-2": "running"}
    ids = lambda: {c.name: c.id for c in docker_engine.client.containers.list(all=True) if c.name.startswith(name)}  # noqa: E731
    before = ids()

    # Something else already listens where node 3's metrics would go.
    import socket

    j.note(f"another program listens on 127.0.0.1:{base + 2}; edit cluster.yaml: count 2 -> 3")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", base + 2))
    squatter.listen(1)
    try:
        write_spec(spec, name, standin_image, base, count=3)
        plan = j.run("plan", "cluster.yaml")
        j.check(str(base + 2) in plan.stdout + plan.stderr, f"plan does not flag that port {base + 2} is taken")
        conflict = j.run("apply", "--auto-approve", "cluster.yaml")
        j.check(conflict.returncode == 1, f"a port conflict is not refused before any change (exit {conflict.returncode})")
        j.check(any(line.startswith("error: ") and str(base + 2) in line for line in problem_lines(conflict)), "apply's errors do not name the taken port")
    finally:
        squatter.close()
    assert running(docker_engine, name) == nodes and ids() == before
    write_spec(spec, name, standin_image, base)

    j.note("edit cluster.yaml: an image this host does not have and cannot pull")
    write_spec(spec, name, "conduit-standin:9.9.9", base)
    missing = j.run("apply", "--auto-approve", "cluster.yaml")
    assert "conduit-standin:9.9.9" in missing.stderr and "Traceback" not in missing.stderr
    j.check(len(problem_lines(missing)) == 1, f"a missing image is said in {len(problem_lines(missing))} lines")
    j.check(missing.returncode == 1, f"a missing image is not exit 1 (exit {missing.returncode})")
    assert running(docker_engine, name) == nodes and ids() == before

    j.note("the disk of the state directory fills up; edit cluster.yaml: max_clients 40 -> 60")
    filler = fill(small_disk)
    write_spec(spec, name, standin_image, base)
    spec.write_text(spec.read_text().replace("max_clients: 40", "max_clients: 60"))
    full = j.run("apply", "--auto-approve", "cluster.yaml")
    assert "Traceback" not in full.stderr and full.returncode in (1, 3, 4), full.stderr
    j.check(len(problem_lines(full)) == 1 and "space" in problem_lines(full)[0].lower(), "a full disk is not said in one line naming the space")
    if full.returncode in (1, 3):  # nothing changed, or everything put back
        assert running(docker_engine, name) == nodes
        assert all(docker_engine.client.containers.get(n).attrs["Config"]["Cmd"][2] == "40" for n in nodes)
    filler.unlink()
    j.note("space freed")
    recovered = j.run("apply", "--auto-approve", "cluster.yaml")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert all(docker_engine.client.containers.get(n).attrs["Config"]["Cmd"][2] == "60" for n in nodes)

    j.note("edit cluster.yaml: max_clients 60 -> 70, and a node that exits at start (the stand-in's STANDIN_EXIT_AFTER=0)")
    write_spec(spec, name, standin_image, base, containers={"env": {"STANDIN_EXIT_AFTER": "0"}})
    spec.write_text(spec.read_text().replace("max_clients: 40", "max_clients: 70"))
    gate = j.run("apply", "--auto-approve", "cluster.yaml")
    assert gate.returncode == 3, gate.stdout + gate.stderr
    assert "exit code 3" in gate.stderr
    j.check("STANDIN_EXIT_AFTER=0" in gate.stderr, "the failed gate does not quote the node's last log lines")
    assert running(docker_engine, name) == nodes
    assert all(docker_engine.client.containers.get(n).attrs["Config"]["Cmd"][2] == "60" for n in nodes)
    j.verdict()


# ------------------------------------------------------------------- 5. two clusters, one host


def test_two_clusters_on_one_host(journey, docker_engine, standin_image, docker_cleanup):
    j = journey()
    a, b = docker_cleanup.name("a"), docker_cleanup.name("b")
    write_spec(j.cwd / "a.yaml", a, standin_image, free_port_block(2))
    write_spec(j.cwd / "b.yaml", b, standin_image, free_port_block(2), count=1)
    both = {f"{a}-1": "running", f"{a}-2": "running", f"{b}-1": "running"}

    for spec in ("a.yaml", "b.yaml"):
        applied = j.run("apply", "--auto-approve", spec)
        assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {**running(docker_engine, a), **running(docker_engine, b)} == both
    for spec in ("a.yaml", "b.yaml"):  # neither apply planned to remove the other's nodes
        again = j.run("plan", "--detailed-exitcode", spec)
        assert again.returncode == 0, again.stdout + again.stderr
    status = j.run("status", "b.yaml")
    assert status.returncode == 0 and f"{b}-1" in status.stdout and f"{a}-1" not in status.stdout, status.stdout
    ids = {c.name: c.id for c in docker_engine.client.containers.list() if c.name in both}

    j.note("c.yaml: another cluster name, but a's prefix and volumes")
    write_spec(j.cwd / "c.yaml", a, standin_image, free_port_block(2))
    doc = yaml.safe_load((j.cwd / "c.yaml").read_text())
    doc["metadata"]["name"] = docker_cleanup.name("c")
    (j.cwd / "c.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    clash = j.run("apply", "--auto-approve", "c.yaml")
    assert clash.returncode in (1, 2), clash.stdout + clash.stderr
    said = [line for line in problem_lines(clash) if line.startswith("error: ") and f"{a}-1" in line]
    assert said and "Traceback" not in clash.stderr, clash.stderr
    j.check(f"cluster {a}" in said[0] and "not managed by conduit" not in said[0], f"the refusal does not say the nodes belong to cluster {a}: {said[0]}")

    j.note("d.yaml: its own name and prefix, but a.yaml's volume_prefix (as two specs both left at init's conduit-data would)")
    write_spec(j.cwd / "d.yaml", docker_cleanup.name("d"), standin_image, free_port_block(2), containers={"naming": {"prefix": docker_cleanup.name("d"), "volume_prefix": f"{a}-data"}})
    shared = j.run("apply", "--auto-approve", "d.yaml")
    assert shared.returncode in (1, 2), shared.stdout + shared.stderr
    assert f"{a}-data-1" in shared.stderr, shared.stderr
    assert {c.name: c.id for c in docker_engine.client.containers.list() if c.name in both} == ids  # nothing of a or b moved
    assert {**running(docker_engine, a), **running(docker_engine, b)} == both
    j.verdict()
