"""The containers gate's rounds: every node not yet healthy is looked at in each round, several at
a time, and a gate that times out names the first of them in the nodes' order."""

from __future__ import annotations

import threading
import time

import pytest

from conduit.execute.gates import LOOKS_AT_ONCE, GateFailed, _until_healthy
from conduit.execute.nodehealth import CRASH_LOOP, Reading, given_up

NAMES = [f"n-{i}" for i in range(1, 21)]


class Looks:
    """A node is healthy from its `ready`-th look on; each look takes a moment, as Docker's answer does."""

    def __init__(self, ready: dict[str, int]):
        self.ready, self.seen, self.busy, self.most = ready, {}, 0, 0
        self.lock = threading.Lock()

    def __call__(self, name: str):
        with self.lock:
            self.seen[name] = self.seen.get(name, 0) + 1
            self.busy += 1
            self.most = max(self.most, self.busy)
            looks = self.seen[name]
        time.sleep(0.01)
        with self.lock:
            self.busy -= 1
        healthy = looks >= self.ready.get(name, 1)
        return (None if healthy else f"{name} not yet"), Reading("running", running=True, restarts=looks)


def fail(name: str, reason: str) -> GateFailed:
    return GateFailed(reason)


def test_every_node_is_looked_at_until_healthy_and_several_at_a_time():
    looks = Looks({"n-3": 3, "n-17": 2})
    restarts = _until_healthy(looks, NAMES, timeout=30, fail=fail)
    assert set(restarts) == set(NAMES) and restarts["n-3"] == 3 and restarts["n-17"] == 2
    assert looks.seen == {n: {"n-3": 3, "n-17": 2}.get(n, 1) for n in NAMES}  # a healthy node is not looked at again
    assert 1 < looks.most <= LOOKS_AT_ONCE


def test_a_gate_that_times_out_names_the_first_node_still_unhealthy_in_order():
    looks = Looks({"n-12": 10**6, "n-4": 10**6})
    with pytest.raises(GateFailed, match="^n-4 not yet$"):
        _until_healthy(looks, NAMES, timeout=0.2, fail=fail)


def test_a_first_round_slower_than_the_timeout_still_gets_its_wait():
    """The timeout counts from the first round that finds a node unhealthy, as every wait's does:
    a Docker slow to answer that round does not fail a node that is healthy at its next look."""

    class SlowFirst(Looks):
        def __call__(self, name: str):
            if not self.seen:
                time.sleep(0.3)
            return super().__call__(name)

    looks = SlowFirst({"n-1": 2})
    assert set(_until_healthy(looks, ["n-1"], timeout=0.2, fail=fail)) == {"n-1"}
    assert looks.seen == {"n-1": 2}


def test_a_node_docker_keeps_restarting_fails_the_gate_without_waiting_out_the_timeout():
    """A Conduit that exits at start meets the same refusal at each restart: after CRASH_LOOP of them
    within the gate, the gate fails at once instead of at its timeout (90 s by default)."""
    counts = iter(range(2, 100))  # Docker had restarted it twice before the gate's first look
    seen = []

    def looks(name: str):
        seen.append(next(counts))
        return f"{name} is restarting", Reading("restarting", restarting=True, exit_code=3, restarts=seen[-1], restart_policy="always")

    with pytest.raises(GateFailed, match="^n-1 is restarting$"):
        _until_healthy(looks, ["n-1"], timeout=3600, fail=fail)
    assert seen == list(range(2, 3 + CRASH_LOOP))  # counted from the first look, not from the container's birth


def test_an_exited_node_that_nothing_restarts_fails_the_gate_at_its_first_look():
    seen = []

    def looks(name: str):
        seen.append(name)
        return f"{name} is exited (exit code 1)", Reading("exited", exit_code=1, restarts=0, restart_policy="no")

    with pytest.raises(GateFailed, match=r"^n-1 is exited \(exit code 1\)$"):
        _until_healthy(looks, ["n-1"], timeout=3600, fail=fail)
    assert seen == ["n-1"]


def test_a_node_that_restarts_a_few_times_then_comes_up_passes():
    readings = iter([Reading("restarting", restarting=True, restarts=n, restart_policy="always") for n in range(CRASH_LOOP - 1)]
                    + [Reading("running", running=True, restarts=CRASH_LOOP - 1, restart_policy="always")])  # fmt: skip

    def looks(name: str):
        reading = next(readings)
        return (None if reading.running else "not yet"), reading

    assert _until_healthy(looks, ["n-1"], timeout=3600, fail=fail) == {"n-1": CRASH_LOOP - 1}


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_a_restarting_node_is_given_up_only_after_crash_loop_restarts_when_a_policy_brings_it_back(policy):
    down = Reading("exited", exit_code=3, restarts=3, restart_policy=policy)
    assert not given_up(down, 3 - CRASH_LOOP + 1) and given_up(down, 3 - CRASH_LOOP)
    assert not given_up(Reading("running", running=True, restarts=50, restart_policy=policy), 0)


@pytest.mark.parametrize("reading", [Reading("exited", exit_code=1, restart_policy="no"), Reading("exited", exit_code=0, restart_policy="on-failure"),
                                     Reading("dead", restart_policy="always")], ids=["no-policy", "on-failure-exit-0", "dead"])  # fmt: skip
def test_a_down_node_docker_will_not_restart_is_given_up_at_once(reading):
    assert given_up(reading, 0)
