"""The nodes' real signals, end to end: the faithful stand-in on the private engine, read by
apply's gates, `conduit status`, `conduit watch`'s alerts, `conduit claim` and `conduit keys`.

Each stand-in knob (tests/standin/conduit.c) plays one thing a real node does: traffic over
its data cap (conduit-monitor throttles it), a conduit that keeps exiting under its monitor,
the broker's newer-version warning, a node that has not announced, a stats file left by an
earlier run, a 1.1 image without --metrics-addr, personal clients, the Ryve claim.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness import free_port_block
from harness import wait_for
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration

CAP = {"traffic_limit_gb": 100, "period_days": 7}  # the monitor's minimums (main.go:219-224)
OVER_80_PERCENT = str(90 * 10**9)  # of 100 GiB (main.go:484 reads "GB" as GiB): 85.9e9 is the threshold


def configure(cluster: Cluster, count: int = 1, env: dict | None = None, image: str | None = None, **conduit) -> None:
    """The Cluster spec (short gates) with conduit settings on top."""
    cluster.write(count=count, env=env)
    doc = yaml.safe_load(cluster.spec.read_text())
    doc["spec"]["conduit"].update(conduit)
    doc["spec"]["health"] = {"gate_timeout_seconds": 6, "settle_seconds": 1}
    if image:
        doc["spec"]["containers"]["image"] = image
    cluster.spec.write_text(yaml.safe_dump(doc, sort_keys=False))


def status(cluster: Cluster, drift: bool = False) -> dict:
    args = ["status", "--json"] + ([] if drift else ["--no-drift"])
    done = cluster.run(*args, str(cluster.spec))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def row(cluster: Cluster, index: int = 1, drift: bool = False) -> dict:
    return {r["name"]: r for r in status(cluster, drift)["containers"]}[f"{cluster.prefix}-{index}"]


def volume_dir(cluster: Cluster, index: int = 1) -> Path:
    return Path(cluster.engine.client.volumes.get(f"{cluster.prefix}-data-{index}").attrs["Mountpoint"])


def no_drift(cluster: Cluster) -> None:
    plan = cluster.run("plan", "--detailed-exitcode", str(cluster.spec))
    assert plan.returncode == 0, plan.stdout + plan.stderr


def converge(cluster: Cluster) -> None:
    """The spec's containers made with plain Docker calls: no gate stands in the way."""
    from conduit.drivers.observe import HostAccess
    from tests.integration.test_plan_host import converge as by_hand

    by_hand(HostAccess(cluster.root, cluster.state, cluster.engine.host), cluster.spec.read_text())


def watcher(cluster: Cluster):
    from conduit.drivers.hostfacts import detect
    from conduit.drivers.observe import HostAccess
    from conduit.features.watch import Watcher

    return Watcher(HostAccess(cluster.root, cluster.state, cluster.engine.host), lambda: detect("/"))


@pytest.fixture
def telegram(tmp_path):
    from tests.telegram_stub import TelegramStub

    stub = TelegramStub()
    (tmp_path / "token").write_text("9:AAHfakeTokenForTestsOnly_0123456789\n")
    (tmp_path / "chat").write_text("5\n")
    stub.alerts = {"telegram": {"bot_token": {"file": str(tmp_path / "token")}, "chat_id": {"file": str(tmp_path / "chat")}, "api_url": stub.url}}
    yield stub
    stub.close()


def with_alerts(cluster: Cluster, alerts: dict) -> None:
    doc = yaml.safe_load(cluster.spec.read_text())
    doc["spec"]["alerts"] = alerts
    cluster.spec.write_text(yaml.safe_dump(doc, sort_keys=False))


def texts(stub, word: str) -> list[str]:
    return [body["text"] for _, body in stub.requests if word in body["text"]]


def make_cluster(tmp_path, engine, image, cleanup, stem: str) -> Cluster:
    return Cluster(tmp_path, engine, image, cleanup.name(stem), free_port_block(4))


# ------------------------------------------------------------------ 1. the data cap's throttle


@pytest.mark.parametrize("profile", ["2.0.0", "1.5.0"])
def test_a_node_over_its_data_cap_is_throttled_and_that_is_no_drift(tmp_path, docker_engine, standin_image_factory, docker_cleanup, profile):
    """conduit-monitor scrapes at once and then every 10 s (main.go:440-470): past 80% of the cap
    it restarts conduit with -m 10 -b 10; status says throttled, plan sees no drift, and a
    replaced node, which starts throttled from the volume's traffic_state.json, passes its gate."""
    cluster = make_cluster(tmp_path, docker_engine, standin_image_factory(profile), docker_cleanup, "cap")
    configure(cluster, env={"STANDIN_TRAFFIC_BYTES": OVER_80_PERCENT}, data_cap=CAP)
    first = cluster.apply()
    assert first.returncode == 0, first.stdout + first.stderr

    state = volume_dir(cluster) / "traffic_state.json"
    wait_for(lambda: b'"isThrottled": true' in state.read_bytes() if state.exists() else None, timeout=25, interval=0.5, message="the monitor throttling")
    seen = wait_for(lambda: (r := row(cluster))["throttled"] and r, timeout=15, interval=0.5, message="status reading the throttled node")
    assert (seen["max_clients_seen"], seen["max_clients"], seen["dead"]) == (10, 40, False)
    text = cluster.run("status", "--no-drift", str(cluster.spec)).stdout
    assert "throttled" in text and f"throttled by conduit-monitor (data cap): {cluster.prefix}-1" in text
    no_drift(cluster)

    configure(cluster, env={"STANDIN_TRAFFIC_BYTES": OVER_80_PERCENT}, data_cap=CAP, max_clients=50)
    again = cluster.apply()  # replaced: the new monitor reads isThrottled from the volume
    assert again.returncode == 0, again.stdout + again.stderr
    assert row(cluster)["throttled"]
    no_drift(cluster)


# ------------------------------------------------------------------ 2. a conduit that keeps exiting


def test_a_conduit_that_keeps_exiting_under_its_monitor_is_rolled_back(tmp_path, docker_engine, standin_image, docker_cleanup):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "dead")
    configure(cluster, data_cap=CAP)
    assert cluster.apply().returncode == 0
    configure(cluster, env={"STANDIN_EXIT_AFTER": "0"}, data_cap=CAP)
    result = cluster.apply()
    assert result.returncode == 3, result.stdout + result.stderr
    (reason,) = [line for line in result.stderr.splitlines() if "runs conduit-monitor but no conduit" in line]
    assert f"container {cluster.prefix}-1 " in reason
    assert "Rolled back to generation 1" in result.stderr
    assert cluster.names() == {f"{cluster.prefix}-1": "running"}
    assert not row(cluster)["dead"]


def test_status_and_watch_name_a_dead_node_once(tmp_path, docker_engine, standin_image, docker_cleanup, telegram, monkeypatch):
    from conduit.features import nodealerts

    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "dw")
    configure(cluster, env={"STANDIN_EXIT_AFTER": "0"}, data_cap=CAP)
    with_alerts(cluster, telegram.alerts)
    converge(cluster)  # made by hand: apply's gate would refuse it
    r = wait_for(lambda: (r := row(cluster))["dead"] and r, timeout=20, interval=0.5, message="status calling the node dead")
    assert r["state"] == "running" and r["up"] is False
    assert f"dead: {cluster.prefix}-1" in cluster.run("status", "--no-drift", str(cluster.spec)).stdout

    monkeypatch.setattr(nodealerts, "GRACE_SECONDS", 0.0)  # the node is young; the grace is not what is tested
    w = watcher(cluster)
    for _ in range(2):
        assert w.reconcile(cluster.spec.read_text(), str(cluster.spec), "interval").status == "unchanged"
    (alert,) = texts(telegram, "is dead")
    assert f"node {cluster.prefix}-1 is dead" in alert and "conduit-monitor" in alert


# ------------------------------------------------------------------ 3. the network wants a newer Conduit


def test_upgrade_required_is_shown_alerted_once_and_cleared_by_a_new_image(tmp_path, docker_engine, standin_image, docker_cleanup, telegram):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "up")
    configure(cluster, env={"STANDIN_UPGRADE_REQUIRED": "1"})
    with_alerts(cluster, telegram.alerts)
    assert cluster.apply().returncode == 0
    wait_for(lambda: row(cluster)["upgrade_required"], timeout=15, interval=0.5, message="status showing the warning")
    assert "UPGRADE REQUIRED" in cluster.run("status", "--no-drift", str(cluster.spec)).stdout

    w = watcher(cluster)
    for _ in range(2):
        assert w.reconcile(cluster.spec.read_text(), str(cluster.spec), "interval").status == "unchanged"
    (alert,) = texts(telegram, "newer version")
    assert f"node {cluster.prefix}-1" in alert

    repo = standin_image.rsplit(":", 1)[0]
    docker_engine.client.images.get(standin_image).tag(repo, "2.0.0-new")
    configure(cluster, image=f"{repo}:2.0.0-new")
    with_alerts(cluster, telegram.alerts)
    assert w.reconcile(cluster.spec.read_text(), str(cluster.spec), "changed").status == "applied"
    w.reconcile(cluster.spec.read_text(), str(cluster.spec), "interval")
    assert not any(key.startswith("upgrade:") for key in w.alerted)
    assert len(texts(telegram, "newer version")) == 1
    assert row(cluster)["upgrade_required"] is False


# ------------------------------------------------------------------ 4. not announced yet


def test_a_node_that_has_not_announced_is_starting_and_passes_its_gate(tmp_path, docker_engine, standin_image, docker_cleanup):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "na")
    configure(cluster, env={"STANDIN_LIVE_AFTER": "never"})
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    r = row(cluster)
    assert (r["up"], r["announced"]) == (True, False)
    text = cluster.run("status", "--no-drift", str(cluster.spec)).stdout
    assert f"{cluster.prefix}-1" in text and "starting" in text and "announced" not in text


# ------------------------------------------------------------------ 5. a stats file from an earlier run


def test_a_stats_file_older_than_the_container_is_not_trusted(tmp_path, docker_engine, standin_image_v1, docker_cleanup):
    """1.5 service.go writes stats.json only when the client counts change (never at start)."""
    cluster = make_cluster(tmp_path, docker_engine, standin_image_v1, docker_cleanup, "sf")
    configure(cluster, env={"STANDIN_NO_METRICS": "1"}, cli_version="1.x")
    converge(cluster)  # no metrics answer: apply's gate would refuse it
    stats = volume_dir(cluster) / "stats.json"
    assert not stats.exists()  # no clients came and went: the node has not written it

    def write(when: float) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        stats.write_text(json.dumps({"connectingClients": 0, "connectedClients": 7, "totalBytesUp": 1, "totalBytesDown": 2, "uptimeSeconds": 9, "isLive": True, "timestamp": stamp}))

    write(time.time() - 3600)
    r = row(cluster)
    assert (r["stats_stale"], r["connected"], r["up"]) == (True, 0, False)
    assert "stale stats" in cluster.run("status", "--no-drift", str(cluster.spec)).stdout
    write(time.time())
    r = row(cluster)
    assert (r["stats_stale"], r["connected"], r["up"]) == (False, 7, True)


# ------------------------------------------------------------------ 6. an official 1.1 image


def test_an_official_1_1_node_is_gated_on_its_start_line(tmp_path, docker_engine, standin_image_factory, docker_cleanup):
    """1.1 start.go:62-70 has no --metrics-addr: the gate reads `Starting Psiphon Conduit (Max Clients: N, …)`."""
    cluster = make_cluster(tmp_path, docker_engine, standin_image_factory("1.1.0"), docker_cleanup, "v11")
    configure(cluster, max_clients=37)
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "which has no --metrics-addr" in result.stdout + result.stderr
    command = cluster.command_of(f"{cluster.prefix}-1")
    assert command[command.index("-m") + 1] == "37" and not any(a.startswith("--metrics-addr") for a in command)
    logs = docker_engine.client.containers.get(f"{cluster.prefix}-1").logs().decode()
    assert "Starting Psiphon Conduit (Max Clients: 37, Bandwidth: 2 Mbps)" in logs
    no_drift(cluster)


# ------------------------------------------------------------------ 7. personal clients


def stand_in(engine, image: str, volume: str, *args: str, stdin: str = "") -> str:
    """The stand-in's own CLI on a volume, as an operator would run it with docker run."""
    argv = ["docker", "run", "--rm", "-i", "--network", "none", "-v", f"{volume}:/home/conduit/data", image, *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, env={"DOCKER_HOST": engine.host, "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_personal_clients_get_one_compartment_per_node_kept_across_replacement(tmp_path, docker_engine, standin_image, docker_cleanup):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "pc")
    configure(cluster, count=2, max_personal_clients=5)
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    files = {i: (volume_dir(cluster, i) / "personal_compartment.json").read_bytes() for i in (1, 2)}
    assert files[1] != files[2]  # one compartment each
    assert "--max-personal-clients" in cluster.command_of(f"{cluster.prefix}-1")
    assert "Max Personal Clients: 5" in docker_engine.client.containers.get(f"{cluster.prefix}-1").logs().decode()
    assert not docker_engine.client.containers.list(all=True, filters={"label": "io.conduit.role=new-compartment-id"})

    configure(cluster, count=2, max_personal_clients=5, max_clients=50)
    replaced = cluster.apply()
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert {i: (volume_dir(cluster, i) / "personal_compartment.json").read_bytes() for i in (1, 2)} == files

    backup = tmp_path / "backup"
    assert cluster.run("keys", "backup", str(cluster.spec), str(backup)).returncode == 0
    assert (backup / f"{cluster.prefix}-data-1.personal_compartment.json").read_bytes() == files[1]

    # The stand-in's own share token for a compartment, against `conduit claim --personal`.
    name = f"{cluster.prefix}-1"
    scratch = docker_cleanup.track("volume", docker_cleanup.name("scratch"))
    said = stand_in(docker_engine, standin_image, scratch, "new-compartment-id", "-d", "/home/conduit/data", "--name", name)
    token = said.split("Share token:\n", 1)[1].strip()
    made = Path(docker_engine.client.volumes.get(scratch).attrs["Mountpoint"]) / "personal_compartment.json"
    (volume_dir(cluster) / "personal_compartment.json").write_bytes(made.read_bytes())
    shown = cluster.run("claim", "--personal", str(cluster.spec), "1")
    assert shown.returncode == 0, shown.stderr
    assert token in shown.stdout.splitlines()


# ------------------------------------------------------------------ 8. the Ryve claim


def test_the_claim_url_is_the_stand_ins_own(tmp_path, docker_engine, standin_image, docker_cleanup):
    """2.0 cli/cmd/ryve.go: the stand-in writes the URL it would draw into ryve-claim-qr.png."""
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "rc")
    configure(cluster)
    assert cluster.apply().returncode == 0
    name = f"{cluster.prefix}-1"
    stand_in(docker_engine, standin_image, f"{cluster.prefix}-data-1", "ryve-claim", "-d", "/home/conduit/data", "--name", name, stdin="y\n")
    theirs = (volume_dir(cluster) / "ryve-claim-qr.png").read_bytes().decode()
    shown = cluster.run("claim", "--yes", str(cluster.spec), "1")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    (ours,) = [line for line in shown.stdout.splitlines() if line.startswith("network.ryve.app://")]
    assert ours == theirs
    personal = cluster.run("claim", "--personal", "--yes", str(cluster.spec), "1")  # a node with no personal clients
    assert (personal.returncode, personal.stderr) == (1, f"error: volume {cluster.prefix}-data-1 holds no personal_compartment.json: "
                                                         "the node takes no personal clients; set spec.conduit.max_personal_clients "
                                                         "above 0 (2.0 images) and apply, which makes it\n")
