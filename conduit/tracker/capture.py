"""The tracker's fallback for 1.x nodes, which report no countries: a sampled packet capture.

A short tcpdump window on the primary interface, with a small snaplen and the spec's BPF
filter (UDP on ephemeral ports: Conduit serves each client on a fresh random port, never
on 443), counts UDP payload bytes per remote address; the country of each address comes
from the GeoIP database that the Debian package geoip-database installs. tcpdump's lines
are read by conduit.facts.tcpdump, `ip -j addr`'s JSON by conduit.facts.iproute.
Between windows nothing runs, which keeps the cost far below a continuous capture.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from conduit.log import logger
from conduit.drivers.programs import not_installed
from conduit.facts import iproute, tcpdump

GEOIP_V4 = Path("/usr/share/GeoIP/GeoIP.dat")
GEOIP_V6 = Path("/usr/share/GeoIP/GeoIPv6.dat")
UNKNOWN = "ZZ"
RESTART_FIRST, RESTART_MOST = 1.0, 30.0  # seconds before a dead tcpdump is started again, doubling
POLL_SECONDS = 0.5  # how often a running tcpdump is checked for an early death

log = logger("conduit.tracker")


class CaptureError(Exception):
    """The window could not be captured (no tcpdump, interface gone); one line."""


@dataclass
class Flow:
    packets: int = 0
    up: int = 0  # from the client to the node
    down: int = 0  # from the node to the client


def local_addresses(interface: str) -> set[str]:
    """The interface's own addresses: the other end of a packet is the client."""
    try:
        done = subprocess.run(["ip", "-j", "addr", "show", "dev", interface], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise CaptureError(not_installed("ip")) from None
    if done.returncode != 0:
        raise CaptureError(f"interface {interface}: {' '.join(done.stderr.split()) or 'not found'}")
    return iproute.local_addresses(done.stdout)


def parse(lines, local: set[str], flows: dict[str, Flow] | None = None) -> dict[str, Flow]:
    """Count tcpdump's lines into flows by remote address (lines may be a live stream)."""
    flows = {} if flows is None else flows
    for line in lines:
        datagram = tcpdump.udp_datagram(line)
        if datagram is None:
            continue
        src, dst, length = datagram.src, datagram.dst, datagram.length
        remote = dst if src in local else src
        if remote in local:
            continue  # between two of our own addresses
        flow = flows.setdefault(remote, Flow())
        flow.packets += 1
        if remote == src:
            flow.up += length
        else:
            flow.down += length
    return flows


def window(interface: str, bpf: str, seconds: float, snaplen: int, stop: threading.Event | None = None) -> dict[str, Flow]:
    """Capture for `seconds` (or until `stop` is set), then stop; flows by remote address.

    tcpdump is a supervised child: one that dies before the window ends is started again
    after a pause that doubles each time, and counts into the same flows. Its output is
    counted as it arrives: a pipe left unread would fill, stall tcpdump and make the
    kernel drop the very packets being counted.
    """
    local = local_addresses(interface)
    argv = ["tcpdump", "-i", interface, "-n", "-tt", "-q", "-l", "-s", str(snaplen), bpf]
    stop = stop or threading.Event()
    end = time.monotonic() + seconds
    flows: dict[str, Flow] = {}
    pause, error = RESTART_FIRST, None
    while True:
        returncode, err = _run_until(argv, flows, local, end, stop)
        if returncode is None:
            return flows  # ended by us: the window is over, or the tracker stops
        error = f"tcpdump on {interface} failed: {' '.join(err.split())[-200:]}"
        log.warning("tracker.capture_died", exit=returncode, error=error, restart_in=pause)
        if stop.wait(min(pause, max(0.0, end - time.monotonic()))) or time.monotonic() >= end:
            break
        pause = min(pause * 2, RESTART_MOST)
    if not flows:
        raise CaptureError(error)
    return flows


def _run_until(argv: list[str], flows: dict[str, Flow], local: set[str], end: float, stop: threading.Event) -> tuple[int | None, str]:
    """Run one tcpdump until `end` or `stop`, counting into `flows`; its exit code (None: ended by
    us) and its error output."""
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise CaptureError(not_installed("tcpdump")) from None
    reader = threading.Thread(target=parse, args=(process.stdout, local, flows), daemon=True)
    reader.start()
    while process.poll() is None and time.monotonic() < end and not stop.is_set():
        stop.wait(min(POLL_SECONDS, max(0.0, end - time.monotonic())))
    ended_by_us = process.poll() is None
    if ended_by_us:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    reader.join(timeout=10)  # the rest of the output, up to end of file
    err = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    return (None if ended_by_us else process.returncode), err


@cache
def _database(path: Path):
    import pygeoip

    # Mapped, not read in: MEMORY_CACHE held a copy of both databases (about 28 MiB resident for the
    # 2 MiB and 8 MiB files); mapped, only the pages lookups touch are resident, shared with the page cache.
    return pygeoip.GeoIP(str(path), pygeoip.MMAP_CACHE)


def country(address: str) -> str:
    """ISO country code of a public address from the packaged database; ZZ when unknown."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return UNKNOWN
    if not ip.is_global:
        return UNKNOWN
    path = GEOIP_V6 if ip.version == 6 else GEOIP_V4
    if not path.exists():
        return UNKNOWN
    return _database(path).country_code_by_addr(address) or UNKNOWN


def by_country(flows: dict[str, Flow], geoip: bool = True) -> dict[str, tuple[int, int, int]]:
    """{country: (client addresses, UDP payload bytes up, bytes down)} of one window."""
    totals: dict[str, list[int]] = {}
    for address, flow in flows.items():
        entry = totals.setdefault(country(address) if geoip else UNKNOWN, [0, 0, 0])
        entry[0] += 1
        entry[1] += flow.up
        entry[2] += flow.down
    return {code: tuple(v) for code, v in totals.items()}
