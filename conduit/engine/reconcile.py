"""One reconcile: lock, plan, check, (the door looks and confirms), record, execute with gates, roll back.

`conduit apply`, `conduit rollback`, `conduit destroy`, `conduit watch`, the agent and the bot all
run this one use case; they differ only in the intent they ask for, what they print and whether
they ask before going on. A door that looks at the plan first holds a `Pending` (`reconciling`):
it prints the plan, asks, then calls `run`; nothing here calls back up into the door. Nothing here
prints: every line goes to the request's `report`, a line sink (click.echo, a log, an event hub).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from conduit.log import logger
from conduit.errors import DockerError
from conduit.drivers.observe import HostAccess
from conduit.engine.apply import Applier, NodesNotRestored, Outcome, Progress, roll_back, spec_hash
from conduit.execute.executor import StepFailed
from conduit.execute.gates import GateFailed
from conduit.engine.images import record_learned
from conduit.engine.intent import Apply, Destroy, Intent, Rollback
from conduit.engine.observe import plan_on_host
from conduit.engine.planning import Observed
from conduit.engine.updates import record_images
from conduit.plan.planner import Plan
from conduit.spec.profiles import HostFacts
from conduit.spec.resources import PHASES, Resource
from conduit.spec.spec import ClusterSpec
from conduit.state.git import git_revision
from conduit.state.lock import apply_lock
from conduit.state.db import Database, StateError, check_writable
from conduit.state.history import History, rollback_reason
from conduit.state.stores import Stores, open_state

log = logger("conduit.apply")


@dataclass
class Request:
    """What to reconcile and how. `intent` is what the plan made under the lock is for
    (conduit.engine.intent). A Destroy's plan is run backwards, with no rollback, finished as "destroyed"."""

    spec: ClusterSpec
    spec_text: str
    spec_path: str | None
    host: HostAccess
    facts: HostFacts
    command: str
    report: Progress
    intent: Intent = Apply()
    planner: Callable[[Intent, ClusterSpec, HostAccess], tuple[Plan, Observed]] = plan_on_host  # observe once, then plan
    wait: bool = True
    on_wait: Progress | None = None
    git: tuple[str | None, bool | None] | None = None
    spec_hash: str | None = None
    allow_new_identity: bool = False  # given on the host only (a flag), never by a spec


@dataclass
class Reconciled(Outcome):
    """An Outcome, with the plan it came from. Also: blocked (the plan has problems), declined."""

    plan: Plan | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Pending:
    """A plan made under the apply lock, not run yet. The door may look at `plan` (print it), then
    calls `decide`: the outcome when there is nothing to run (blocked, no-op), else None, and the
    door asks whatever it asks and calls `run` (or gives up: the outcome is then `declined`)."""

    req: Request
    plan: Plan
    seen: Observed

    def decide(self) -> Reconciled | None:
        # Holding the lock, this run is the one that converges from an interrupted apply.
        History(Database(self.req.host.state_dir)).mark_interrupted()
        problems = list(self.plan.problems) + ([] if self.req.allow_new_identity else identity_problems(self.plan))
        if problems:
            return Reconciled("blocked", plan=self.plan, problems=problems)
        if not self.plan.changes:
            _record_learned(self.req, self.seen)
            return Reconciled("no-op", plan=self.plan)
        return None

    def declined(self) -> Reconciled:
        return Reconciled("declined", plan=self.plan)

    def run(self) -> Reconciled:
        _record_learned(self.req, self.seen)
        outcome = _execute(self.req, self.plan, list(self.seen.host.resources))
        return Reconciled(outcome.status, outcome.generation, outcome.failure, outcome.restored, outcome.warnings,
                          outcome.rollback_failed, outcome.compromised, self.plan)  # fmt: skip


@contextmanager
def reconciling(req: Request) -> Iterator[Pending]:
    """The lock, and the plan made under it, for as long as the door holds them. Raises Locked
    (another apply of the cluster holds the lock and `wait` is false), DockerError, and StateError
    (the state directory cannot take a write: refused before any change)."""
    check_writable(req.host.state_dir)
    with apply_lock(req.host.state_dir, req.command, wait=req.wait, on_wait=req.on_wait,
                    cluster=req.spec.metadata.name, root=req.host.root):  # fmt: skip
        plan, seen = req.planner(req.intent, req.spec, req.host)
        yield Pending(req, plan, seen)


def reconcile(req: Request) -> Reconciled:
    """One reconcile for a door that asks nothing before going on (the agent, the bot). Raises as `reconciling`."""
    with reconciling(req) as pending:
        return pending.decide() or pending.run()


def _record_learned(req: Request, seen: Observed) -> None:
    """What the plan's observation learned (image facts, the registry's answers), kept by the apply:
    the plan itself wrote nothing. A state that cannot take it is no reason to stop."""
    if not seen.learned.facts and not seen.learned.checks:
        return
    try:
        record_learned(open_state(req.host.state_dir).images, seen.learned)
    except StateError as exc:
        req.report(f"warning: what the plan learned was not recorded: {exc}")


def identity_problems(plan: Plan) -> list[str]:
    """A node's key is its reputation: a plan that would give one a new key needs the host's consent."""
    moved = [s.id for s in plan.changes if s.new_identity]
    if not moved:
        return []
    return [f"NEW IDENTITY: {', '.join(moved)} would start on another volume with a new key (their old key stays in "
            "the old volume); if that is what you want, apply with --allow-new-identity on this host"]


def _execute(req: Request, plan: Plan, before: list[Resource]) -> Outcome:
    """Whatever goes wrong once the generation is recorded ends in a recorded outcome, never in `applying`."""
    state = open_state(req.host.state_dir)
    git = req.git or git_revision(req.spec_path)
    gen = state.history.begin(req.spec_text, req.spec_hash or spec_hash(req.spec_text), req.spec_path, git, req.spec.metadata.name)
    # The plan carries what its steps run against (settled when it was made): the spec is not read again.
    applier = Applier(plan.target, req.host, state, gen, req.report)
    outcome = _run(req, plan, before, state, gen, applier, req.spec)
    outcome.compromised = list(applier.ex.compromised)
    return outcome


def _run(req: Request, plan: Plan, before: list[Resource], state: Stores, gen: int, applier: Applier, spec: ClusterSpec) -> Outcome:
    try:
        applier.run(plan, tuple(reversed(PHASES)) if isinstance(req.intent, Destroy) else PHASES)
    except (StepFailed, GateFailed, DockerError, NodesNotRestored) as exc:
        return _failed(req, plan, state, gen, before, str(exc), applier.ex.warnings)
    except Exception as exc:  # noqa: BLE001 - changes were made: record, roll back and report, whatever it was
        log.debug("apply.error", exc_info=True)
        if isinstance(exc, StateError):
            state.db.free_space()  # a full disk: the rollback journals its steps too
        return _failed(req, plan, state, gen, before, f"{type(exc).__name__}: {exc}", applier.ex.warnings)
    if not isinstance(req.intent, Destroy):
        _record_images(applier, state, gen, spec)
    back = isinstance(req.intent, Rollback) and req.intent.generation is not None
    warnings = applier.ex.warnings + _finish(state, gen, "destroyed" if isinstance(req.intent, Destroy) else "succeeded",
                                             rollback_reason(req.intent.generation) if back else None)  # fmt: skip
    return Outcome("succeeded", gen, warnings=warnings)


def _finish(state: Stores, gen: int, outcome: str, reason: str | None = None) -> list[str]:
    """Record how generation `gen` ended, never leaving it `applying`: on a full disk, free what the
    state can spare and try once more. The warning when even that failed (the next apply then finds
    it unfinished and marks it interrupted)."""
    try:
        state.history.finish(gen, outcome, reason)
        return []
    except StateError:
        state.db.free_space()
    try:
        state.history.finish(gen, outcome, reason)
        return []
    except StateError as exc:
        return [f"generation {gen} ended {outcome}, but the state could not record it: {exc}"]


def _record_images(applier: Applier, state: Stores, gen: int, spec: ClusterSpec) -> None:
    """The images the nodes run, for status, history and rollbacks by digest; failing to read them is a warning."""
    try:
        record_images(applier.ex.docker(), state.images, gen, spec)
    except (DockerError, StateError, StepFailed) as exc:
        applier.ex.warnings.append(f"the nodes' images were not recorded: {exc}")


def _refuse_update(state: Stores, plan: Plan, gen: int, failure: str) -> None:
    """A new image that failed its apply is not taken again by itself (auto updates, watch)."""
    update = plan.update or {}
    if update.get("taken"):
        try:
            state.images.refuse(update["new_id"], update["image"], gen, failure)
        except StateError:
            pass


def _failed(req: Request, plan: Plan, state: Stores, gen: int, before: list[Resource], failure: str, warnings: list[str]) -> Outcome:
    if isinstance(req.intent, Destroy):
        warnings += _finish(state, gen, "failed", failure)
        # A removal is not rolled back: once a step was done the host is part way (exit 4), else untouched (1).
        part_way = _part_way(state, gen)
        return Outcome("failed", gen, failure, warnings=warnings,
                       rollback_failed="a destroy is not rolled back; run it again to finish" if part_way else None)
    if nothing_changed(state.history.journal(gen)):
        state.history.discard(gen, failure)
        return Outcome("failed", None, failure, warnings=warnings)
    req.report(f"failed: {failure}")
    _refuse_update(state, plan, gen, failure)
    try:
        restored, unfinished = roll_back(req.host, req.facts, state, gen, before, req.report)
    except StateError as exc:  # the last good generation cannot even be read
        restored, unfinished = "the last good generation", str(exc)
    if unfinished:
        warnings += _finish(state, gen, "failed", f"{failure}; the rollback to {restored} did not finish: {unfinished}")
        return Outcome("failed", gen, failure, restored, warnings, rollback_failed=unfinished)
    warnings += _finish(state, gen, "rolled_back", failure)
    return Outcome("rolled_back", gen, failure, restored, warnings)


def _part_way(state: Stores, gen: int) -> bool:
    """Whether a step of `gen` was done (a journal that cannot be read: assume it was)."""
    try:
        return any(row[4] == "done" for row in state.history.journal(gen))
    except StateError:
        return True


def nothing_changed(journal: list[tuple]) -> bool:
    """Only image pulls and key backups were tried (neither changes what the host runs): exit 1, no generation.

    Any other step that started may have changed the host before it failed (a replace stops the old node first)."""
    return bool(journal) and all(row[1] in ("image", "keys") for row in journal)
