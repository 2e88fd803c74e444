"""The tracker inside `conduit serve`: the agent, the watcher and the tracker as one process.

Apply still owns the tracker as a resource of the spec: it starts `conduit tracker run` and
names it in the cluster's pidfile. An agent that hosts the tracker takes that process over when
it runs exactly the spec's command: it records the command as its own
(drivers.tracker.hosted_record), stops the process, names itself in the pidfile and runs the
same sampling loop in a thread, so the next observation sees the tracker running as the spec
says, and tcpdump is the agent's only child. When apply replaces the tracker (new settings) or
removes it, the pidfile stops naming the agent and it lets go (and takes the new one over).
Where systemd is PID 1 the tracker stays its own unit.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from conduit.log import logger
from conduit.drivers.files import atomic_write, private_tree, remove
from conduit.drivers.tracker import hosted_record, pid_alive, read_cmdline, tracker_argv, tracker_pidfile
from conduit.execute.executor import stop_pidfile
from conduit.render.tracker import tracker_command
from conduit.spec.spec import ClusterSpec
from conduit.tracker.process import Settings, loop, settings_for

log = logger("conduit.tracker")

RESTART_FIRST, RESTART_MOST = 1.0, 60.0  # seconds before a loop that failed runs again, doubling


@dataclass
class _Running:
    cluster: str
    stop: threading.Event
    thread: threading.Thread


class HostedTracker:
    """The tracker of the spec each check is given, taken over and let go. Who hosts it checks every
    few seconds with the spec it serves (conduit.serve.run): a value, read there."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.running: _Running | None = None

    def check(self, spec: ClusterSpec | None) -> None:
        """Let go of a tracker apply replaced or removed; take over one apply started (`spec` None:
        no valid spec now, keep what runs)."""
        if self.running:
            ours, wanted = self._ours(self.running.cluster), spec is None or _enabled(spec, self.running.cluster)
            if not (ours and wanted):
                self._let_go(drop_pidfile=ours)
        if self.running is None and spec is not None and spec.spec.tracker.enabled:
            self._take_over(spec)

    def stop(self) -> None:
        """Lets go of the tracker (a capture window ends at once, tcpdump with it); the pidfile then names a
        process that is gone, which the next observation takes for a stopped tracker."""
        self._let_go()

    def _pid(self, cluster: str) -> int | None:
        try:
            return int(tracker_pidfile(self.state_dir, cluster).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _ours(self, cluster: str) -> bool:
        return self._pid(cluster) == os.getpid()

    def _take_over(self, spec: ClusterSpec) -> None:
        cluster, command = spec.metadata.name, tracker_command(spec)
        pid = self._pid(cluster)
        if pid != os.getpid():
            argv = read_cmdline(pid) if pid and pid_alive(pid) else None
            running = tracker_argv(argv) if argv else None
            if running is None or running[1:] != command[1:]:
                return  # apply has not started it yet, or runs other settings: apply decides
        private_tree(self.state_dir)
        atomic_write(hosted_record(self.state_dir, cluster), json.dumps({"pid": os.getpid(), "command": command}) + "\n")
        pidfile = tracker_pidfile(self.state_dir, cluster)
        if pid != os.getpid():
            stop_pidfile(pidfile)
            atomic_write(pidfile, f"{os.getpid()}\n")
        stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(settings_for(spec), stop), name="tracker", daemon=True)
        self.running = _Running(cluster, stop, thread)
        thread.start()
        log.info("tracker.hosted", cluster=cluster, took_over=pid)

    def _run(self, settings: Settings, stop: threading.Event) -> None:
        """The tracker's loop; one that fails (a bug, a broken state DB) runs again after a pause that doubles."""
        pause = RESTART_FIRST
        while not stop.is_set():
            try:
                loop(self.state_dir, settings, stop)
            except Exception as exc:  # noqa: BLE001 - a supervisor: what failed is logged, the loop runs again
                log.error("tracker.loop_failed", error=str(exc) or type(exc).__name__, restart_in=pause)
                stop.wait(pause)
                pause = min(pause * 2, RESTART_MOST)

    def _let_go(self, drop_pidfile: bool = False) -> None:
        """Stop the loop; `drop_pidfile` when the spec no longer wants the tracker (else the pidfile
        names another tracker now, or this process that is about to end)."""
        running, self.running = self.running, None
        if running is None:
            return
        running.stop.set()
        running.thread.join()
        if drop_pidfile:
            remove(tracker_pidfile(self.state_dir, running.cluster))
        remove(hosted_record(self.state_dir, running.cluster))
        log.info("tracker.let_go", cluster=running.cluster)


def _enabled(spec: ClusterSpec, cluster: str) -> bool:
    return spec.metadata.name == cluster and spec.spec.tracker.enabled
