"""Is a node serving, with the settings it was given? One answer for the gate and for status.

What a node is comes from the container itself, never from a guessed version:
- its entrypoint: `conduit-monitor` supervises conduit (data caps), so "running" says
  nothing about conduit, and 10 max clients may be the monitor's throttle (see monitor.py);
- its command: with `--metrics-addr` the node is judged by its metrics, whichever name the
  endpoint uses for max clients (metrics.max_clients); without it (1.1 images have none) by
  the start line of its current run in the container log (nodelog.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from conduit.log import logger
from conduit.drivers import node
from conduit.errors import DockerError, HostileEntry
from conduit.drivers.docker import answers
from conduit.drivers.dockerapi import not_found, refusals
from conduit.drivers.polling import retries
from conduit.facts import metrics, nodelog
from conduit.facts.monitor import MonitorSettings, TrafficState, monitor_settings

log = logger("conduit.nodes")


@dataclass(frozen=True)
class Shape:
    """What the container's own entrypoint and command say about the node."""

    monitor: MonitorSettings | None
    metrics: bool


@dataclass
class Reading:
    """One look at a node: Docker's view, its metrics, its log and the monitor's state."""

    status: str  # Docker's: running, exited, restarting, … or missing
    running: bool = False
    restarting: bool = False
    exit_code: int = 0
    restarts: int | None = None
    started_at: str = ""
    restart_policy: str = ""  # Docker's HostConfig.RestartPolicy.Name: "no" (or "") brings nothing back
    samples: dict | None = None  # None: the metrics endpoint did not answer (or there is none)
    log: list[str] = field(default_factory=list)
    traffic: TrafficState | None = None
    hostile: HostileEntry | None = None  # the node planted a link or a special file where the tool reads


def planted(exc: HostileEntry) -> HostileEntry:
    """Record what a node planted in its volume (one structlog event); returns it for the caller to report."""
    log.error("node.compromised", node=exc.node, volume=exc.volume, file=exc.name, planted=exc.what)
    return exc


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str | None = None
    throttled: bool = False  # serving at conduit-monitor's throttle, as told
    dead: bool = False  # the container runs but no conduit in it serves


def shape_of(config: dict) -> Shape:
    entrypoint = list(config.get("Entrypoint") or [])
    command = list(config.get("Cmd") or [])
    argv = entrypoint[1:] + command
    has_metrics = any(a == "--metrics-addr" or a.startswith("--metrics-addr=") for a in argv)
    return Shape(monitor_settings(entrypoint, command), has_metrics)


def volume_folder(info: dict) -> Path | None:
    """The host folder of the container's data volume (where the node and its monitor write)."""
    for mount in info.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Source"):
            return Path(mount["Source"])
    return None


def inspect(client, name: str) -> dict | None:
    """The container's attributes, None when it is gone; DockerError when Docker does not answer."""
    try:
        with answers(client):
            return client.api.inspect_container(name)
    except not_found():
        return None
    except refusals() as exc:
        raise DockerError(f"the Docker daemon cannot inspect container {name}: {exc.explanation or exc}") from None


def docker_reading(info: dict) -> Reading:
    """What Docker itself says about the container."""
    state = info.get("State") or {}
    return Reading(
        status=state.get("Status", "unknown"),
        running=bool(state.get("Running")),
        restarting=bool(state.get("Restarting")),
        exit_code=state.get("ExitCode") or 0,
        restarts=info.get("RestartCount"),
        started_at=state.get("StartedAt") or "",
        restart_policy=((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "",
    )


def observe(client, name: str, port: int, info: dict | None = None, with_log: bool = False,
            scrape_timeout: float = 2.0) -> tuple[Shape, Reading]:  # fmt: skip
    """Look at a node once: the metrics when it has them, its log when it has none (or when asked)."""
    info = info if info is not None else inspect(client, name)
    if info is None:
        return Shape(None, True), Reading("missing")
    shape, reading = shape_of(info.get("Config") or {}), docker_reading(info)
    if reading.running and shape.metrics:
        reading.samples = node.scrape(port, scrape_timeout)
    if reading.running and (with_log or _log_needed(shape, reading)):
        reading.log = run_log(client, name, info)
    if shape.monitor:
        try:
            reading.traffic = node.read_traffic_state(volume_folder(info), name)
        except HostileEntry as exc:  # judged without the monitor's state; the caller reports the node
            reading.hostile = planted(exc)
    return shape, reading


def run_log(client, name: str, info: dict) -> list[str]:
    """The current run's log lines: from Docker's own json-file when its inspect answer names
    one (no call), else from Docker."""
    started, finished = (info.get("State") or {}).get("StartedAt") or "", (info.get("State") or {}).get("FinishedAt") or ""
    driver = ((info.get("HostConfig") or {}).get("LogConfig") or {}).get("Type")
    lines = node.file_log(info["LogPath"], started, finished) if driver == "json-file" and info.get("LogPath") else None
    if lines is not None:
        return lines
    return node.run_log(client, name, started, bool((info.get("Config") or {}).get("Tty")), finished)


def _log_needed(shape: Shape, reading: Reading) -> bool:
    """Without metrics the start line is the proof; a monitored node without them, the why."""
    return not shape.metrics or (shape.monitor is not None and reading.samples is None)


# ------------------------------------------------------------------ the verdict


def throttled(settings: MonitorSettings | None, samples: dict, traffic: TrafficState | None) -> bool:
    """Serving at the monitor's throttle: its max clients, and the monitor's state (or bandwidth) agrees."""
    if settings is None or metrics.max_clients(samples) != settings.min_connections:
        return False
    if traffic is not None:
        return traffic.throttled
    return metrics.bandwidth_limit(samples) == settings.throttled_bandwidth


def _container(name: str, r: Reading) -> Verdict | None:
    if r.running and not r.restarting:
        return None
    code = f" (exit code {r.exit_code})" if r.exit_code else ""
    return Verdict(False, f"container {name} is {r.status}{code}")


def _dead(name: str, port: int, shape: Shape, r: Reading) -> Verdict:
    if shape.monitor is None:
        return Verdict(False, f"container {name} metrics on 127.0.0.1:{port} do not answer")
    error = nodelog.last_error(r.log)
    return Verdict(
        False,
        f"container {name} runs conduit-monitor but no conduit: its metrics on 127.0.0.1:{port} do not answer "
        "(the monitor restarts a conduit that exits every 5 s)" + (f"; last error: {error}" if error else ""),
        dead=True,
    )


def _by_metrics(name: str, want: int, port: int, shape: Shape, r: Reading) -> Verdict:
    if r.samples is None:
        return _dead(name, port, shape, r)
    seen = metrics.max_clients(r.samples)
    is_throttled = throttled(shape.monitor, r.samples, r.traffic)
    if seen == want or is_throttled:
        return Verdict(True, throttled=is_throttled)
    what = "no max clients" if seen is None else f"max clients {seen}, not {want}"
    return Verdict(False, f"container {name} metrics on 127.0.0.1:{port} report {what}")


def _by_log(name: str, want: int, r: Reading) -> Verdict:
    line = nodelog.start_line(r.log)
    if line is None:
        return Verdict(False, f"container {name} has no --metrics-addr and has not logged its start line (docker logs {name})")
    if line.max_clients != want:
        return Verdict(False, f"container {name} logged that it started with max clients {line.max_clients}, not {want}")
    return Verdict(True)


CRASH_LOOP = 5  # restarts within one gate after which a node that is down again is not waited for


def given_up(r: Reading, restarts_before: int | None) -> bool:
    """Whether no more waiting can bring the node up: it is down, and either no restart policy
    brings it back, or Docker has restarted it CRASH_LOOP times since `restarts_before` (its count
    at the gate's first look). A Conduit that exits at start refuses its flags or its volume
    (CONDUIT-FACTS), and each restart meets the same refusal; Docker's backoff has then waited 3 s."""
    if r.running and not r.restarting:
        return False
    if r.status == "dead" or (r.status == "exited" and (r.restart_policy in ("", "no") or (r.restart_policy == "on-failure" and r.exit_code == 0))):
        return True  # Docker brings back neither a dead container nor an exit its policy does not cover
    return r.restarts is not None and r.restarts - (restarts_before or 0) >= CRASH_LOOP


def judge(name: str, want: int, port: int, shape: Shape, r: Reading) -> Verdict:
    """Healthy when the container runs and the node proves it serves with `want` max clients."""
    problem = _container(name, r)
    if problem is not None:
        return problem
    if shape.metrics:
        return _by_metrics(name, want, port, shape, r)
    return _by_log(name, want, r)


# ------------------------------------------------------------------ why a gate failed


def cause(name: str, info: dict, last_exit: int | None = None) -> str | None:
    """What Docker itself says went wrong with the container, when it says anything: killed for
    memory, exited or restarting (with the exit code and the restarts), or running again after
    its restart policy brought it back (`last_exit`: the code it last exited with). Pure."""
    state = info.get("State") or {}
    restarts = info.get("RestartCount") or 0
    again = f", restarted {restarts} time{'s' if restarts != 1 else ''}" if restarts else ""
    if state.get("OOMKilled"):
        return (f"container {name} was killed for lack of memory (OOMKilled{again}); "
                "raise spec.containers.resources.memory or lower conduit.max_clients")  # fmt: skip
    if not state.get("Running") or state.get("Restarting"):
        return f"container {name} is {state.get('Status', 'not running')} (exit code {state.get('ExitCode') or 0}{again})"
    if restarts:
        code = f" (last exit code {last_exit})" if last_exit is not None else ""
        return f"container {name} keeps exiting: it was restarted {restarts} time{'s' if restarts != 1 else ''}{code}"
    return None


EXIT_GRACE = 2.0  # seconds a node that looks up is given to show it was exiting (see _settled)


def _looks_up(info: dict) -> bool:
    state = info.get("State") or {}
    return bool(state.get("Running")) and not state.get("Restarting") and not info.get("RestartCount")


def _settled(client, name: str) -> dict | None:
    """The container's inspect answer, looked at again for up to EXIT_GRACE while it still looks up:
    a conduit that closed its metrics on its way out is a moment from being an exited container, and
    its exit code is the cause to say, not the metrics that stopped answering. None: no container."""
    info = inspect(client, name)
    if info is not None and _looks_up(info):
        for _ in retries(EXIT_GRACE):
            info = inspect(client, name)
            if info is None or not _looks_up(info):
                break
    return info


def explain(client, name: str, reason: str) -> str:
    """A failed gate's one line, whatever moment the gate looked: the container looked at again, its
    most specific cause preferred to `reason`, and the last log lines of its current or last run."""
    try:
        info = _settled(client, name)
    except DockerError:
        return reason
    if info is None:
        return reason
    state = info.get("State") or {}
    last_exit = None
    if state.get("Running") and not state.get("Restarting") and info.get("RestartCount"):
        now = time.time()
        last_exit = node.last_exit_code(client, info.get("Id") or name, now - 3600, now)
    line = cause(name, info, last_exit) or reason
    tty = bool((info.get("Config") or {}).get("Tty"))
    serving = _looks_up(info)
    lines = nodelog.last_run(node.recent_log(client, name, tty), state.get("StartedAt") or "", state.get("FinishedAt") or "", serving)
    quoted = nodelog.quote(lines)
    # No pointer to `docker logs`: the rollback removes the failed container or puts the old one back under its name.
    return line + (f"; its last log lines: {quoted}" if quoted else "")
