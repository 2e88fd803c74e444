"""The containers gate's rounds: every node not yet healthy is looked at in each round, several at
a time, and a gate that times out names the first of them in the nodes' order."""

from __future__ import annotations

import threading
import time

import pytest

from conduit.execute.gates import LOOKS_AT_ONCE, GateFailed, _until_healthy
from conduit.execute.nodehealth import Reading

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
