"""Observe the traffic tracker: the systemd unit where systemd is PID 1, else a pidfile and /proc.

The command is read from the running process's /proc/<pid>/cmdline, which keeps argv
exactly (the capture filter has spaces, which systemctl's ExecStart listing loses).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conduit.drivers.programs import not_installed
from conduit.facts import proc, systemd
from conduit.facts.oneline import one_line
from conduit.spec.resources import Observation, Resource
from conduit.render.tracker import tracker_command, unit_name
from conduit.spec.spec import ClusterSpec

PROC = Path("/proc")
SYSTEMCTL = "systemctl"
SYSTEMCTL_TIMEOUT = 15


LEGACY_PIDFILE = "tracker.pid"  # one tracker per state directory, before clusters shared one


def tracker_pidfile(state_dir: str | Path, cluster: str) -> Path:
    """The cluster's own pid file: two clusters on one state directory each run their tracker."""
    return Path(state_dir) / f"tracker-{cluster}.pid"


def tracker_log(state_dir: str | Path, cluster: str) -> Path:
    return Path(state_dir) / f"tracker-{cluster}.log"


def hosted_record(state_dir: str | Path, cluster: str) -> Path:
    """Where a `conduit serve` that runs the cluster's tracker in itself says so: {"pid", "command"}."""
    return Path(state_dir) / f"tracker-{cluster}.hosted.json"


def hosted_command(state_dir: str | Path, cluster: str, pid: int) -> list[str] | None:
    """The tracker command that process `pid` (the one the pidfile names) runs in itself, or None."""
    try:
        record = json.loads(hosted_record(state_dir, cluster).read_text())
    except (OSError, ValueError):
        return None
    command = record.get("command") if isinstance(record, dict) and record.get("pid") == pid else None
    return command if isinstance(command, list) and all(isinstance(word, str) for word in command) else None


def legacy_pidfile(state_dir: str | Path, cluster: str) -> Path | None:
    """tracker.pid as an older version wrote it, when the tracker it names runs for `cluster`."""
    path = Path(state_dir) / LEGACY_PIDFILE
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    argv = read_cmdline(pid) if pid_alive(pid) else None
    command = tracker_argv(argv) if argv else None
    return path if command is not None and cluster_of(command) == cluster else None


def systemd_is_init() -> bool:
    try:
        return (PROC / "1" / "comm").read_text().strip() == "systemd"
    except OSError:
        return False


def read_cmdline(pid: int) -> list[str] | None:
    """argv of a process, or None when it is gone; a zombie's is empty."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return proc.cmdline(raw)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def tracker_argv(argv: list[str]) -> list[str] | None:
    """The `<conduit> tracker run ...` part of a cmdline, without an interpreter in front of it.

    A console script runs as `python3 /usr/local/bin/conduit tracker run ...`.
    """
    for i in range(len(argv) - 2):
        if argv[i + 1 : i + 3] == ["tracker", "run"]:
            return argv[i:]
    return None


def cluster_of(argv: list[str]) -> str | None:
    for i, word in enumerate(argv[:-1]):
        if word == "--cluster":
            return argv[i + 1]
    return None


def _resolve(program: str) -> str | None:
    found = program if os.sep in program else shutil.which(program)
    return os.path.realpath(found) if found else None


def _as_configured(argv: list[str], conduit_bin: str) -> list[str]:
    """Name the program as the spec names it when both name the same file, so no drift is seen."""
    if argv[0] != conduit_bin:
        mine = _resolve(conduit_bin)
        if mine is not None and _resolve(argv[0]) == mine:
            return [conduit_bin, *argv[1:]]
    return argv


def _stale() -> Resource:
    return Resource("tracker", "tracker", {"command": None, "running": False})


def _observe_pidfile(spec: ClusterSpec, state_dir: Path, conduit_bin: str) -> Observation:
    obs = Observation()
    pidfile = tracker_pidfile(state_dir, spec.metadata.name)
    if not pidfile.exists():
        pidfile = legacy_pidfile(state_dir, spec.metadata.name) or pidfile
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return obs
    except OSError as exc:
        obs.problems.append(f"{pidfile} cannot be read: {exc.strerror or exc}")
        return obs
    if not text.isdigit() or int(text) <= 0:
        obs.warnings.append(f"{pidfile} does not hold a process id; treating the tracker as stopped")
        obs.resources.append(_stale())
        return obs
    pid = int(text)
    argv = read_cmdline(pid) if pid_alive(pid) else None
    command = tracker_argv(argv) if argv else None
    if command is None and argv:  # a `conduit serve` that runs the tracker in itself
        command = hosted_command(state_dir, spec.metadata.name, pid)
    if command is None:  # gone, a zombie, or the pid now belongs to something else
        obs.resources.append(_stale())
        return obs
    owner = cluster_of(command)
    if owner not in (None, spec.metadata.name):
        owner = one_line(owner)  # any process's command line: shown in one line
        obs.foreign.append(f"tracker process {pid} (cluster {owner})")
        if spec.spec.tracker.enabled:
            obs.problems.append(f"{pidfile} belongs to the tracker of cluster {owner}; give this cluster its own state directory")
        return obs
    obs.resources.append(Resource("tracker", "tracker", {"command": _as_configured(command, conduit_bin), "running": True}))
    return obs


def _observe_systemd(spec: ClusterSpec, conduit_bin: str) -> Observation:
    obs = Observation()
    unit = unit_name(spec.metadata.name)
    argv = [SYSTEMCTL, "show", unit, "--property=LoadState,ActiveState,MainPID,ExecStart"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT, check=False)
    except FileNotFoundError:
        obs.problems.append(f"PID 1 is systemd but {not_installed(SYSTEMCTL)}")
        return obs
    except subprocess.TimeoutExpired:
        obs.problems.append(f"systemctl show {unit} did not answer within {SYSTEMCTL_TIMEOUT}s")
        return obs
    if done.returncode != 0:
        obs.problems.append(f"systemctl show {unit} failed: {' '.join(done.stderr.split()) or done.returncode}")
        return obs
    props = systemd.parse_systemctl_show(done.stdout)
    if not systemd.loaded(props):
        return obs
    running = systemd.running(props)
    command = None
    pid = systemd.main_pid(props)
    if running and pid > 0:
        cmdline = read_cmdline(pid)
        command = tracker_argv(cmdline) if cmdline else None
    if command is None:
        command = systemd.exec_start_argv(props.get("ExecStart", ""), tracker_command(spec, conduit_bin))
    if command is not None:
        command = _as_configured(command, conduit_bin)
    obs.resources.append(Resource("tracker", "tracker", {"command": command, "running": running}))
    return obs


def observe_tracker(spec: ClusterSpec, state_dir: Path, conduit_bin: str = "conduit") -> Observation:
    if systemd_is_init():
        return _observe_systemd(spec, conduit_bin)
    return _observe_pidfile(spec, Path(state_dir), conduit_bin)
