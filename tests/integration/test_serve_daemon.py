"""`conduit serve --watch SPEC` as the one daemon of a host: it applies the spec when it is saved
(the apply on the agent's event stream), and it runs the spec's tracker in itself, with tcpdump
(real) as its only child, started again after it is killed."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from harness import free_port_block
from harness import wait_for
from tests.helpers import cli_env
from tests.integration.test_apply import Cluster
from tests.integration.test_serve import follow, get

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup):
    from conduit.execute.executor import stop_pidfile

    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("dm"), free_port_block(12))
    yield cluster
    stop_pidfile(cluster.state / f"tracker-{cluster.prefix}.pid")  # a tracker apply started must not outlive the test


def write(cluster: Cluster, count: int) -> None:
    """The spec with the tracker's sampled capture on the loopback, one long window at a time."""
    cluster.write(count=count, tracker=True)
    doc = yaml.safe_load(cluster.spec.read_text())
    doc["spec"]["tracker"].update(source="capture", interface="lo", sample_seconds=300)
    cluster.spec.write_text(yaml.safe_dump(doc, sort_keys=False))


def children(pid: int, name: str) -> list[int]:
    """The processes named `name` whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm == name and int(rest[1]) == pid and rest[0] != "Z":
            found.append(int(entry.name))
    return found


def tracker_processes(cluster: str) -> list[int]:
    """`conduit tracker run --cluster CLUSTER` processes, wherever they run."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tracker" in argv and b"run" in argv and cluster.encode() in argv:
            found.append(int(entry.name))
    return found


def drained(events: queue.Queue, seen: list) -> list:
    """Every event the stream has sent so far, as (kind, data)."""
    while True:
        try:
            seen.append(events.get_nowait())
        except queue.Empty:
            return seen


def watch_applied(seen: list) -> bool:
    return any(kind == "apply" and data.get("by") == "watch" and "changed: applied" in data.get("line", "") for kind, data in seen)


def test_one_daemon_follows_the_spec_and_supervises_the_trackers_capture(cluster):
    write(cluster, count=1)
    token = cluster.run("tokens", "create", "it", "--role", "viewer").stdout.strip()
    port = free_port_block(1)
    daemon = subprocess.Popen(cluster.argv("serve", "--watch", str(cluster.spec), "--port", str(port), "--interval", "1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=cli_env())  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        nodes = lambda count: (n := get(base, token, "/api/v1/nodes")) and len(n) == count and all(x["up"] for x in n)  # noqa: E731
        wait_for(lambda: nodes(1), timeout=120, message="the node applied by the daemon's watch loop and up")

        # The tracker apply started is taken over: its loop runs in the daemon, tcpdump is the daemon's child.
        first = wait_for(lambda: children(daemon.pid, "tcpdump"), timeout=60, message="tcpdump running as the daemon's child")
        wait_for(lambda: not tracker_processes(cluster.prefix), timeout=30, message="no separate tracker process")
        pidfile = cluster.state / f"tracker-{cluster.prefix}.pid"
        assert int(pidfile.read_text()) == daemon.pid
        planned = cluster.run("plan", "--detailed-exitcode", str(cluster.spec))
        assert planned.returncode == 0, planned.stdout + planned.stderr  # the hosted tracker is the spec's: no change

        os.kill(first[0], signal.SIGKILL)
        again = wait_for(lambda: [p for p in children(daemon.pid, "tcpdump") if p != first[0]], timeout=60,
                         message="tcpdump started again after it was killed")  # fmt: skip
        assert again and not tracker_processes(cluster.prefix)

        events: queue.Queue = queue.Queue()
        threading.Thread(target=follow, args=(base, token, events), daemon=True).start()
        seen: list = []
        wait_for(lambda: any(kind == "hello" for kind, _ in drained(events, seen)), timeout=30, message="the event stream open")
        write(cluster, count=2)
        wait_for(lambda: nodes(2), timeout=120, message="the saved spec's second node applied and up")
        wait_for(lambda: watch_applied(drained(events, seen)), timeout=30, message="the watch loop's apply on the event stream")
        watch = get(base, token, "/api/v1/watch")
        assert watch["pid"] == daemon.pid and watch["last_result"] == "applied", watch
        # The apply started the new settings' tracker; the daemon takes it over at its next check (2 s).
        wait_for(lambda: int(pidfile.read_text()) == daemon.pid and children(daemon.pid, "tcpdump"), timeout=30,
                 message="the new tracker taken over by the daemon, tcpdump its child")  # fmt: skip
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            _, err = daemon.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            _, err = daemon.communicate()
    assert "Traceback" not in err, err
    assert daemon.returncode == 0, err
    assert not tracker_processes(cluster.prefix)
