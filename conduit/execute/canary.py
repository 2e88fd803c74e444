"""Is a new image good for Conduit? Its canaries must win back their clients.

A node's reputation brings it clients; a broken image keeps its container running and its
metrics answering while the clients go elsewhere. So a canary that had clients before the
update is judged by its client count against that baseline; one that had none (a new key
earns clients slowly) is judged by the health gates alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from conduit.drivers import node
from conduit.facts import metrics

POLL_SECONDS = 5.0


@dataclass
class Clock:
    """Wall time for the analysis window; tests give a clock of their own."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


CLOCK = Clock()


def clients(port: int) -> int | None:
    """Connected clients the node reports on its metrics (None: no answer)."""
    samples = node.scrape(port)
    if samples is None:
        return None
    value = metrics.value(samples, "conduit_connected_clients")
    return None if value is None else int(value)


def baselines(ports: dict[str, int]) -> dict[str, int]:
    """{node: clients now}; a node that does not answer counts as none."""
    return {name: clients(port) or 0 for name, port in ports.items()}


def needed(baseline: int, ratio: float) -> int:
    return max(1, math.ceil(baseline * ratio))


def shortfall(ports: dict[str, int], before: dict[str, int], ratio: float) -> dict[str, tuple[int, int]]:
    """{node: (clients now, clients needed)} of the canaries that have not won theirs back yet."""
    out = {}
    for name, port in ports.items():
        if before.get(name, 0) <= 0:
            continue
        now = clients(port) or 0
        if now < needed(before[name], ratio):
            out[name] = (now, needed(before[name], ratio))
    return out


class AnalysisFailed(Exception):
    pass


def analyse(ports: dict[str, int], before: dict[str, int], seconds: float, ratio: float, clock: Clock | None = None) -> None:
    """Wait until every canary that had clients has `ratio` of them back; AnalysisFailed at the window's end."""
    clock = clock or CLOCK
    deadline = clock.now() + seconds
    while True:
        short = shortfall(ports, before, ratio)
        if not short:
            return
        if clock.now() >= deadline:
            said = "; ".join(f"{name} has {now} clients, needs {need} of the {before[name]} it had" for name, (now, need) in short.items())
            raise AnalysisFailed(f"the canary did not win back its clients within {seconds:g} s: {said}")
        clock.sleep(min(POLL_SECONDS, max(0.0, deadline - clock.now())))
