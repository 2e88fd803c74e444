"""Health gates: after each phase, proof that what was changed works, within the spec's timeouts."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conduit.log import logger
from conduit.execute import nodehealth
from conduit.execute.executor import Executor, host_path
from conduit.drivers.polling import retries
from conduit.drivers.tracker import tracker_log, tracker_pidfile
from conduit.drivers.programs import not_installed
from conduit.facts.sysctl import value as sysctl_value

log = logger("conduit.gates")
LOOKS_AT_ONCE = 8


class GateFailed(Exception):
    """A phase did not turn healthy; the message says what and where, in one line."""


def wait_until(check: Callable[[], str | None], timeout: float) -> None:
    """Poll `check` (None = healthy, else the reason) until healthy; GateFailed with the reason at the timeout."""
    reason = check()
    if reason is not None:
        for _ in retries(timeout):
            if (reason := check()) is None:
                return
        raise GateFailed(reason)


# ------------------------------------------------------------------ sysctl


def sysctl_gate(ex: Executor, keys: dict[str, str]) -> None:
    refused = " ".join(ex.warnings)
    for key, value in keys.items():
        if f"sysctl {key} " in refused:
            continue  # refused and allowed to be by on_refused: warn
        path = host_path(ex.root, "/proc/sys/" + key.replace(".", "/"))
        try:
            seen = sysctl_value(path.read_text())
        except OSError as exc:
            raise GateFailed(f"sysctl {key} cannot be read back: {exc.strerror}") from None
        if seen != value:
            raise GateFailed(f"sysctl {key} reads back {seen!r}, not {value!r}")


# ------------------------------------------------------------------ nginx


def listening(port: int) -> str | None:
    """None when something accepts TCP on 127.0.0.1:port, else why not."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return None
    except OSError as exc:
        return f"nginx is not listening on 127.0.0.1:{port}/tcp ({exc.strerror or exc})"


def _through(port: int) -> str | None:
    """None when a TCP connection through the front reaches a backend."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.settimeout(1.5)
            try:
                data = conn.recv(64)
            except TimeoutError:
                return None  # held open: a backend took it and waits for the client
            except ConnectionResetError:
                data = b""
            return None if data else f"a connection to 127.0.0.1:{port} through nginx reached no backend"
    except OSError as exc:
        return f"nginx is not listening on 127.0.0.1:{port}/tcp ({exc.strerror or exc})"


def nginx_gate(ex: Executor, timeout: float, reload: tuple[int, set[int]] | None = None) -> None:
    """After the nginx phase: the config tests clean, the master runs (and took its `reload`:
    Executor.reload_nginx's answer), every TCP listener accepts."""
    ex.test_nginx()
    wait_until(lambda: None if ex.nginx_pid() else "nginx is not running", timeout)
    if reload is not None:
        wait_until(lambda: ex.reload_pending(*reload), timeout)
    for port in ex.target.front.tcp_ports:
        wait_until(lambda port=port: listening(port), timeout)


def front_gate(ex: Executor, timeout: float) -> None:
    """After the containers phase: a TCP connection through each listener reaches a backend."""
    if not ex.target.front.enabled:
        return
    for port in ex.target.front.tcp_ports:
        wait_until(lambda port=port: _through(port), timeout)


# ------------------------------------------------------------------ containers


def containers_gate(ex: Executor, names: list[str], timeout: float, settle: float) -> None:
    """Running, not restarting, the node proves its max clients (metrics, or its start line), restarts steady.

    Every node is looked at in each round, so a slow one holds no other back, and all share the
    timeout. The settle window follows, when the spec asks for one: a node that restarted during it,
    stopped, or no longer proves its max clients fails. A node held at conduit-monitor's throttle
    passes: it does what its data cap tells it.
    """
    client = ex.docker()
    wanted = {name: n for name, n in ex.target.nodes.items() if name in names}

    def look(name: str) -> tuple[str | None, nodehealth.Reading]:
        node = wanted[name]
        shape, reading = nodehealth.observe(client, name, node.metrics_port)
        return nodehealth.judge(name, node.max_clients, node.metrics_port, shape, reading).reason, reading

    def fail(name: str, reason: str) -> GateFailed:
        return GateFailed(nodehealth.explain(client, name, reason))

    started = time.monotonic()
    restarts = _until_healthy(look, list(wanted), timeout, fail)
    log.debug("gate.healthy", nodes=len(wanted), seconds=round(time.monotonic() - started, 2))
    if settle <= 0:
        return
    time.sleep(settle)
    for name in wanted:
        reason, reading = look(name)
        if reading.restarts != restarts[name] or not reading.running:  # under conduit-monitor a conduit that exits leaves the container running
            raise fail(name, f"container {name} restarted during the {settle:g} s settle window")
        if reason is not None:
            raise fail(name, f"{reason} (after the {settle:g} s settle window)")


def _until_healthy(look, names: list[str], timeout: float, fail) -> dict[str, int | None]:
    """Look at every node not yet healthy, round after round, until all are (their restart counts
    then) or the timeout, counted from the first round that finds one unhealthy as drivers.polling.retries counts it
    (GateFailed for the first node still unhealthy, with its last reason). A node that no wait can
    bring up (nodehealth.given_up) fails the gate at once. A round looks at LOOKS_AT_ONCE nodes at
    a time: each look mostly waits for Docker and the node."""
    restarts: dict[str, int | None] = {}
    first_restarts: dict[str, int | None] = {}
    reasons: dict[str, str] = {}

    def first_unhealthy() -> str | None:
        waiting = [n for n in names if n not in restarts]
        with ThreadPoolExecutor(min(LOOKS_AT_ONCE, len(waiting))) as pool:
            looks = list(zip(waiting, pool.map(look, waiting)))
        for name, (reason, reading) in looks:
            first_restarts.setdefault(name, reading.restarts)
            if reason is None:
                restarts[name] = reading.restarts
                continue
            reasons[name] = reason
            if nodehealth.given_up(reading, first_restarts[name]):
                raise fail(name, reason)
        return next((n for n in waiting if n not in restarts), None)

    name = first_unhealthy()
    if name is not None:
        for _ in retries(timeout):
            if (name := first_unhealthy()) is None:
                return restarts
        raise fail(name, reasons[name])
    return restarts


# ------------------------------------------------------------------ tracker


def tracker_gate(ex: Executor, settle: float) -> None:
    time.sleep(min(settle, 2.0))
    if ex.target.systemd:
        unit = ex.target.tracker_unit_name
        try:
            done = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise GateFailed(f"PID 1 is systemd but {not_installed('systemctl')}") from None
        if done.stdout.strip() != "active":
            raise GateFailed(f"the tracker unit {unit} is {done.stdout.strip() or 'not active'} (journalctl -u {unit})")
        return
    state_dir = ex.state_dir
    try:
        pid = int(tracker_pidfile(state_dir, ex.target.cluster).read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        log_name = tracker_log(state_dir, ex.target.cluster).name
        raise GateFailed(f"the tracker is not running (see {log_name} in the state directory)") from None
