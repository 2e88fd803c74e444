"""A node's log is what strangers made it say, and any size: it is read from Docker within a cap, and
its last lines still come through. Against the private engine, a stand-in that prints 16 MiB first."""

from __future__ import annotations

import tracemalloc

import pytest

from conduit.drivers import node
from conduit.drivers.docker import CountingClient
from conduit.drivers.dockerapi import container_log
from conduit.execute import nodehealth
from conduit.facts import nodelog
from harness import wait_for

pytestmark = pytest.mark.integration

FLOOD = 16 << 20
# The run's last line: its start line after the flood (it never announces, so it says no more).
LAST = b"[OK] Starting Psiphon Conduit (Max Common Clients: 50, Max Personal Clients: 0, Bandwidth: 40 Mbps)\n"


@pytest.fixture
def flooded(docker_engine, standin_image, docker_cleanup) -> str:
    """A node that logged FLOOD bytes of 8 KiB lines, then its start line."""
    name = docker_cleanup.name("flood")
    docker_engine.client.containers.run(standin_image, name=name, detach=True,
                                        environment={"STANDIN_LOG_FLOOD": str(FLOOD), "STANDIN_LIVE_AFTER": "never"})  # fmt: skip
    wait_for(lambda: docker_engine.client.api.logs(name, tail=1).endswith(LAST), timeout=60, message="the node logged its start line")
    return name


def _read(api, name: str, limit: int, keep: str) -> tuple[bytes, int]:
    """The log as read, and the most memory Python held while reading it."""
    tracemalloc.start()
    try:
        raw = container_log(api, name, tty=False, limit=limit, keep=keep)
        return raw, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("sdk", [False, True], ids=["plain-http", "docker-sdk"])
def test_a_log_far_larger_than_the_cap_is_read_within_it_either_client(docker_engine, flooded, sdk):
    client = CountingClient(docker_engine.host)
    api = client.sdk() if sdk else client.api
    limit = 1 << 20
    last, peak = _read(api, flooded, limit, "last")
    assert len(last) <= limit and last.endswith(LAST)
    assert last.startswith(b"x") and last.split(b"\n", 1)[0] == b"x" * 8191  # from a whole line on
    assert peak < 2.5 * limit  # the 16 MiB answer was never held
    first, peak = _read(api, flooded, limit, "first")
    assert len(first) == limit and first.startswith(b"x" * 8191 + b"\n") and peak < 2.5 * limit
    assert client.calls == 2


def test_the_run_and_a_failures_explanation_keep_the_nodes_last_lines(docker_engine, flooded, monkeypatch):
    client = CountingClient(docker_engine.host)
    state = docker_engine.client.api.inspect_container(flooded)["State"]
    monkeypatch.setattr(node, "LOG_LIMIT", 2 << 20)  # the run's read, at an eighth of what the node logged
    tracemalloc.start()
    try:
        lines = node.run_log(client, flooded, state["StartedAt"], tty=False, finished_at=state["FinishedAt"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(len(line) + 1 for line in lines) <= 2 << 20 and len(lines) > 200
    assert peak < 5 * (2 << 20) < FLOOD  # the cap bounds it (the bytes, their text, its lines), not the 16 MiB logged
    assert lines[-1].endswith(LAST.decode().strip()) and nodelog.start_line(lines) is not None
    # the last 500 lines are 4 MiB: node.RECENT_LIMIT of them are read, and the last three quoted
    said = nodehealth.explain(client, flooded, f"{flooded} never announced")
    assert said.startswith(f"{flooded} never announced; its last log lines: [redacted] | [redacted] | ")
    assert said.endswith(LAST.decode().strip()), said
