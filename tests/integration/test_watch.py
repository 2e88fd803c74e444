"""conduit watch against the real engine, the real file watcher and real git."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from conduit.state.stores import open_state
from harness import free_port_block, wait_for
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup):
    return Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("w"), free_port_block(12))


class Watch:
    def __init__(self, cluster: Cluster, *args: str):
        self.process = subprocess.Popen(
            cluster.argv("watch", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )

    def stop(self) -> tuple[str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return out, err


@pytest.fixture
def watcher():
    started: list[Watch] = []

    def start(cluster, *args):
        w = Watch(cluster, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def running(cluster) -> set[str]:
    return {name for name, status in cluster.names().items() if status == "running"}


def applied(cluster, count: int = 1) -> bool:
    if not (cluster.state / "state.db").exists():
        return False
    return sum(1 for g in open_state(cluster.state).history.generations() if g.outcome == "succeeded") >= count


def status(cluster) -> dict:
    try:
        return json.loads((cluster.state / "watch.json").read_text())
    except (OSError, ValueError):
        return {}


def test_saved_changes_apply_and_an_invalid_save_keeps_the_cluster(cluster, watcher):
    cluster.write(count=1)
    w = watcher(cluster, str(cluster.spec), "--interval", "300", "--debounce", "0.3")
    wait_for(lambda: running(cluster) == {f"{cluster.prefix}-1"}, timeout=60, message="the first apply")
    cluster.write(count=2)
    wait_for(lambda: running(cluster) == {f"{cluster.prefix}-1", f"{cluster.prefix}-2"}, timeout=30, message="the new count")

    cluster.spec.write_text(cluster.spec.read_text().replace("count: 2", "count: 0"))
    wait_for(lambda: status(cluster).get("last_result") == "invalid", timeout=30, message="the error recorded")
    assert "spec.containers.count: must be >= 1" in status(cluster)["last_error"]
    assert running(cluster) == {f"{cluster.prefix}-1", f"{cluster.prefix}-2"}
    # conduit status shows the watcher's last reconcile and error
    good = cluster.tmp / "good.yaml"
    cluster.write(count=2)
    good.write_text(cluster.spec.read_text())
    cluster.spec.write_text(good.read_text().replace("count: 2", "count: 0"))
    wait_for(lambda: status(cluster).get("last_result") == "invalid", timeout=30, message="the error recorded again")
    shown = json.loads(cluster.run("status", "--json", "--no-drift", str(good)).stdout)["watch"]
    assert shown["last_result"] == "invalid" and "must be >= 1" in shown["last_error"]
    out, err = w.stop()
    assert w.process.returncode == 0
    # Each apply is announced before its steps run, and its result follows; each error is one line.
    lines = out.splitlines()
    starts = [i for i, line in enumerate(lines) if f": applying {cluster.spec}: " in line]
    assert [lines[i].split(" ", 1)[1].split(":", 1)[0] for i in starts] == ["start", "changed"], out
    assert "2 to add, 0 to change, 0 to destroy" in lines[starts[1]], out  # a volume and a container
    assert all(any(": applied: " in later for later in lines[i + 1 :]) for i in starts), out
    assert "must be >= 1" not in err, err  # said on stdout once, not again as a log line


def test_ten_rapid_saves_are_one_or_two_applies(cluster, watcher):
    cluster.write(count=1)
    watcher(cluster, str(cluster.spec), "--interval", "300", "--debounce", "2")
    wait_for(lambda: applied(cluster), timeout=60, message="the first apply")
    for max_clients in range(41, 51):
        cluster.write(count=1, max_clients=max_clients)
        time.sleep(0.05)
    wait_for(lambda: cluster.command_of(f"{cluster.prefix}-1")[2] == "50" and status(cluster).get("last_result") == "applied", timeout=60, message="the last save applied")
    time.sleep(2)
    assert 2 <= len(open_state(cluster.state).history.generations()) <= 3  # the first apply, then one or two


def test_a_container_removed_by_hand_is_repaired_on_the_next_interval(cluster, watcher):
    cluster.write(count=2)
    watcher(cluster, str(cluster.spec), "--interval", "2")
    wait_for(lambda: applied(cluster), timeout=60, message="the first apply")
    cluster.engine.client.containers.get(f"{cluster.prefix}-2").remove(force=True)
    wait_for(lambda: len(running(cluster)) == 2, timeout=30, message="the repair")


def test_keys_the_kernel_refuses_cause_no_apply_after_the_first(cluster, watcher):
    from tests.integration.test_apply import REFUSING_SYSCTL, refusing_kernel

    refusing_kernel(cluster.root)
    cluster.write(count=1, sysctl=REFUSING_SYSCTL)
    w = watcher(cluster, str(cluster.spec), "--interval", "1")
    wait_for(lambda: applied(cluster), timeout=60, message="the first apply")
    first = time.time()

    def intervals_later():
        now = status(cluster)
        return now.get("last_reason") == "interval" and now.get("last_reconcile", 0) > first + 3

    wait_for(intervals_later, timeout=60, message="three intervals after the first apply")
    out, err = w.stop()
    assert [g.outcome for g in open_state(cluster.state).history.generations()] == ["succeeded"], out + err
    assert status(cluster)["last_result"] == "unchanged"


def test_no_heal_only_reports_drift(cluster, watcher):
    cluster.write(count=1)
    watcher(cluster, str(cluster.spec), "--interval", "1", "--no-heal")
    wait_for(lambda: applied(cluster), timeout=60, message="the first apply")
    cluster.engine.client.containers.get(f"{cluster.prefix}-1").stop(timeout=5)
    wait_for(lambda: status(cluster).get("last_result") == "drift", timeout=30, message="drift reported")
    assert running(cluster) == set()


def test_git_commits_are_applied_with_their_sha(cluster, watcher, tmp_path):
    bare, work = tmp_path / "repo.git", tmp_path / "work"
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run([*git, "clone", "-q", str(bare), str(work)], check=True)

    def commit(message: str) -> str:
        (work / "cluster.yaml").write_text(cluster.spec.read_text())
        subprocess.run([*git, "-C", str(work), "add", "cluster.yaml"], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-qm", message], check=True)
        subprocess.run([*git, "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)
        return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    cluster.write(count=1)
    first = commit("one node")
    watcher(cluster, "--git", str(bare), "--ref", "main", "--path", "cluster.yaml", "--poll", "0.5", "--interval", "300")
    wait_for(lambda: len(running(cluster)) == 1, timeout=60, message="the first commit applied")
    cluster.write(count=2)
    second = commit("two nodes")
    wait_for(lambda: len(running(cluster)) == 2, timeout=60, message="the second commit applied")
    commits = [g.git_commit for g in open_state(cluster.state).history.generations()]
    assert commits == [first, second]

    cluster.write(count=2, env={"STANDIN_EXIT_AFTER": "0"}, max_clients=50)
    bad = commit("a bad node")
    wait_for(lambda: status(cluster).get("last_result") == "rolled_back", timeout=90, message="the bad commit rolled back")
    assert status(cluster)["last_commit"] == bad
    last = open_state(cluster.state).history.generations()[-1]
    assert (last.git_commit, last.outcome) == (bad, "rolled_back")
    assert len(running(cluster)) == 2


def test_sigterm_during_a_reconcile_leaves_the_host_consistent(cluster, watcher):
    cluster.write(count=3)
    w = watcher(cluster, str(cluster.spec), "--interval", "300")
    wait_for(lambda: cluster.names(), timeout=60, interval=0.02, message="the apply under way")
    w.process.send_signal(signal.SIGTERM)
    w.process.wait(timeout=120)
    assert w.process.returncode == 0
    # the lock went with the watcher, and one apply (or none) converges the host
    result = cluster.apply("--no-wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.run("plan", "--detailed-exitcode", str(cluster.spec)).returncode == 0
    assert not any(name.endswith(".previous") for name in cluster.names())


def test_the_watcher_alerts_on_a_spec_it_cannot_apply_and_on_drift_it_repairs(cluster, watcher, tmp_path):
    from tests.telegram_stub import TelegramStub

    stub = TelegramStub()
    try:
        (tmp_path / "token").write_text("9:AAHfakeTokenForTestsOnly_0123456789\n")
        (tmp_path / "chat").write_text("5\n")
        alerts = {"telegram": {"bot_token": {"file": str(tmp_path / "token")}, "chat_id": {"file": str(tmp_path / "chat")}, "api_url": stub.url}}
        cluster.write(count=1, alerts=alerts)
        watcher(cluster, str(cluster.spec), "--interval", "2", "--debounce", "0.3")
        wait_for(lambda: applied(cluster), timeout=60, message="the first apply")
        cluster.engine.client.containers.get(f"{cluster.prefix}-1").remove(force=True)
        wait_for(lambda: any("drift repaired" in body["text"] for _, body in stub.requests), timeout=30, message="the repair alert")
        cluster.spec.write_text(cluster.spec.read_text().replace("count: 1", "count: 0"))
        wait_for(lambda: any("not applied (invalid)" in body["text"] for _, body in stub.requests), timeout=30, message="the invalid-spec alert")
    finally:
        stub.close()
    assert all(path == "/bot9:AAHfakeTokenForTestsOnly_0123456789/sendMessage" and body["chat_id"] == "5" for path, body in stub.requests)
