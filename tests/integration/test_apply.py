"""conduit apply against the real engine and nginx: idempotence, failures at each phase, rollback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from harness import free_port_block, wait_for
from conduit.state.stores import open_state
from tests.helpers import CONDUIT, cli_env, minimal

pytestmark = pytest.mark.integration


class Cluster:
    """A spec on disk plus the CLI pointed at the private engine and a private state dir."""

    def __init__(self, tmp: Path, engine, image: str, prefix: str, port_base: int, root: Path | None = None):
        self.tmp, self.engine, self.image, self.prefix, self.port_base = tmp, engine, image, prefix, port_base
        self.spec = tmp / "cluster.yaml"
        self.state = tmp / "state"
        self.root = root or tmp / "root"
        self.root.mkdir(exist_ok=True)

    def write(self, count=2, max_clients=40, env=None, ulimit=4096, nofile_limit="auto", lb=None, nginx=None, tracker=False, alerts=None,
              sysctl=None, volume_prefix=None, updates=None, max_unavailable=1, gate_timeout=8):
        spec = {
            "host": {"vcpus": 4, "memory": "8GiB", "nofile_limit": nofile_limit},
            "containers": {
                "count": count,
                "image": self.image,
                "naming": {"prefix": self.prefix, "volume_prefix": volume_prefix or f"{self.prefix}-data"},
                "resources": {"cpus": 0.2, "memory": "96MiB", "ulimit_nofile": ulimit},
                "env": env or {},
            },
            "conduit": {"max_clients": max_clients, "bandwidth_mbps": 2, "metrics_port_base": self.port_base},
            "sysctl": sysctl or {"enabled": False},
            "tracker": {"enabled": tracker, "interval_seconds": 10},
            "health": {"gate_timeout_seconds": gate_timeout, "settle_seconds": 1},
            "rollout": {"max_unavailable": max_unavailable, "drain_seconds": 0},
        }
        if updates:
            spec["updates"] = updates
        if alerts:
            spec["alerts"] = alerts
        if lb:
            spec["network"] = {"mode": "bridge", "name": f"{self.prefix}-net", "backends": "published"}
            spec["loadbalancer"] = dict(lb, nginx=nginx)
        doc = minimal(**spec)
        doc["metadata"]["name"] = self.prefix
        self.spec.write_text(yaml.safe_dump(doc, sort_keys=False))

    def argv(self, *args: str) -> list[str]:
        return [*CONDUIT, "--docker-host", self.engine.host, "--state-dir", str(self.state), "--root", str(self.root), *args]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=cli_env())

    def apply(self, *extra: str) -> subprocess.CompletedProcess:
        return self.run("apply", "--auto-approve", *extra, str(self.spec))

    def names(self) -> dict[str, str]:
        client = self.engine.client
        return {c.name: c.status for c in client.containers.list(all=True) if c.name.startswith(self.prefix)}

    def command_of(self, name: str) -> list[str]:
        return self.engine.client.containers.get(name).attrs["Config"]["Cmd"]

    def keys(self) -> dict[str, bytes]:
        """Every data volume's key file, read from the volume on the host."""
        out = {}
        for volume in self.engine.client.volumes.list():
            if volume.name.startswith(f"{self.prefix}-data"):
                key = Path(volume.attrs["Mountpoint"]) / "conduit_key.json"
                out[volume.name] = key.read_bytes()
        return out

    def generations(self) -> list[tuple[int, str]]:
        return [(g.id, g.outcome) for g in open_state(self.state).history.generations()]


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup):
    from conduit.execute.executor import stop_pidfile

    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("ap"), free_port_block(12))
    yield cluster
    stop_pidfile(cluster.state / f"tracker-{cluster.prefix}.pid")  # a tracker must not outlive its test


def test_apply_twice_changes_nothing_the_second_time(cluster):
    cluster.write()
    first = cluster.apply()
    assert first.returncode == 0, first.stdout + first.stderr
    assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}
    second = cluster.apply()
    assert second.returncode == 0 and "No changes" in second.stdout
    assert cluster.generations() == [(1, "succeeded")]  # a no-op records no generation
    assert set(cluster.keys()) == {f"{cluster.prefix}-data-1", f"{cluster.prefix}-data-2"}



def test_a_node_added_with_pinned_limits_leaves_the_running_ones_untouched(cluster):
    """The README's promise: with cpus, memory and max_clients pinned, raising count only adds."""
    cluster.write(count=2)
    assert cluster.apply().returncode == 0
    ids = {c.name: c.id for c in cluster.engine.client.containers.list() if c.name.startswith(cluster.prefix)}
    cluster.write(count=3)
    added = cluster.apply()
    assert added.returncode == 0, added.stdout + added.stderr
    now = {c.name: c.id for c in cluster.engine.client.containers.list() if c.name.startswith(cluster.prefix)}
    assert {name: now[name] for name in ids} == ids and set(now) - set(ids) == {f"{cluster.prefix}-3"}

def test_in_place_update_keeps_the_container(cluster):
    cluster.write()
    assert cluster.apply().returncode == 0
    before = cluster.engine.client.containers.get(f"{cluster.prefix}-1").id
    cluster.spec.write_text(cluster.spec.read_text().replace("memory: 96MiB", "memory: 128MiB"))
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    container = cluster.engine.client.containers.get(f"{cluster.prefix}-1")
    assert container.id == before and container.attrs["HostConfig"]["Memory"] == 128 << 20


def test_replace_keeps_the_key(cluster):
    cluster.write()
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    cluster.write(max_clients=60)
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "60" in cluster.command_of(f"{cluster.prefix}-2")
    assert cluster.keys() == keys
    assert not any(name.endswith(".previous") for name in cluster.names())


def assert_rolled_back(cluster, result, keys, failure_words):
    assert result.returncode == 3, result.stdout + result.stderr
    assert failure_words in result.stderr
    assert "Rolled back to generation 1" in result.stderr
    assert cluster.generations()[-1][1] == "rolled_back"
    assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}
    assert cluster.command_of(f"{cluster.prefix}-1")[2] == "40"  # generation 1's -m
    assert cluster.keys() == keys


@pytest.mark.parametrize("exit_after,linger", [("0", ""), ("1", ""), ("1", "1.5")], ids=["at-once", "after-metrics", "closes-metrics-first"])
def test_container_that_exits_is_rolled_back_with_its_exit_code_and_log(cluster, exit_after, linger):
    """At once, after its metrics answered, or closing its metrics a moment before it exits: whatever
    moment the gate looked, the line says how the node exited and quotes what it logged, and history
    records the same reason."""
    cluster.write()
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    cluster.write(max_clients=50, env={"STANDIN_EXIT_AFTER": exit_after} | ({"STANDIN_EXIT_LINGER": linger} if linger else {}))
    result = cluster.apply()
    assert_rolled_back(cluster, result, keys, "exit code 3")
    (line,) = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert f"its last log lines: " in line and f"standin: exiting (STANDIN_EXIT_AFTER={exit_after})" in line
    assert "do not answer" not in line
    assert "docker logs" not in line  # the node under that name is the old one again: its log is not the failed run's
    reason = open_state(cluster.state).history.generation(2).reason
    assert "exit code 3" in reason and "standin: exiting" in reason


def test_a_rollback_is_alerted(cluster, tmp_path):
    from tests.telegram_stub import TelegramStub

    stub = TelegramStub()
    try:
        (tmp_path / "token").write_text("42:AAHfakeTokenForTestsOnly_0123456789\n")
        (tmp_path / "chat").write_text("7\n")
        alerts = {"telegram": {"bot_token": {"file": str(tmp_path / "token")}, "chat_id": {"file": str(tmp_path / "chat")}, "api_url": stub.url}}
        cluster.write(alerts=alerts)
        assert cluster.apply().returncode == 0
        assert stub.requests == []
        cluster.write(max_clients=50, env={"STANDIN_EXIT_AFTER": "0"}, alerts=alerts)
        assert cluster.apply().returncode == 3
    finally:
        stub.close()
    ((path, body),) = stub.requests
    assert path == "/bot42:AAHfakeTokenForTestsOnly_0123456789/sendMessage" and body["chat_id"] == "7"
    assert "apply of generation 2 failed" in body["text"] and "Rolled back to generation 1" in body["text"]


def test_the_nodes_of_a_batch_are_replaced_side_by_side_and_put_back_together(cluster):
    """max_unavailable 2: one batch of both nodes, replaced at once, each journalled; when the new
    ones fail their gate, both old ones are put back with their keys."""
    cluster.write(max_unavailable=2)
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    cluster.write(max_clients=60, max_unavailable=2)
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.keys() == keys and not any(name.endswith(".previous") for name in cluster.names())
    cluster.write(max_clients=50, env={"STANDIN_EXIT_AFTER": "0"}, max_unavailable=2)
    result = cluster.apply()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "exit code 3" in result.stderr and "Rolled back to generation 2" in result.stderr
    assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}
    assert all(cluster.command_of(name)[2] == "60" for name in cluster.names())  # generation 2's -m
    assert cluster.keys() == keys
    journal = open_state(cluster.state).history.journal(3)
    replaced = {(row[2], row[4]) for row in journal if row[1] == "container" and row[3] == "replace"}
    assert {(f"{cluster.prefix}-{i}", status) for i in (1, 2) for status in ("started", "done")} <= replaced


def test_backend_that_never_answers_is_rolled_back(cluster):
    cluster.write()
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    cluster.write(max_clients=50, env={"STANDIN_NO_METRICS": "1"})
    assert_rolled_back(cluster, cluster.apply(), keys, "do not answer")


def test_an_image_that_cannot_be_pulled_stops_before_any_node_does(cluster):
    cluster.write()
    assert cluster.apply().returncode == 0
    ids = {c.name: c.id for c in cluster.engine.client.containers.list()}
    cluster.image = "127.0.0.1:9/conduit/cli:2.0.0"  # a registry that refuses at once
    cluster.write(max_clients=50)
    result = cluster.apply()
    # Nothing changed: exit 1, no generation recorded, and one error line saying what to do.
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"image {cluster.image} is not on this host and could not be pulled: " in errors[0]
    assert errors[0].endswith("; docker pull it or fix spec.containers.image")
    assert "Rolled back" not in result.stderr
    assert cluster.generations() == [(1, "succeeded")]
    assert {c.name: c.id for c in cluster.engine.client.containers.list()} == ids  # untouched, still running


def test_a_port_held_by_another_process_on_a_running_cluster_stops_plan_and_apply(cluster):
    """The node restarts in a loop because a stranger took its metrics port: plan names the holder
    (whatever state Docker shows the node in at that moment), and apply changes nothing."""
    import socket

    cluster.write()
    assert cluster.apply().returncode == 0
    node = cluster.engine.client.containers.get(f"{cluster.prefix}-2")
    node.stop(timeout=5)
    port = cluster.port_base + 1  # the metrics port of node 2
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the gate's connections left TIME_WAIT behind
        sock.bind(("127.0.0.1", port))
        sock.listen()
        node.start()  # its conduit cannot bind the port: it exits, and its restart policy starts it again
        ids = {c.name: c.id for c in cluster.engine.client.containers.list(all=True)}
        plan = cluster.run("plan", str(cluster.spec))
        assert plan.returncode == 1, plan.stdout + plan.stderr
        (line,) = [line for line in plan.stderr.splitlines() if f"port {port}/tcp" in line]
        assert line == (f"error: port {port}/tcp (metrics of {cluster.prefix}-2) is already in use by another process: "
                        f"pid {os.getpid()} ({Path('/proc/self/comm').read_text().strip()}); "
                        "stop that process or change conduit.metrics_port_base")
        assert not [line for line in plan.stderr.splitlines() if f"{cluster.prefix}-1" in line]  # node 1 holds its own
        result = cluster.apply()
        assert result.returncode == 1 and "nothing was changed" in result.stderr
        assert {c.name: c.id for c in cluster.engine.client.containers.list(all=True)} == ids
        assert cluster.generations() == [(1, "succeeded")]


def test_ulimit_above_the_host_limit_is_refused_before_anything_runs(cluster):
    cluster.write()
    assert cluster.apply().returncode == 0
    cluster.write(ulimit=1 << 20)
    result = cluster.apply()
    assert result.returncode == 2
    assert "hard open-file limit" in result.stderr and "spec.containers.resources.ulimit_nofile" in result.stderr
    assert cluster.generations() == [(1, "succeeded")]


def test_ulimit_the_engine_refuses_is_rolled_back(cluster):
    """The spec claims a bigger host than it is: the engine itself refuses the container."""
    cluster.write()
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    hard = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout)
    cluster.write(ulimit=hard * 4, nofile_limit=hard * 8)
    result = cluster.apply()
    assert result.returncode == 3, result.stdout + result.stderr
    assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}
    assert cluster.keys() == keys


def test_first_apply_that_fails_leaves_no_containers_and_keeps_volumes(cluster):
    cluster.write(env={"STANDIN_EXIT_AFTER": "0"})
    result = cluster.apply()
    assert result.returncode == 3, result.stdout + result.stderr
    assert cluster.names() == {}
    assert set(cluster.keys()) == {f"{cluster.prefix}-data-1", f"{cluster.prefix}-data-2"}


def test_a_failed_apply_after_a_destroy_leaves_the_host_empty(cluster):
    """The destroyed cluster is not the good generation to go back to: the host ran none of it."""
    cluster.write()
    assert cluster.apply().returncode == 0
    assert cluster.run("destroy", "--auto-approve", str(cluster.spec)).returncode == 0
    cluster.write(env={"STANDIN_EXIT_AFTER": "0"})
    result = cluster.apply()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Rolled back to the state before this apply." in result.stderr
    assert cluster.names() == {}
    assert [outcome for _, outcome in cluster.generations()] == ["succeeded", "destroyed", "rolled_back"]


def test_two_applies_at_once_one_refuses(cluster):
    cluster.write()
    # the first holds the lock from before its generation begins until the nodes have settled 5 s:
    # time enough for the second to start, on a loaded machine too
    cluster.spec.write_text(cluster.spec.read_text().replace("settle_seconds: 1", "settle_seconds: 5"))
    results: dict[str, subprocess.CompletedProcess] = {}
    first = threading.Thread(target=lambda: results.setdefault("a", cluster.apply()))
    first.start()
    wait_for(lambda: (cluster.state / "state.db").exists() and open_state(cluster.state).history.generations(),
             timeout=60, interval=0.01, message="the first apply's generation")
    results["b"] = cluster.apply("--no-wait")
    first.join()
    assert results["a"].returncode == 0
    assert results["b"].returncode == 1 and "another apply is running" in results["b"].stderr
    assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}


def done_steps(state_dir: Path) -> int:
    if not (state_dir / "state.db").exists():
        return 0
    try:
        return sum(1 for row in open_state(state_dir).history.journal(1) if row[4] == "done")
    except Exception:  # noqa: BLE001 - the database may be mid-creation
        return 0


@pytest.mark.parametrize("kill_after", [0, 2, 4, 5])
def test_sigkill_mid_apply_then_apply_converges(cluster, kill_after):
    """Killed after N finished steps (3 volumes, then 3 containers), the next apply converges in one pass."""
    cluster.write(count=3)
    process = subprocess.Popen(cluster.argv("apply", "--auto-approve", str(cluster.spec)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        journal_started = (cluster.state / "state.db").exists() and open_state(cluster.state).history.generations()
        if journal_started and done_steps(cluster.state) >= kill_after:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert open_state(cluster.state).history.generations()[0].outcome == "applying"
    plan = cluster.run("plan", str(cluster.spec))
    assert "generation 1 was interrupted" in plan.stdout + plan.stderr
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.names() == {f"{cluster.prefix}-{i}": "running" for i in (1, 2, 3)}
    assert cluster.generations()[0] == (1, "interrupted")
    assert cluster.run("plan", "--detailed-exitcode", str(cluster.spec)).returncode == 0
    assert set(cluster.keys()) == {f"{cluster.prefix}-data-{i}" for i in (1, 2, 3)}


def replace_started(state_dir: Path, gen: int) -> bool:
    try:
        return any(row[1] == "container" and row[3] == "replace" for row in open_state(state_dir).history.journal(gen))
    except Exception:  # noqa: BLE001 - the database may be mid-write
        return False


def old_node_held(cluster) -> bool:
    try:
        return f"{cluster.prefix}-1.previous" in cluster.names()
    except Exception:  # noqa: BLE001 - the engine may be busy
        return False


def replace_in_background_until(cluster, reached, gate_timeout: int = 8) -> tuple[subprocess.Popen, dict[str, bytes]]:
    """Apply two nodes, then start an apply that replaces them (max clients 60) and return once
    `reached()` holds (or it ended, or 60 s passed): the running apply, and the keys before it."""
    cluster.write(gate_timeout=gate_timeout)
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    cluster.write(max_clients=60, gate_timeout=gate_timeout)
    process = subprocess.Popen(cluster.argv("apply", "--auto-approve", str(cluster.spec)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=cli_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and not reached():
        time.sleep(0.01)
    return process, keys


@pytest.mark.parametrize("moment", ["replace started", "old node stopped and renamed"])
def test_engine_stopped_mid_replace_fails_in_one_line_then_apply_converges(cluster, moment):
    """dockerd stops while a replace runs and stays down past the gate timeout: one error line,
    exit 4, the generation recorded failed. Once the engine is back, the next apply puts every
    node back on its own key, a `.previous` left by the replace included."""
    reached = (lambda: replace_started(cluster.state, 2)) if moment == "replace started" else (lambda: old_node_held(cluster))
    process, keys = replace_in_background_until(cluster, reached)
    try:
        cluster.engine.stop_daemon()
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
        cluster.engine.start_daemon()
    assert "Traceback" not in out + err
    assert process.returncode == 4, out + err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "generation 2 failed" in line and "conduit status" in line and "conduit history" in line
    assert cluster.generations() == [(1, "succeeded"), (2, "failed")]

    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}
    assert cluster.keys() == keys
    assert "60" in cluster.command_of(f"{cluster.prefix}-1")
    assert cluster.run("plan", "--detailed-exitcode", str(cluster.spec)).returncode == 0


def test_engine_back_within_the_gate_timeout_restores_the_stopped_node_in_the_same_run(cluster):
    """dockerd stops once the old node is stopped and renamed, and is back 2 s later: the same
    apply puts that node back as it was and ends rolled back (exit 3), nothing left stopped. The gate
    timeout is long: a dockerd starting on a loaded machine (other engines, other tests) takes seconds."""
    process, keys = replace_in_background_until(cluster, lambda: old_node_held(cluster), gate_timeout=60)
    try:
        cluster.engine.stop_daemon()
        time.sleep(2)
    finally:
        cluster.engine.start_daemon()
    out, err = process.communicate(timeout=180)
    assert "Traceback" not in out + err
    assert process.returncode == 3, out + err
    assert f"{cluster.prefix}-1 failed its gate: restored as it was" in out
    assert cluster.generations() == [(1, "succeeded"), (2, "rolled_back")]
    assert cluster.names() == {f"{cluster.prefix}-1": "running", f"{cluster.prefix}-2": "running"}
    assert cluster.command_of(f"{cluster.prefix}-1")[2] == "40"
    assert cluster.keys() == keys


def test_tracker_is_started_records_regions_and_is_stopped(cluster):
    from harness import wait_for

    cluster.write(tracker=True, env={"STANDIN_REGIONS": "IR=3:1000:2000,CN=2:10:20"})
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    pid = int((cluster.state / f"tracker-{cluster.prefix}.pid").read_text())
    # two nodes, each reporting IR 3 clients and CN 2
    latest = wait_for(lambda: open_state(cluster.state).samples.latest() or None, timeout=15, message="a tracker sample")
    assert latest == {"IR": (6, 2000, 4000), "CN": (4, 20, 40)}
    assert cluster.run("plan", "--detailed-exitcode", str(cluster.spec)).returncode == 0
    cluster.write(tracker=False, env={"STANDIN_REGIONS": "IR=3:1000:2000,CN=2:10:20"})
    assert cluster.apply().returncode == 0
    assert not Path(f"/proc/{pid}").exists() or b"tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()


# ------------------------------------------------------------------ with the nginx front


def through(port: int) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        conn.settimeout(3)
        return conn.recv(100)


@pytest.fixture
def fronted(tmp_path, docker_engine, standin_image, docker_cleanup, nginx_server, published_ports):
    from harness import free_port

    # The nginx paths are real absolute paths of the private nginx, so the host root is /.
    # 12 metrics ports, then the nodes' 2 backend ports: no fixed port, which a test running beside this one may hold
    ports = free_port_block(14)
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("lb"), ports, root=Path("/"))
    listen, base = free_port(), ports + 12
    lb = {
        "enabled": True,
        "listeners": [{"name": "tcp", "port": listen, "protocol": "tcp", "backend_port": 8443, "host_port_base": base}],
        "access_log": f"{nginx_server.prefix}/stream.log",
    }
    # The system nginx is the private one; the tool's own nginx keeps its files beside it.
    nginx = {
        "binary": nginx_server.binary,
        "main_config": str(nginx_server.main_conf),
        "include_file": f"{nginx_server.prefix}/conduit/stream.conf",
        "pid_file": str(nginx_server.pid_file),
        "instance_config": f"{nginx_server.prefix}/conduit/nginx.conf",
        "instance_pid_file": f"{nginx_server.prefix}/conduit-nginx.pid",
        "error_log": f"{nginx_server.prefix}/conduit-error.log",
    }
    cluster.write_front = lambda **kw: cluster.write(env={"STANDIN_LISTEN": "tcp:8443"}, lb=dict(lb, **kw.pop("lb", {})), nginx=nginx, **kw)
    cluster.lb, cluster.nginx = lb, nginx
    cluster.listen = listen
    cluster.include = Path(nginx["include_file"])
    cluster.own_pid = lambda: _own_master(Path(nginx["instance_pid_file"]), nginx["instance_config"])
    cluster.system = nginx_server
    yield cluster
    pid = cluster.own_pid()  # a test that ends without destroy leaves the own nginx running
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        from harness import wait_for

        wait_for(lambda: not _alive(pid) or None, timeout=10, message="the own nginx to stop")


def _own_master(pid_file: Path, config: str) -> int | None:
    """The own nginx's master when it runs (its pid file names a live nginx started with its config)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except (OSError, ValueError, IndexError):
        return None
    return pid if config.encode() in argv else None


def _alive(pid: int) -> bool:
    """Running, not a zombie left for a PID 1 that does not reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def test_own_front_is_sized_serves_and_destroy_stops_it(fronted):
    fronted.write_front(lb={"capacity": 3000, "worker_processes": 2})
    result = fronted.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert through(fronted.listen).startswith(b"standin ")
    pid = fronted.own_pid()
    assert pid is not None and pid != fronted.system.master_pid()
    main = fronted.include.with_name("nginx.conf").read_text()
    assert "worker_processes 2;" in main and "worker_connections 3377;" in main
    assert fronted.system.main_conf.read_text() == fronted.system.render_main()  # the system nginx is untouched
    import socket

    with socket.create_connection(("127.0.0.1", fronted.listen), timeout=3) as held:
        assert held.recv(100).startswith(b"standin ")  # one session held: two connections in nginx
        status = fronted.run("status", "--json", str(fronted.spec))
    assert status.returncode == 0, status.stderr
    capacity = json.loads(status.stdout)["front_capacity"]
    assert capacity["ceiling"] == 2 * 3377 and capacity["sessions"] == 3000 and capacity["connections"] >= 2

    result = fronted.run("destroy", "--auto-approve", str(fronted.spec))
    assert result.returncode == 0, result.stdout + result.stderr
    assert fronted.own_pid() is None and not _alive(pid)
    assert not fronted.include.exists() and not fronted.include.with_name("nginx.conf").exists()
    assert fronted.system.master_pid() is not None  # the system nginx still runs


def test_a_failed_first_apply_stops_the_own_nginx_it_started(fronted):
    # the nodes listen on another port than the front's backends: the front gate fails
    fronted.write(env={"STANDIN_LISTEN": "tcp:8444"}, lb=fronted.lb, nginx=fronted.nginx)
    result = fronted.apply()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "reached no backend" in result.stderr or "reached no backend" in result.stdout
    assert fronted.own_pid() is None
    assert not fronted.include.exists() and not fronted.include.with_name("nginx.conf").exists()
    assert fronted.system.master_pid() is not None


def test_front_serves_backends_and_a_failing_nginx_config_is_rolled_back(fronted):
    fronted.write_front()
    result = fronted.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert through(fronted.listen).startswith(b"standin ")
    good_conf = fronted.include.read_text()
    keys = fronted.keys()

    fronted.write_front(max_clients=50, lb={"access_log": "/tmp/conduit-no-such-dir/stream.log"})
    result = fronted.apply()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "nginx rejected the configuration" in result.stderr
    assert fronted.include.read_text() == good_conf
    assert through(fronted.listen).startswith(b"standin ")  # the previous generation still serves
    assert fronted.command_of(f"{fronted.prefix}-1")[2] == "40"
    assert fronted.keys() == keys


def test_rolling_replace_behind_the_front(fronted):
    fronted.write_front()
    assert fronted.apply().returncode == 0
    fronted.write_front(max_clients=60)
    result = fronted.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert all("60" in fronted.command_of(f"{fronted.prefix}-{i}") for i in (1, 2))
    assert " down" not in fronted.include.read_text()  # every backend is back in rotation
    assert through(fronted.listen).startswith(b"standin ")


def test_saved_plan_is_applied_or_refused_when_the_host_moved(cluster, tmp_path):
    cluster.write()
    saved = tmp_path / "plan.json"
    assert cluster.run("plan", "--out", str(saved), str(cluster.spec)).returncode == 0
    # someone creates a volume of ours by hand: the observed host no longer matches the plan
    cluster.engine.client.volumes.create(f"{cluster.prefix}-data-1")
    refused = cluster.run("apply", "--auto-approve", "--plan", str(saved))
    assert refused.returncode == 1 and "host changed since this plan was saved" in refused.stderr
    assert cluster.names() == {} and cluster.generations() == []
    assert cluster.run("plan", "--out", str(saved), str(cluster.spec)).returncode == 0
    applied = cluster.run("apply", "--auto-approve", "--plan", str(saved))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert len(cluster.names()) == 2


def _saved_changes(saved: Path) -> list[tuple]:
    return sorted((s["phase"], s["kind"], s["id"], s["action"]) for s in json.loads(saved.read_text())["steps"] if s["action"] != "no-op")


def test_a_saved_plan_runs_its_own_steps_whatever_the_spec_file_says_now(cluster, tmp_path):
    cluster.write(count=3)
    saved = tmp_path / "plan.json"
    assert cluster.run("plan", "--out", str(saved), str(cluster.spec)).returncode == 0
    cluster.write(count=1)  # the spec file moves on; the saved plan was made from its text then
    asked = cluster.run("apply", "--plan", str(saved))  # no terminal to ask on, no --auto-approve
    assert asked.returncode == 1 and "pass --auto-approve" in asked.stderr and cluster.generations() == []
    applied = cluster.run("apply", "--auto-approve", "--plan", str(saved))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert set(cluster.names()) == {f"{cluster.prefix}-{i}" for i in (1, 2, 3)}
    [(gen, outcome)] = cluster.generations()
    done = sorted(row[:4] for row in open_state(cluster.state).history.journal(gen) if row[4] == "done")
    assert outcome == "succeeded" and done == _saved_changes(saved)


def test_an_edited_saved_plan_is_refused_and_the_host_is_untouched(cluster, tmp_path):
    cluster.write(count=3)
    assert cluster.apply().returncode == 0
    cluster.write(count=3, max_clients=60)
    saved = tmp_path / "plan.json"
    assert cluster.run("plan", "--out", str(saved), str(cluster.spec)).returncode == 0
    containers = {c.name: c.id for c in cluster.engine.client.containers.list(all=True) if c.name.startswith(cluster.prefix)}
    data = json.loads(saved.read_text())
    data["spec_text"] = data["spec_text"].replace("count: 3", "count: 1")
    assert "count: 1" in data["spec_text"]
    saved.write_text(json.dumps(data, indent=2, sort_keys=True))
    refused = cluster.run("apply", "--auto-approve", "--plan", str(saved))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"error: {saved}: its digest does not match its content: the file was changed after conduit plan --out wrote it"
    ]
    after = {c.name: c.id for c in cluster.engine.client.containers.list(all=True) if c.name.startswith(cluster.prefix)}
    assert after == containers and len(after) == 3 and cluster.generations() == [(1, "succeeded")]
    assert all(cluster.command_of(name)[2] == "40" for name in after)


def test_history_and_rollback_to_an_earlier_generation(cluster):
    cluster.write(max_clients=40)
    assert cluster.apply().returncode == 0
    cluster.write(max_clients=70)
    assert cluster.apply().returncode == 0
    history = cluster.run("history")
    assert history.returncode == 0 and history.stdout.count("succeeded") == 2
    keys = cluster.keys()
    result = cluster.run("rollback", "1", "--auto-approve")
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.command_of(f"{cluster.prefix}-1")[2] == "40"
    assert [outcome for _, outcome in cluster.generations()] == ["succeeded"] * 3
    assert cluster.keys() == keys
    listed = cluster.run("history").stdout.splitlines()  # the rollback says what it went back to, on its own line
    assert listed[listed.index(next(line for line in listed if line.lstrip().startswith("3 "))) + 1].strip() == "rollback to generation 1"


def test_rollback_without_n_goes_to_the_good_generation_before_the_current_one(cluster):
    cluster.write(max_clients=40)
    assert cluster.apply().returncode == 0
    cluster.write(max_clients=70)
    assert cluster.apply().returncode == 0
    result = cluster.run("rollback", "--auto-approve")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Rolling back from generation 2 to generation 1" in result.stdout
    assert cluster.command_of(f"{cluster.prefix}-1")[2] == "40"  # generation 1's -m, not a re-apply of 2
    assert cluster.generations() == [(1, "succeeded"), (2, "succeeded"), (3, "succeeded")]
    (warning,) = [line for line in result.stderr.splitlines() if "undo this rollback" in line]
    assert warning.startswith(f"warning: the spec file {cluster.spec} (and its watch, if one runs) will undo")
    assert warning.endswith("to keep it, put generation 1's spec into the file (`conduit history --spec 1` prints it) or stop the watch")
    newer = cluster.spec.read_text()
    again = cluster.apply()  # what the warning says: the spec file takes the host back
    assert again.returncode == 0 and cluster.command_of(f"{cluster.prefix}-1")[2] == "70"
    kept = cluster.run("history", "--spec", "1")  # and how to keep the rollback: generation 1's spec in the file
    assert kept.returncode == 0 and kept.stdout != newer and "max_clients: 40" in kept.stdout
    cluster.spec.write_text(kept.stdout)
    assert cluster.apply().returncode == 0 and cluster.command_of(f"{cluster.prefix}-1")[2] == "40"
    missing = cluster.run("history", "--spec", "9")
    assert (missing.returncode, missing.stderr) == (2, "error: no generation 9; `conduit history` lists them\n")


def test_rollback_without_a_good_generation_before_the_current_one_is_one_line(cluster):
    cluster.write()
    assert cluster.apply().returncode == 0
    result = cluster.run("rollback", "--auto-approve")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no good generation before the current one to roll back to; `conduit history` lists them"]


def test_apply_without_confirmation_changes_nothing(cluster):
    cluster.write()
    result = cluster.run("apply", str(cluster.spec))  # no terminal, no --auto-approve
    assert result.returncode == 1 and "--auto-approve" in result.stderr
    assert cluster.names() == {} and not (cluster.state / "state.db").exists() or cluster.generations() == []


def test_every_step_is_a_structured_event(cluster):
    import json

    cluster.write(count=1)
    argv = cluster.argv("apply", "--auto-approve", str(cluster.spec))
    argv.insert(len(CONDUIT), "--log-format=json")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=cli_env())
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    done = [(e["kind"], e["id"]) for e in events if e["event"] == "step.done"]
    assert done == [("volume", f"{cluster.prefix}-data-1"), ("container", f"{cluster.prefix}-1")]
    assert {e["event"] for e in events} >= {"phase.start", "phase.healthy", "step.done"}


def test_nginx_file_edited_by_hand_is_drift_and_repaired(fronted):
    fronted.write_front()
    assert fronted.apply().returncode == 0
    good = fronted.include.read_text()
    fronted.include.write_text(good.replace("max_fails=20", "max_fails=9"))
    plan = fronted.run("plan", "--json", str(fronted.spec))
    import json

    steps = [s for s in json.loads(plan.stdout)["steps"] if s["action"] != "no-op"]
    assert [(s["kind"], s["action"], s["reason"]) for s in steps] == [("nginx_conf", "update", "drift")]
    assert fronted.apply().returncode == 0
    assert fronted.include.read_text() == good
    assert through(fronted.listen).startswith(b"standin ")


# ------------------------------------------------------------------ a kernel that lacks and refuses keys

REFUSING_SYSCTL = {"profile": "none", "on_refused": "warn",
                   "overrides": {"net.core.rmem_max": 33554432, "net.netfilter.nf_conntrack_max": 262144, "fs.nr_open": 1048576}}  # fmt: skip


def refusing_kernel(root: Path) -> None:
    """/proc/sys under the private root, as an LXC or OpenVZ VPS shows it: fs.nr_open writable,
    nf_conntrack_max absent (no module), net.core.rmem_max served read-only (write: EACCES)."""
    nr_open = root / "proc/sys/fs/nr_open"
    nr_open.parent.mkdir(parents=True)
    nr_open.write_text("1024\n")
    rmem = root / "proc/sys/net/core/rmem_max"
    rmem.parent.mkdir(parents=True)
    rmem.symlink_to("/proc/sys/kernel/osrelease")


def test_keys_a_vps_kernel_lacks_or_refuses_converge_under_warn(cluster):
    refusing_kernel(cluster.root)
    cluster.write(count=1, sysctl=REFUSING_SYSCTL)
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (cluster.root / "proc/sys/fs/nr_open").read_text() == "1048576\n"
    again = cluster.run("plan", "--detailed-exitcode", str(cluster.spec))
    assert again.returncode == 0, again.stdout + again.stderr
    # Nothing to do: the held keys are named in one line, their reasons are for --verbose.
    assert "as far as its kernel allows (held: net.core.rmem_max, net.netfilter.nf_conntrack_max;" in again.stdout
    assert "does not exist on this kernel" not in again.stdout
    verbose = cluster.run("plan", "--verbose", str(cluster.spec))
    assert "net.netfilter.nf_conntrack_max does not exist on this kernel" in verbose.stdout
    assert "net.core.rmem_max is read-only here" in verbose.stdout
    # The module loaded: the key is planned again, and applied.
    (cluster.root / "proc/sys/net/netfilter").mkdir(parents=True)
    (cluster.root / "proc/sys/net/netfilter/nf_conntrack_max").write_text("65536\n")
    assert cluster.run("plan", "--detailed-exitcode", str(cluster.spec)).returncode == 2
    assert cluster.apply().returncode == 0
    assert (cluster.root / "proc/sys/net/netfilter/nf_conntrack_max").read_text() == "262144\n"
    assert cluster.run("plan", "--detailed-exitcode", str(cluster.spec)).returncode == 0


def test_a_new_identity_needs_the_hosts_flag_and_backs_the_old_key_up_first(cluster):
    cluster.write(count=1)
    assert cluster.apply().returncode == 0
    (old_key,) = cluster.keys().values()
    container = cluster.engine.client.containers.get(f"{cluster.prefix}-1")
    cluster.write(count=1, volume_prefix=f"{cluster.prefix}-data-renamed")
    plan = cluster.run("plan", str(cluster.spec))
    assert "NEW IDENTITY" in plan.stdout, plan.stdout
    refused = cluster.apply()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "NEW IDENTITY" in refused.stderr and "--allow-new-identity" in refused.stderr
    assert cluster.engine.client.containers.get(f"{cluster.prefix}-1").id == container.id  # untouched
    assert len(cluster.generations()) == 1
    allowed = cluster.run("apply", "--auto-approve", "--allow-new-identity", str(cluster.spec))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    backups = list((cluster.state / "key-backups").glob(f"*/{cluster.prefix}-data-1.conduit_key.json"))
    assert [b.read_bytes() for b in backups] == [old_key]
    keys = cluster.keys()
    assert keys[f"{cluster.prefix}-data-1"] == old_key  # the old volume and its key stay
    assert keys[f"{cluster.prefix}-data-renamed-1"] != old_key
