"""conduit watch: the host follows its spec file or git repository, and heals drift.

One reconcile at a time, in the main thread. File events only mark the spec dirty; a
quiet period (debounce) must pass before it is applied, so an editor's burst of writes
and renames is one apply. A spec whose digest failed is not applied again until it
changes; meanwhile the periodic heal keeps the last good generation in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from conduit.log import logger
from conduit.features.alerts import notify
from conduit.errors import DockerError, GitError, SpecError
from conduit.drivers.files import atomic_write, private_tree
from conduit.spec.load import load_text, read_spec_text, recorded_text
from conduit.features.nodealerts import node_problems
from conduit.features.watch_record import STATUS_FILE
from conduit.drivers.observe import HostAccess
from conduit.engine import intents
from conduit.engine.intents import Door
from conduit.engine.reconcile import Reconciled, reconciling
from conduit.engine.intent import Apply
from conduit.engine.settle import new_version_said
from conduit.engine.updates import STAYS, YANKED
from conduit.state.db import Database, StateError
from conduit.state.history import History
from conduit.spec.profiles import HostFacts
from conduit.spec.spec import ClusterSpec

log = logger("conduit.watch")

WRITES = frozenset({"created", "modified", "moved", "closed", "deleted"})


class Debounce:
    """Fires once a burst of events has been quiet for `quiet` seconds."""

    def __init__(self, quiet: float, clock: Callable[[], float] = time.monotonic):
        self.quiet = quiet
        self.clock = clock
        self.last: float | None = None

    def event(self) -> None:
        self.last = self.clock()

    def due(self) -> bool:
        return self.last is not None and self.clock() - self.last >= self.quiet

    def wait_left(self) -> float | None:
        return None if self.last is None else max(0.0, self.quiet - (self.clock() - self.last))

    def fired(self) -> None:
        self.last = None


@dataclass
class Result:
    status: str  # applied | unchanged | invalid | blocked | rolled_back | failed | drift (no-heal)
    message: str = ""
    generation: int | None = None


@dataclass
class Watcher:
    host: HostAccess
    facts: Callable[[], HostFacts]
    heal: bool = True
    report: Callable[[str], None] = lambda line: None
    allow_new_identity: bool = False  # the host's flag: a pushed spec can never grant it
    failed_digest: str | None = None
    status: dict = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    last_spec: ClusterSpec | None = None
    alerted: set = field(default_factory=set)
    warned: set = field(default_factory=set)  # version warnings already alerted: once per watch
    check_registry_now: bool = True  # a watch that starts asks the registry at once

    # ------------------------------------------------------------ one reconcile

    def reconcile(self, text: str, source: str, reason: str, git: tuple[str | None, bool | None] | None = None) -> Result:
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self.failed_digest and reason != "changed":
            return self._heal_last_good(reason)
        result = self._reconcile(text, source, reason, git)
        self.failed_digest = digest if result.status in ("invalid", "blocked", "rolled_back", "failed") else None
        self._record(result, reason, digest, git)
        return result

    def note(self, status: str, message: str, reason: str, git: tuple[str | None, bool | None] | None) -> Result:
        """Record what came of a revision that was not reconciled (unsigned, unreadable, or the same spec)."""
        result = Result(status, message)
        self._record(result, reason, self.status.get("spec_digest", ""), git)
        return result

    def _heal_last_good(self, reason: str) -> Result:
        """The file holds a spec that failed: keep the last good generation in place instead."""
        # The cluster the file names (a spec that loaded) or the last one it named (a file that does not load).
        cluster = self.last_spec.metadata.name if self.last_spec else None
        try:
            history = History(Database(self.host.state_dir))
            if cluster is None and len(history.clusters()) > 1:
                return Result("unchanged", "no valid spec names the cluster whose last good generation to keep in place")
            good = history.last_good(cluster)
        except StateError as exc:
            return Result("failed", str(exc))
        if good is None:
            return Result("unchanged", "no good generation to keep in place")
        result = self._reconcile(good.spec_text, f"generation {good.id}", reason, None)
        self._record(result, reason, good.spec_hash, None)
        return result

    def _reconcile(self, text: str, source: str, reason: str, git) -> Result:
        try:
            spec = load_text(text, source, self.facts())
            text = recorded_text(text, source)  # a spec that extends base files: the merged document
        except SpecError as exc:
            return Result("invalid", " / ".join(exc.lines()))
        self.last_spec = spec  # alerts go where the last valid spec says
        door = Door(self.host, self.facts(), f"conduit watch ({source})", self.report, allow_new_identity=self.allow_new_identity)
        path = source if not source.startswith("generation") else None
        request = intents.apply_spec(door, spec, text, path, self._updates(), git)
        try:
            with reconciling(request) as pending:
                self._review(spec, pending.plan, source, reason)
                outcome = pending.decide()
                if outcome is None:
                    # At an interval, drift is repaired only with --heal (a new image the policy takes always is).
                    go_on = self.heal or reason != "interval" or _update_taken(pending.plan)
                    outcome = pending.run() if go_on else pending.declined()
        except (DockerError, StateError) as exc:
            return Result("failed", str(exc))
        for text in outcome.compromised:
            notify(spec, f"watch: {text}")
        return _result(outcome)

    def _record(self, result: Result, reason: str, digest: str, git) -> None:
        now = time.time()
        failed = result.status in ("invalid", "blocked", "rolled_back", "failed")
        # The same failure found again (an editor that saves twice, a poll of the same commit) is
        # said once: the operator already has the line and the alert.
        repeated = failed and (result.status, result.message) == (self.status.get("last_result"), self.status.get("last_error"))
        self.status.update(
            pid=os.getpid(),
            last_reconcile=now,
            last_reason=reason,
            last_result=result.status,
            last_message=result.message,
            last_generation=result.generation,
            spec_digest=digest,
        )
        if git:
            self.status["last_commit"] = git[0]
            if result.status in ("applied", "unchanged"):
                self.status["applied_commit"] = git[0]
        if failed:
            self.status.update(last_error=result.message, last_error_at=now)
        if not repeated:
            self._alert(result, reason)
        try:
            atomic_write(private_tree(self.host.state_dir) / STATUS_FILE, json.dumps(self.status, indent=2, sort_keys=True) + "\n")
        except OSError as exc:  # a full or read-only state directory: the next reconcile says so
            log.warning("watch.status_not_written", error=exc.strerror or str(exc))
        # An event for --log-format json; people read the report line below, once.
        log.info("watch.reconcile", reason=reason, result=result.status, message=result.message, generation=result.generation)
        if not repeated:
            self.report(f"{time.strftime('%H:%M:%S')} {reason}: {result.status}{': ' + result.message if result.message else ''}")

    def _next(self, interval: float) -> float:
        """Seconds to the next reconcile: at once when a node asked for a newer version (the registry is asked then)."""
        return 0.0 if self.check_registry_now else interval

    def _updates(self) -> Apply:
        """Ask the registry when spec.updates says it is time, or at once after a node logged that
        the network wants a newer version."""
        intent = Apply(registry="now" if self.check_registry_now else "due")
        self.check_registry_now = False
        return intent

    def _review(self, spec: ClusterSpec, plan, source: str, reason: str) -> None:
        """Say that an apply starts (and of what) before its steps run, then send the health alerts."""
        if plan.changes and (self.heal or reason != "interval" or _update_taken(plan)):
            self.report(f"{time.strftime('%H:%M:%S')} {reason}: applying {source}: {_counts(plan)}")
        self._health_alerts(spec, plan)

    def _health_alerts(self, spec: ClusterSpec, plan) -> None:
        """Crash loops, a stopped nginx, nodes the network wants upgraded, conduits dead under
        their monitor: once each until they recover."""
        problems = health_problems(plan)
        try:
            problems |= node_problems(spec, self.host.docker())
        except DockerError as exc:
            log.warning("watch.node_signals", error=str(exc))
        if any(key.startswith("upgrade:") for key in problems) and not any(k.startswith("upgrade:") for k in self.alerted):
            self.check_registry_now = True  # the next reconcile asks the registry, whatever the interval
        problems |= update_problems(plan)
        for key, text in problems.items():
            if key not in self.alerted:
                notify(spec, f"watch: {text}")
        self.alerted = set(problems)
        for warning in version_warnings(plan) - self.warned:
            notify(spec, f"watch: {warning}")
            self.warned.add(warning)

    def _alert(self, result: Result, reason: str) -> None:
        if self.last_spec is None:
            return
        if result.status in ("invalid", "blocked", "rolled_back", "failed"):
            notify(self.last_spec, f"watch: the spec was not applied ({result.status}): {result.message}")
        elif result.status == "applied" and reason == "interval":
            notify(self.last_spec, f"watch: drift repaired ({result.message})")

    # ------------------------------------------------------------ loops

    def install_signals(self) -> None:
        """SIGTERM/SIGINT end the loop after the current reconcile; the lock goes with the process."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def watch_file(self, path: Path, interval: float, quiet: float = 0.5) -> None:
        # Read as named: resolved first, a link out of its repository would no longer look like one.
        named, path = path.absolute(), path.resolve()
        debounce = Debounce(quiet)
        wake = self.wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                # Only writes count: reading the spec (ours included) opens and closes it too.
                if event.event_type not in WRITES:
                    return
                # Editors save by writing a temporary file and renaming it over the spec.
                names = {getattr(event, "src_path", ""), getattr(event, "dest_path", "")}
                if str(path) in {os.fsdecode(n) for n in names if n}:
                    debounce.event()
                    wake.set()

        observer = Observer()
        observer.schedule(Handler(), str(path.parent), recursive=False)
        observer.start()
        try:
            next_heal = time.monotonic()  # reconcile once at start
            reason = "start"
            while not self.stopping.is_set():
                if debounce.due() or time.monotonic() >= next_heal:
                    if debounce.due():
                        debounce.fired()
                        reason = "changed"
                    try:
                        text = read_spec_text(named)
                    except SpecError as exc:
                        self._record(Result("invalid", " / ".join(exc.lines())), reason, "", None)
                    else:
                        self.reconcile(text, str(path), reason)
                    next_heal = time.monotonic() + self._next(interval)
                    reason = "interval"
                left = [next_heal - time.monotonic(), debounce.wait_left()]
                wake.wait(timeout=max(0.05, min(x for x in left if x is not None)))
                wake.clear()
        finally:
            observer.stop()
            observer.join()

def _result(outcome: Reconciled) -> Result:
    """What one reconcile did, in the watcher's words."""
    plan = outcome.plan
    if outcome.status == "blocked":
        return Result("blocked", "; ".join(outcome.problems))
    if outcome.status == "no-op":
        return Result("unchanged")
    if outcome.status == "declined":
        drift = ", ".join(f"{s.kind} {s.id}" for s in plan.changes)
        return Result("drift", f"not healed (--no-heal): {drift}")
    if outcome.status == "succeeded":
        return Result("applied", f"{len(plan.changes)} changes", outcome.generation)
    if outcome.status == "rolled_back":
        return Result(outcome.status, f"{outcome.failure}; rolled back to {outcome.restored}", outcome.generation)
    if outcome.rollback_failed:
        message = f"{outcome.failure}; the rollback to {outcome.restored} did not finish: {outcome.rollback_failed}"
        return Result(outcome.status, message, outcome.generation)
    return Result(outcome.status, outcome.failure or "", outcome.generation)


def _counts(plan) -> str:
    """'2 to add, 1 to change, 0 to destroy' as the plan's summary line says it."""
    summary = plan.summary()
    return f"{summary['add']} to add, {summary['change']} to change, {summary['destroy']} to destroy"


def _update_taken(plan) -> bool:
    return bool(plan.update and plan.update.get("taken"))


def update_problems(plan) -> dict[str, str]:
    """A new image behind the tag that this reconcile does not take: said once per image."""
    update = plan.update
    if not update or update.get("taken"):
        return {}
    version = new_version_said(update)
    new = (update.get("new_digest") or "")[:19] + (f" ({version})" if version else "")
    return {f"update:{update['new_id']}": f"a new image is behind {update['image']}: {new}; not taken: {update.get('why_not')}"}


def version_warnings(plan) -> set[str]:
    """The plan's warnings of a yanked tag or of a lower version the nodes were kept from."""
    return {w for w in plan.warnings if w.endswith(STAYS) or YANKED in w}


def health_problems(plan) -> dict[str, str]:
    """What a plan of the host says is unhealthy right now: {key: message}."""
    out = {}
    for step in plan.changes:
        for change in step.changes:
            if step.kind == "container" and change.field == "state" and change.old == "restarting":
                out[f"crash:{step.id}"] = f"container {step.id} is in a crash loop (restarting)"
            elif step.kind == "nginx" and change.field == "running" and change.old is False:
                out["nginx"] = "nginx is down"
    return out


def render_unit(argv: list[str], env: dict[str, str], command_name: str = "watch", purpose: str = "the host follows its spec") -> str:
    """A systemd unit that runs this same command (watch, serve), with the global options as environment."""
    import shlex

    command = shlex.join(argv).replace("%", "%%").replace("$", "$$")
    environment = "".join(f"Environment={key}={value}\n" for key, value in sorted(env.items()))
    description = "declarative Conduit host" if command_name == "watch" else purpose
    return f"""# conduit {command_name}: {purpose}.
[Unit]
Description=conduit {command_name} ({description})
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
Type=simple
{environment}ExecStart={command}
# SIGTERM lets the current reconcile finish its step; give it the gate timeout and more.
KillSignal=SIGTERM
TimeoutStopSec=300
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
"""
