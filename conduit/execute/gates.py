"""Health gates: after each phase, proof that what was changed works, within the spec's timeouts."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from conduit.execute import nodehealth
from conduit.execute.executor import Executor, host_path
from conduit.drivers.tracker import tracker_log, tracker_pidfile
from conduit.drivers.programs import not_installed
from conduit.facts.sysctl import value as sysctl_value


class GateFailed(Exception):
    """A phase did not turn healthy; the message says what and where, in one line."""


def wait_until(check: Callable[[], str | None], timeout: float, interval: float = 0.25) -> None:
    """Poll `check` (None = healthy, else the reason) until healthy or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        reason = check()
        if reason is None:
            return
        if time.monotonic() >= deadline:
            raise GateFailed(reason)
        time.sleep(interval)


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


def nginx_gate(ex: Executor, timeout: float) -> None:
    """After the nginx phase: the config tests clean, the master runs, every TCP listener accepts."""
    ex.test_nginx()
    wait_until(lambda: None if ex.nginx_pid() else "nginx is not running", timeout)
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

    A node held at conduit-monitor's throttle passes: it does what its data cap tells it.
    """
    client = ex.docker()
    wanted = {name: n for name, n in ex.target.nodes.items() if name in names}

    def healthy(name: str) -> str | None:
        node = wanted[name]
        shape, reading = nodehealth.observe(client, name, node.metrics_port)
        return nodehealth.judge(name, node.max_clients, node.metrics_port, shape, reading).reason

    def restarts(name: str) -> tuple[int | None, bool]:
        info = nodehealth.inspect(client, name) or {}
        return info.get("RestartCount"), bool((info.get("State") or {}).get("Running"))

    def fail(name: str, reason: str) -> GateFailed:
        return GateFailed(nodehealth.explain(client, name, reason))

    deadline = time.monotonic() + timeout
    for name in wanted:
        try:
            wait_until(lambda name=name: healthy(name), max(1.0, deadline - time.monotonic()))
        except GateFailed as exc:
            raise fail(name, str(exc)) from None
    before = {name: restarts(name)[0] for name in wanted}
    time.sleep(settle)
    for name in wanted:
        count, running = restarts(name)
        if count != before[name] or not running:
            raise fail(name, f"container {name} restarted during the {settle:g} s settle window")
    for name in wanted:  # under conduit-monitor a conduit that exits leaves the container running
        reason = healthy(name)
        if reason is not None:
            raise fail(name, f"{reason} (after the {settle:g} s settle window)")


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
