"""Harness for integration tests: a private Docker daemon, a private nginx, a private image
registry and small helpers."""

from __future__ import annotations

import re
import os
import shutil
import random
import socket
import time
from pathlib import Path
import urllib.error
import urllib.request
from typing import Callable, TypeVar

from conduit.drivers.programs import PACKAGES as _PRODUCT_PACKAGES

from .dockerd import DockerEngine, EngineUnavailable, StandinBuildError, foreign_engines, no_engine_starting
from .nginx import NginxError, NginxServer, NginxUnavailable
from .registry import PushError, Registry, RegistryUnavailable, push_variant

__all__ = [
    "DockerEngine", "EngineUnavailable", "StandinBuildError", "foreign_engines", "no_engine_starting",
    "NginxServer", "NginxUnavailable", "NginxError",
    "Registry", "RegistryUnavailable", "PushError", "push_variant",
    "free_port", "free_port_block", "wait_for", "scrape", "parse_metrics", "metric", "unavailable", "need", "not_found",
]

T = TypeVar("T")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 now (TCP by default, or SOCK_DGRAM), this process's own: see free_port_block."""
    return _take(1, kind)


def free_port_block(count: int) -> int:
    """The first of `count` consecutive TCP ports free on 127.0.0.1 now, of this process's own.

    A port is handed to a node, nginx or a registry that binds it seconds later, so it must not be
    one that anything else may take meanwhile:
    - not one the kernel hands to outgoing connections (net.ipv4.ip_local_port_range): the suite
      makes thousands of them, and a node whose port is taken exits, as the real one does;
    - not one another pytest-xdist worker hands out: each worker has a slice of its own;
    - not one this process handed out lately: it goes on through its slice, from a random start
      (another run of the tests on this machine starts elsewhere), and skips what is bound.
    """
    return _take(count, socket.SOCK_STREAM)


_cursor: int | None = None


def _own_ports() -> range:
    low, high = 20000, 40000
    ephemeral = _ephemeral_ports()
    if low < ephemeral.start < high:
        high = ephemeral.start
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % workers if worker[2:].isdigit() else 0
    size = (high - low) // workers
    return range(low + index * size, low + (index + 1) * size)


def _take(count: int, kind: int) -> int:
    global _cursor
    ports = _own_ports()
    if _cursor is None or _cursor not in ports:
        _cursor = random.randrange(ports.start, ports.stop)
    for _ in range(len(ports) // count + 1):
        base = _cursor if _cursor + count <= ports.stop else ports.start
        _cursor = base + count
        if _free(base, count, kind):
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {ports.start}-{ports.stop - 1}")


def _free(base: int, count: int, kind: int) -> bool:
    sockets = []
    try:
        for port in range(base, base + count):
            s = socket.socket(socket.AF_INET, kind)
            sockets.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in sockets:
            s.close()


def _ephemeral_ports() -> range:
    try:
        first, last = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(first), int(last) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)  # the kernel's default


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1,
             message: str = "condition") -> T:
    """Call predicate until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {message}{detail}")
        time.sleep(interval)


def scrape(port: int, host: str = "127.0.0.1", path: str = "/metrics", timeout: float = 2.0) -> str:
    """GET http://host:port/metrics and return the body (raises on errors)."""
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as resp:
        return resp.read().decode()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(name, frozenset(label items)): value}."""
    out: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(text_or_parsed, name: str, **labels: str) -> float | None:
    """The value of one sample, or None when absent."""
    parsed = parse_metrics(text_or_parsed) if isinstance(text_or_parsed, str) else text_or_parsed
    return parsed.get((name, frozenset(labels.items())))


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, when a component a test needs cannot run here."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# The programs the tests run beyond the product's own (conduit.drivers.programs).
PACKAGES = {**_PRODUCT_PACKAGES, "sysctl": "procps", "unshare": "util-linux", "setpriv": "util-linux", "gcc": "gcc",
            "docker-registry": "docker-registry"}


def not_found(tool: str, package: str | None = None) -> str:
    """`ip not found (apt-get install iproute2)`: what a skip says, so the reader knows what to install."""
    return f"{tool} not found (apt-get install {package or PACKAGES.get(tool, tool)})"


def need(tool: str) -> str:
    """The path of a command a test needs (see unavailable)."""
    path = shutil.which(tool)
    if path is None:
        unavailable(not_found(tool))
    return path
