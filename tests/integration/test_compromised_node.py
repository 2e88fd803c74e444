"""A compromised node cannot make the tool (root) read, copy, write or chown a host file.

Each test runs real nodes (the stand-in on the private engine), then plants, from inside a
running node's container and as the node's own uid (`docker exec --user`), what a compromised
node could leave in its volume: a link to a host file where the tool reads or writes, a
dangling key link with the tool's temporary name linked to a host file, a FIFO as the key.
The host file is a canary: root-owned, 0600, with known content, outside every volume; after
the tool ran, its content, owner and mode are unchanged, no backup holds its content, no
output shows what following it would have shown, and the one-line refusal names the node.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conduit.state.stores import open_state
from tests.integration.test_apply import Cluster
from tests.integration.test_node_signals import CAP, configure, converge, make_cluster, row, texts, volume_dir, watcher, with_alerts, telegram  # noqa: F401 - telegram is a fixture
from tests.unit.test_keyfile import key_file

pytestmark = pytest.mark.integration

PLANT_SOURCE = Path(__file__).resolve().parent.parent / "planter" / "plant.c"
REFUSAL = "planted {what} at {name} in its volume: it may be compromised; inspect the volume, then restore its key from a backup"


@pytest.fixture(scope="module")
def planter(tmp_path_factory) -> bytes:
    """tests/planter/plant.c, built static, as a tar to put into a node's container."""
    if not shutil.which("gcc"):
        pytest.fail("gcc is needed to build tests/planter/plant.c", pytrace=False)
    binary = tmp_path_factory.mktemp("planter") / "plant"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(PLANT_SOURCE)], check=True, capture_output=True)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname="plant")
        info.mode, info.uid, info.gid = 0o755, 0, 0
        with open(binary, "rb") as f:
            tar.addfile(info, f)
    return out.getvalue()


def plant(cluster: Cluster, planter: bytes, *ops: str, index: int = 1) -> None:
    """Run `plant OPS` in node INDEX's running container as the node's own uid; names are inside its data dir."""
    container = cluster.engine.client.containers.get(f"{cluster.prefix}-{index}")
    uid = container.attrs["Config"]["User"]
    (data_dir,) = [m["Destination"] for m in container.attrs["Mounts"] if m["Type"] == "volume"]
    assert uid and uid != "0" and container.put_archive("/tmp", planter)
    argv = [a if a in ("link", "fifo", "rm") or a.startswith("/") else f"{data_dir}/{a}" for a in ops]
    code, said = container.exec_run(["/tmp/plant", *argv], user=uid)
    assert code == 0 and said.decode().strip().endswith(f"uid={uid}"), said


class Canary:
    """A host file outside every volume: root-owned, 0600, with known content."""

    def __init__(self, folder: Path, content: bytes):
        folder.mkdir(exist_ok=True)
        self.path, self.content = folder / "canary", content
        self.path.write_bytes(content)
        os.chown(self.path, 0, 0)
        os.chmod(self.path, 0o600)

    def untouched(self) -> None:
        info = self.path.lstat()
        assert self.path.read_bytes() == self.content
        assert (stat.S_ISREG(info.st_mode), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (True, 0, 0, 0o600)

    def not_in(self, folder: Path) -> None:
        for path in folder.rglob("*"):
            assert not path.is_file() or self.content not in path.read_bytes(), path


def refusal(result: subprocess.CompletedProcess, node: str, what: str, name: str) -> str:
    """The one error line, naming node and file; the structlog event that records it is on stderr too."""
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert f"node {node} " + REFUSAL.format(what=what, name=name) in line, result.stderr
    assert "node.compromised" in result.stderr and f"file={name}" in result.stderr
    return line


# ------------------------------------------------------------------ the key: backup, apply, claim


@pytest.mark.parametrize("what", ["a link", "a FIFO"])
def test_keys_backup_refuses_a_planted_key_and_copies_no_host_data(tmp_path, docker_engine, standin_image, docker_cleanup, planter, what):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "kb")
    configure(cluster, count=2)
    assert cluster.apply().returncode == 0
    canary = Canary(tmp_path / "host", key_file())  # a valid key: following the link would back it up
    if what == "a link":
        plant(cluster, planter, "rm", "conduit_key.json", "link", str(canary.path), "conduit_key.json")
    else:
        plant(cluster, planter, "rm", "conduit_key.json", "fifo", "conduit_key.json")
    dest = tmp_path / "backup"
    done = cluster.run("keys", "backup", str(cluster.spec), str(dest), timeout=60)  # a FIFO read would block for ever
    assert done.returncode == 1, done.stdout + done.stderr
    line = refusal(done, f"{cluster.prefix}-1", what, "conduit_key.json")
    assert line.startswith("error: ") and f"the other keys were backed up to {dest}" in line
    assert sorted(p.name for p in dest.iterdir()) == ["SHA256SUMS", f"{cluster.prefix}-data-2.conduit_key.json"]
    canary.untouched()
    canary.not_in(dest)


def test_an_apply_that_would_replace_a_compromised_node_changes_nothing_and_alerts(tmp_path, docker_engine, standin_image, docker_cleanup, planter, telegram):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "ka")
    configure(cluster)
    assert cluster.apply().returncode == 0
    before = docker_engine.client.containers.get(f"{cluster.prefix}-1").id
    canary = Canary(tmp_path / "host", key_file())
    plant(cluster, planter, "rm", "conduit_key.json", "link", str(canary.path), "conduit_key.json")
    configure(cluster, max_clients=50)  # forces a replacement, so the key is backed up first
    with_alerts(cluster, telegram.alerts)
    done = cluster.apply()
    assert done.returncode == 1, done.stdout + done.stderr
    line = refusal(done, f"{cluster.prefix}-1", "a link", "conduit_key.json")
    assert "key backup failed, no node was touched" in line
    assert docker_engine.client.containers.get(f"{cluster.prefix}-1").id == before
    # The plan's first step failed and changed nothing: no generation, as for a pull that failed.
    assert [g.id for g in open_state(cluster.state).history.generations()] == [1]
    (alert,) = texts(telegram, "(conduit_key.json in its volume)")  # beside the apply's own failure alert
    assert f"node {cluster.prefix}-1 planted a link (conduit_key.json in its volume): it may be compromised" in alert
    canary.untouched()
    canary.not_in(cluster.state)


def test_claim_refuses_a_planted_key(tmp_path, docker_engine, standin_image, docker_cleanup, planter):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "kc")
    configure(cluster)
    assert cluster.apply().returncode == 0
    canary = Canary(tmp_path / "host", key_file())  # a valid key: following the link would show its claim
    plant(cluster, planter, "rm", "conduit_key.json", "link", str(canary.path), "conduit_key.json")
    shown = cluster.run("claim", "--yes", str(cluster.spec), "1")
    assert shown.returncode == 1 and "network.ryve.app" not in shown.stdout
    refusal(shown, f"{cluster.prefix}-1", "a link", "conduit_key.json")
    canary.untouched()


# ------------------------------------------------------------------ the key: restore


def test_keys_restore_follows_neither_a_dangling_key_link_nor_a_planted_temporary_file(tmp_path, docker_engine, standin_image, docker_cleanup, planter):
    """The node leaves its key as a dangling link and links `.conduit_key.json.restore` (the name the
    tool once wrote through) to a host file: root must neither overwrite nor chown that file."""
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "kr")
    configure(cluster)
    assert cluster.apply().returncode == 0
    backup = tmp_path / "backup"
    assert cluster.run("keys", "backup", str(cluster.spec), str(backup)).returncode == 0
    canary = Canary(tmp_path / "host", b"root:x:0:0:a host file the node wants:/root:/bin/sh\n")
    plant(cluster, planter, "rm", "conduit_key.json", "link", "/nonexistent/key", "conduit_key.json",
          "link", str(canary.path), ".conduit_key.json.restore")
    done = cluster.run("keys", "restore", "--force", str(cluster.spec), str(backup))
    assert done.returncode == 1, done.stdout + done.stderr
    refusal(done, f"{cluster.prefix}-1", "a link", "conduit_key.json")
    canary.untouched()
    folder = volume_dir(cluster)
    assert (folder / "conduit_key.json").is_symlink() and (folder / ".conduit_key.json.restore").is_symlink()  # left for inspection


# ------------------------------------------------------------------ the personal compartment


def test_a_planted_compartment_link_is_refused_by_claim_and_by_apply(tmp_path, docker_engine, standin_image, docker_cleanup, planter):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "pc")
    configure(cluster, max_personal_clients=5)
    assert cluster.apply().returncode == 0
    compartment = (volume_dir(cluster) / "personal_compartment.json").read_bytes()
    canary = Canary(tmp_path / "host", compartment)  # a valid compartment: following would pair strangers with it
    plant(cluster, planter, "rm", "personal_compartment.json", "link", str(canary.path), "personal_compartment.json")

    shown = cluster.run("claim", "--personal", str(cluster.spec), "1")
    assert shown.returncode == 1 and "Share token" not in shown.stdout
    refusal(shown, f"{cluster.prefix}-1", "a link", "personal_compartment.json")

    # The container goes (its volume stays): apply makes it again, and asks the volume for its
    # compartment before it starts; no key backup comes first, as no node holding one is touched.
    docker_engine.client.containers.get(f"{cluster.prefix}-1").remove(force=True)
    done = cluster.apply()
    assert done.returncode in (3, 4), done.stdout + done.stderr
    assert f"node {cluster.prefix}-1 planted a link at personal_compartment.json" in done.stderr
    journal = open_state(cluster.state).history.journal(2)
    assert any(status == "failed" and "planted a link at personal_compartment.json" in (detail or "") for *_, status, detail in journal), journal
    canary.untouched()


# ------------------------------------------------------------------ what status reads: stats.json, traffic_state.json


def test_status_reports_a_planted_stats_file_and_does_not_read_it(tmp_path, docker_engine, standin_image_v1, docker_cleanup, planter):
    cluster = make_cluster(tmp_path, docker_engine, standin_image_v1, docker_cleanup, "ss")
    configure(cluster, env={"STANDIN_NO_METRICS": "1"}, cli_version="1.x")
    converge(cluster)  # no metrics: status reads the stats file
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    fresh = {"connectingClients": 0, "connectedClients": 7, "totalBytesUp": 1, "totalBytesDown": 2, "uptimeSeconds": 9, "isLive": True, "timestamp": stamp}
    canary = Canary(tmp_path / "host", json.dumps(fresh).encode())  # followed, status would count 7 clients
    plant(cluster, planter, "link", str(canary.path), "stats.json")
    r = row(cluster)
    assert (r["suspicious"], r["connected"], r["up"]) == (True, 0, False)
    assert r["planted"] == f"node {cluster.prefix}-1 " + REFUSAL.format(what="a link", name="stats.json")
    text = cluster.run("status", "--no-drift", str(cluster.spec))
    assert text.returncode == 0 and f"SUSPICIOUS: {cluster.prefix}-1" in text.stdout
    canary.untouched()


def test_status_and_watch_report_a_planted_monitor_state(tmp_path, docker_engine, standin_image, docker_cleanup, planter, telegram):
    cluster = make_cluster(tmp_path, docker_engine, standin_image, docker_cleanup, "ts")
    configure(cluster, data_cap=CAP)
    with_alerts(cluster, telegram.alerts)
    assert cluster.apply().returncode == 0
    state = {"periodStartTime": "2030-01-01T00:00:00Z", "bytesUsed": 1, "isThrottled": True}
    canary = Canary(tmp_path / "host", json.dumps(state).encode())  # followed, the node would pass as throttled
    plant(cluster, planter, "rm", "traffic_state.json", "link", str(canary.path), "traffic_state.json")
    r = row(cluster)
    assert (r["suspicious"], r["throttled"]) == (True, False)
    w = watcher(cluster)
    for _ in range(2):
        assert w.reconcile(cluster.spec.read_text(), str(cluster.spec), "interval").status == "unchanged"
    (alert,) = texts(telegram, "it may be compromised")  # once, until it clears
    assert f"node {cluster.prefix}-1 planted a link (traffic_state.json in its volume): it may be compromised" in alert
    canary.untouched()
