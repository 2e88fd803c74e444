"""The tracker process: per-country clients and traffic of the whole cluster, over time.

Source here: the nodes' own conduit_region_* metrics (2.x images), summed over every
node, one sample per interval into the state database with bounded retention.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from conduit.log import logger
from conduit.drivers import hostfacts, node
from conduit.facts import metrics
from conduit.render.tracker import tracker_options
from conduit.spec.spec import ClusterSpec
from conduit.state.db import Database, StateError
from conduit.state.samples import TrackerSamples
from conduit.tracker.capture import CaptureError, by_country, country, window

log = logger("conduit.tracker")


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


@dataclass(frozen=True)
class Settings:
    """What one tracker samples, and how: `conduit tracker run`'s options (the spec's tracker settings)."""

    ports: tuple[int, ...]
    interval: float
    retention_days: int
    source: str = "auto"
    interface: str = "eth0"
    capture_filter: str = "udp"
    sample_seconds: float = 10
    snaplen: int = 96
    keep_addresses_hours: int = 0
    geoip: bool = True


def port_list(text: str) -> list[int]:
    """Ports as `conduit tracker run --metrics-ports` takes them: 9090-9097 or 9090,9091."""
    ports: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        ports.extend(range(int(low), int(high or low) + 1))
    return ports


def resolve_interface(interface: str) -> str:
    """auto: the default route's interface (eth0 when there is none)."""
    return hostfacts.primary_interface(Path("/")) or "eth0" if interface == "auto" else interface


def settings(metrics_ports: str, interface: str, source: str, capture_filter: str, sample_seconds: float, interval_seconds: float,
             snaplen: int, retention_days: int, keep_addresses_hours: int, no_geoip: bool) -> Settings:  # fmt: skip
    """The Settings of `conduit tracker run`'s sampling options, by its parameter names."""
    return Settings(tuple(port_list(metrics_ports)), interval_seconds, retention_days, source, resolve_interface(interface),
                    capture_filter, sample_seconds, snaplen, keep_addresses_hours, not no_geoip)  # fmt: skip


def settings_for(spec: ClusterSpec) -> Settings:
    """The settings the spec's tracker command line (render.tracker.tracker_command) gives: from the same options."""
    return settings(**tracker_options(spec))


def run(state_dir: Path, settings: Settings) -> None:
    """Sample until SIGTERM or SIGINT; a stop request ends the wait (and a capture window) at once."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loop(state_dir, settings, stop)


def loop(state_dir: Path, settings: Settings, stop: threading.Event) -> None:
    """Sample every interval until `stop` is set.

    Per-country truth comes from the nodes' region metrics (2.x); when no node reports
    regions (1.x), or the spec asks for it, a sampled capture on the interface stands in.
    """
    s = settings
    samples = TrackerSamples(Database(state_dir))
    log.info("tracker.start", ports=list(s.ports), interval=s.interval, source=s.source, interface=s.interface)
    while not stop.is_set():
        rows, answered = sample(list(s.ports)) if s.source != "capture" else ({}, 0)
        try:
            if rows or s.source == "metrics":
                samples.add(time.time(), "metrics", rows, s.retention_days)
                log.info("tracker.sample", source="metrics", regions=len(rows), nodes=answered)
            else:
                capture_once(samples, s, stop)
        except StateError as exc:  # a full disk loses this sample, not the tracker
            log.warning("tracker.sample_lost", error=str(exc))
        stop.wait(s.interval)
    log.info("tracker.stop")


def capture_once(samples: TrackerSamples, s: Settings, stop: threading.Event | None = None) -> None:
    """One capture window into the state database; an interface that is gone is logged and retried later."""
    try:
        flows = window(s.interface, s.capture_filter, s.sample_seconds, s.snaplen, stop)
    except CaptureError as exc:
        log.warning("tracker.capture_failed", error=str(exc))
        return
    now = time.time()
    samples.add(now, "capture", by_country(flows, s.geoip), s.retention_days)
    if s.keep_addresses_hours > 0:
        samples.add_addresses(now, {a: (country(a), f.up, f.down) for a, f in flows.items()}, s.keep_addresses_hours)
    log.info("tracker.sample", source="capture", addresses=len(flows))
