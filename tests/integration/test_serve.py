"""conduit serve against stand-in nodes: the API lists them, the event stream reports a node
stopped by hand within five seconds, and with --watch the agent is also the host's watcher."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from harness import free_port_block
from harness import wait_for
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
        # listening, so a test's first call is answered and SIGTERM finds the agent's own handler
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                 timeout=60, message="the agent listening")
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
    down = reported_down(events, f"{cluster.prefix}-2", deadline=stopped + 30)
    assert down is not None, "the event stream did not report the stopped node within 30 s"
    assert down["state"] in ("exited", "no metrics")
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


def call(base: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict, object]:
    """(status, JSON answer, headers) of one request, whatever its status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read()), answer.headers
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read()), refused.headers


def rows(cluster, event: str) -> list[dict]:
    from conduit.state.stores import open_state

    return [r for r in open_state(cluster.state).audit.recent() if r["event"] == event]


def test_an_operator_stops_a_node_held_through_applies_starts_it_and_reads_its_log_each_write_audited_once(cluster, agent):
    cluster.write(count=2)
    assert cluster.apply().returncode == 0
    base, viewer = agent()
    operator = cluster.run("tokens", "create", "op", "--role", "operator").stdout.strip()
    wait_for(lambda: get(base, viewer, "/api/v1/nodes"), timeout=30, message="the agent's first observation")
    name = f"{cluster.prefix}-2"
    writes = [("POST", f"/api/v1/nodes/{name}/stop", "api.stop"), ("POST", f"/api/v1/nodes/{name}/start", "api.start"),
              ("POST", "/api/v1/update", "api.update"), ("POST", f"/api/v1/nodes/{name}/claim", "api.claim")]  # fmt: skip
    for method, path, _ in [*writes, ("GET", f"/api/v1/nodes/{name}/logs", None)]:
        status, answer, _ = call(base, viewer, method, path)
        assert status == 403 and answer["detail"] == "token it is a viewer; this needs an operator", (path, answer)
    assert cluster.names()[name] == "running" and all(rows(cluster, event) == [] for _, _, event in writes)

    status, answer, _ = call(base, operator, "POST", f"/api/v1/nodes/{name}/stop", {"reason": "for \x1b[2Jmaintenance"})
    assert (status, answer) == (200, {"ok": True, "message": f"{name} stopped"}) and cluster.names()[name] == "exited"
    assert [(r["user"], r["detail"]["reason"]) for r in rows(cluster, "api.stop")] == [("op", "for maintenance")]
    assert cluster.apply().returncode == 0 and cluster.names()[name] == "exited"  # held stopped: the apply keeps it so
    assert cluster.run("status", str(cluster.spec)).stdout.count("stopped for maintenance") == 1

    status, answer, _ = call(base, operator, "POST", f"/api/v1/nodes/{name}/start")
    assert (status, answer["message"]) == (200, f"{name} started") and cluster.names()[name] == "running"
    assert len(rows(cluster, "api.start")) == 1

    status, answer, _ = call(base, operator, "POST", "/api/v1/update")  # the spec's updates are off: refused, and audited once
    assert status == 409 and answer["detail"].startswith("spec.updates.policy is off")
    (refused,) = rows(cluster, "api.update")
    assert refused["user"] == "op" and refused["detail"]["status"] == 409

    status, answer, headers = call(base, operator, "POST", f"/api/v1/nodes/{name}/claim")
    assert status == 200 and answer["url"].startswith("network.ryve.app://") and headers["Cache-Control"] == "no-store"
    assert len(rows(cluster, "api.claim")) == 1 and answer["url"] not in json.dumps([r["detail"] for r in rows(cluster, "api.claim")])

    status, answer, headers = call(base, operator, "GET", f"/api/v1/nodes/{name}/logs")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert any("Starting Psiphon Conduit" in line for line in answer["lines"]), answer
    status, answer, _ = call(base, operator, "GET", "/api/v1/nodes/nobody/logs")
    assert status == 404 and answer["detail"] == "nobody is not a node of this cluster"


def test_a_nodes_log_is_shown_capped_and_without_its_control_characters(cluster, agent, standin_image):
    """The node's log is what strangers made it say: here a standin that prints its bad STANDIN_REGIONS
    text (200 lines of terminal escapes, bidi overrides, carriage returns, backspaces) before it exits."""
    from conduit.facts.nodelog import SHOWN_BYTES, SHOWN_LINES

    cluster.write(count=1)
    assert cluster.apply().returncode == 0
    base, _ = agent()
    operator = cluster.run("tokens", "create", "op", "--role", "operator").stdout.strip()
    name = f"{cluster.prefix}-1"
    client = cluster.engine.client
    client.containers.get(name).remove(force=True)
    hostile = "\n".join(f"\x1b[31mline {i}\x1b]0;title\x07 \u202eevil\r\x08" for i in range(200))
    node = client.containers.run(standin_image, name=name, environment={"STANDIN_REGIONS": hostile}, detach=True)
    wait_for(lambda: client.containers.get(node.id).status == "exited", timeout=30, message="the hostile node printed and exited")

    status, answer, _ = call(base, operator, "GET", f"/api/v1/nodes/{name}/logs")
    assert status == 200, answer
    lines = answer["lines"]
    assert len(lines) == SHOWN_LINES and len("\n".join(lines).encode()) <= SHOWN_BYTES
    assert all(ch.isprintable() for line in lines for ch in line), lines
    assert lines[0] == "line 150 evil" and lines[-1] == 'line 199 evil" (want REGION=connected:up:down)', lines  # the newest kept
