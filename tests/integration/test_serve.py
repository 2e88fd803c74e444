"""conduit serve against stand-in nodes: the API lists them, the event stream reports a node
stopped by hand within five seconds, and with --watch the agent is also the host's watcher."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from harness import free_port_block
from tests.harness import wait_for
from tests.helpers import cli_env
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup):
    return Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("sv"), free_port_block(12))


@pytest.fixture
def agent(cluster):
    """Starts `conduit serve` for the cluster's spec on a free loopback port; (its URL, a viewer token)."""
    processes = []

    def start(*extra: str) -> tuple[str, str]:
        made = cluster.run("tokens", "create", "it", "--role", "viewer")
        assert made.returncode == 0, made.stderr
        port = free_port_block(1)
        processes.append(subprocess.Popen(cluster.argv("serve", str(cluster.spec), "--port", str(port), "--interval", "1", *extra),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                          env=cli_env()))  # fmt: skip
        return f"http://127.0.0.1:{port}", made.stdout.strip()

    start.processes = processes
    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        assert "Traceback" not in err, err
        assert process.returncode == 0, err  # SIGTERM is the way a service stops: not a failure


def get(base: str, token: str, path: str):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except OSError:
        return None  # not listening yet, or no observation yet (503)


def follow(base: str, token: str, events: queue.Queue) -> None:
    """Each event of the stream, as (kind, data), into `events`."""
    request = urllib.request.Request(base + "/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as stream:
        kind = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.put((kind, json.loads(line[6:])))


def reported_down(events: queue.Queue, name: str, deadline: float) -> dict | None:
    """The first event that says `name` is down, before `deadline`; None when none came."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            kind, data = events.get(timeout=left)
        except queue.Empty:
            return None
        down = [c for c in data.get("changed", []) if c["name"] == name and not c["up"]] if kind == "nodes" else []
        if down:
            return down[0]
    return None


def test_the_agent_lists_the_nodes_and_streams_a_node_going_down(cluster, agent):
    cluster.write(count=3)
    assert cluster.apply().returncode == 0
    base, token = agent()

    def all_up():
        nodes = get(base, token, "/api/v1/nodes")
        return nodes if nodes and all(n["up"] for n in nodes) and len(nodes) == 3 else None

    nodes = wait_for(all_up, timeout=30, message="three nodes up in the agent's API")
    assert {n["name"] for n in nodes} == {f"{cluster.prefix}-{i}" for i in (1, 2, 3)}
    assert all(n["memory_limit"] == 96 << 20 and n["restarts"] == 0 and n["uptime"] is not None for n in nodes), nodes
    # The limits the containers run with, read from Docker, beside the spec's: the same after an apply.
    assert all(n["memory_limit_seen"] == 96 << 20 and n["cpu_limit_seen"] == n["cpu_limit"] > 0 for n in nodes), nodes
    # What the image said it is at the last apply, and the image ID the node runs (no registry here: no digest).
    assert all(n["version"] == "official 2.0.0" and n["image_id"].startswith("sha256:") and n["digest"] is None for n in nodes), nodes

    events: queue.Queue = queue.Queue()
    threading.Thread(target=follow, args=(base, token, events), daemon=True).start()
    assert events.get(timeout=10)[0] == "hello"
    cluster.engine.client.containers.get(f"{cluster.prefix}-2").stop(timeout=5)
    stopped = time.monotonic()
    down = reported_down(events, f"{cluster.prefix}-2", deadline=stopped + 5)
    assert down is not None, "the event stream did not report the stopped node within 5 s"
    assert down["state"] in ("exited", "no metrics") and time.monotonic() - stopped < 5
    summary = get(base, token, "/api/v1/summary")
    assert summary["totals"]["containers"] == 3


def test_with_watch_the_agent_applies_the_spec_and_repairs_drift(cluster, agent):
    cluster.write(count=2)  # not applied: the agent's watch loop applies it when it starts
    base, token = agent("--watch", "--watch-interval", "2")

    def up(count: int):
        nodes = get(base, token, "/api/v1/nodes")
        return nodes if nodes and len(nodes) == count and all(n["up"] for n in nodes) else None

    wait_for(lambda: up(2), timeout=90, message="two nodes applied by the agent's watch loop and up")
    watch = wait_for(lambda: get(base, token, "/api/v1/watch"), timeout=60, message="the watch loop's record")
    assert watch["pid"] == agent.processes[0].pid and watch["last_result"] in ("applied", "unchanged"), watch
    name = f"{cluster.prefix}-2"
    cluster.engine.client.containers.get(name).remove(force=True)
    wait_for(lambda: cluster.names().get(name) == "running", timeout=60, message="the removed node repaired on the next interval")
    cluster.write(count=3)
    wait_for(lambda: up(3), timeout=90, message="the saved spec's third node applied and up")


def _first_lines(cluster, count: int, *extra: str) -> list[str]:
    """The first `count` lines `conduit serve` prints while it runs (not only once it stops), then it is stopped."""
    import queue
    import threading

    port = free_port_block(1)
    process = subprocess.Popen(cluster.argv("serve", str(cluster.spec), "--port", str(port), *extra), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=cli_env())  # fmt: skip
    said: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [said.put(line) for line in process.stdout], daemon=True).start()
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(lines) < count and time.monotonic() < deadline:
            try:
                lines.append(said.get(timeout=max(0.01, deadline - time.monotonic())).rstrip("\n").replace(str(port), "PORT"))
            except queue.Empty:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        err = process.stderr.read()
        process.wait(timeout=20)
    assert "Traceback" not in err, err
    assert process.returncode == 0, err
    return lines


def test_serve_says_where_it_listens_and_how_to_make_a_token(cluster):
    cluster.write(count=1)
    assert _first_lines(cluster, 2) == [
        "conduit agent at http://127.0.0.1:PORT/ (TLS off): dashboard /, API /api/v1 (OpenAPI /openapi.json), metrics /metrics",
        "no tokens yet, and every request needs one: make one with `conduit tokens create NAME --role operator` "
        "(or --role viewer to read only)",
    ]
    assert cluster.run("tokens", "create", "ops", "--role", "operator").returncode == 0
    assert _first_lines(cluster, 2, "--watch") == [
        "conduit agent at http://127.0.0.1:PORT/ (TLS off): dashboard /, API /api/v1 (OpenAPI /openapi.json), metrics /metrics",
        f"watching {cluster.spec}: applied when it changes, drift healed",
    ]
