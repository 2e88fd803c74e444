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

from conduit.drivers import node
from conduit.facts import metrics
from conduit.state.db import Database, StateError
from conduit.state.samples import TrackerSamples
from conduit.tracker.capture import CaptureError, by_country, country, window

log = structlog.get_logger("conduit.tracker")


def sample(ports: list[int]) -> tuple[dict[str, tuple[int, int, int]], int]:
    """Per-region (clients, bytes up, bytes down) summed over the nodes, and how many answered."""
    totals: dict[str, list[int]] = {}
    answered = 0
    for port in ports:
        samples = node.scrape(port)
        if samples is None:
            continue  # a node that is down or still starting: the others still count
        answered += 1
        for region, figures in metrics.regions(samples).items():
            entry = totals.setdefault(region, [0, 0, 0])
            entry[0] += int(figures["connected"])
            entry[1] += int(figures["bytes_up"])
            entry[2] += int(figures["bytes_down"])
    return {region: tuple(v) for region, v in totals.items()}, answered


def run(
    state_dir: Path,
    ports: list[int],
    interval: float,
    retention_days: int,
    source: str = "auto",
    interface: str = "auto",
    capture_filter: str = "udp",
    sample_seconds: float = 10,
    snaplen: int = 96,
    keep_addresses_hours: int = 0,
    geoip: bool = True,
) -> None:
    """Sample until SIGTERM or SIGINT; a stop request ends the wait at once.

    Per-country truth comes from the nodes' region metrics (2.x); when no node reports
    regions (1.x), or the spec asks for it, a sampled capture on the interface stands in.
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    samples = TrackerSamples(Database(state_dir))
    log.info("tracker.start", ports=ports, interval=interval, source=source, interface=interface)
    while not stop.is_set():
        rows, answered = sample(ports) if source != "capture" else ({}, 0)
        try:
            if rows or source == "metrics":
                samples.add(time.time(), "metrics", rows, retention_days)
                log.info("tracker.sample", source="metrics", regions=len(rows), nodes=answered)
            else:
                capture_once(samples, interface, capture_filter, sample_seconds, snaplen, retention_days, keep_addresses_hours, geoip)
        except StateError as exc:  # a full disk loses this sample, not the tracker
            log.warning("tracker.sample_lost", error=str(exc))
        stop.wait(interval)
    log.info("tracker.stop")


def capture_once(
    samples: TrackerSamples, interface: str, bpf: str, seconds: float, snaplen: int, retention_days: int, keep_hours: int, geoip: bool = True
) -> None:
    """One capture window into the state database; an interface that is gone is logged and retried later."""
    try:
        flows = window(interface, bpf, seconds, snaplen)
    except CaptureError as exc:
        log.warning("tracker.capture_failed", error=str(exc))
        return
    now = time.time()
    samples.add(now, "capture", by_country(flows, geoip), retention_days)
    if keep_hours > 0:
        samples.add_addresses(now, {a: (country(a), f.up, f.down) for a, f in flows.items()}, keep_hours)
    log.info("tracker.sample", source="capture", addresses=len(flows))
