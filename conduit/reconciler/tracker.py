"""The tracker process: per-country clients and traffic of the whole cluster, over time.

Source here: the nodes' own conduit_region_* metrics (2.x images), summed over every
node, one sample per interval into the state database with bounded retention.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import structlog

from conduit.reconciler import metrics
from conduit.reconciler.state import State

log = structlog.get_logger("conduit.tracker")


def sample(ports: list[int]) -> tuple[dict[str, tuple[int, int, int]], int]:
    """Per-region (clients, bytes up, bytes down) summed over the nodes, and how many answered."""
    totals: dict[str, list[int]] = {}
    answered = 0
    for port in ports:
        samples = metrics.scrape(port)
        if samples is None:
            continue  # a node that is down or still starting: the others still count
        answered += 1
        for region, figures in metrics.regions(samples).items():
            entry = totals.setdefault(region, [0, 0, 0])
            entry[0] += int(figures["connected"])
            entry[1] += int(figures["bytes_up"])
            entry[2] += int(figures["bytes_down"])
    return {region: tuple(v) for region, v in totals.items()}, answered


def run(state_dir: Path, ports: list[int], interval: float, retention_days: int) -> None:
    """Sample until SIGTERM or SIGINT; a stop request ends the wait at once."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    state = State(state_dir)
    log.info("tracker.start", ports=ports, interval=interval)
    while not stop.is_set():
        rows, answered = sample(ports)
        state.add_samples(time.time(), "metrics", rows, retention_days)
        log.info("tracker.sample", regions=len(rows), nodes=answered)
        stop.wait(interval)
    log.info("tracker.stop")
