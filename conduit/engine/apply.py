"""Run a plan phase by phase, gate each phase, and roll back to the last good generation.

The use case around it (lock, plan, record the generation, back up keys) is
conduit.engine.reconcile. Every step is journalled as it starts and ends, so an apply
killed at any point is visible to the next plan and converged by the next apply.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from conduit.log import logger
from conduit.errors import EXIT_ERROR, EXIT_NOT_ROLLED_BACK, EXIT_OK, EXIT_ROLLED_BACK, DockerError
from conduit.drivers.docker import docker_answers
from conduit.drivers.polling import retries
from conduit.drivers.keys import backup_dir
from conduit.execute.executor import Executor, StepFailed
from conduit.execute.gates import GateFailed, containers_gate, front_gate, nginx_gate, sysctl_gate, tracker_gate
from conduit.spec.load import load_text
from conduit.drivers.observe import HostAccess
from conduit.engine.intent import Rollback
from conduit.engine.observe import plan_on_host
from conduit.engine.updates import generation_image
from conduit.plan.planner import Plan, Step
from conduit.plan.target import Target
from conduit.spec.resources import PHASES, Resource
from conduit.state.stores import Stores
from conduit.spec.profiles import HostFacts

RETRY_SECONDS = 0.5  # the longest pause between pings of a Docker daemon that stopped answering: a ping costs little

log = logger("conduit.apply")
Progress = Callable[[str], None]  # where an apply says what it does, line by line: click.echo, a log, an event hub


@dataclass
class Outcome:
    status: str  # no-op | succeeded | rolled_back | failed
    generation: int | None = None
    failure: str | None = None
    restored: str | None = None
    warnings: list[str] = field(default_factory=list)
    rollback_failed: str | None = None  # failed after changes, and why putting the host back did not finish
    compromised: list[str] = field(default_factory=list)  # alerts: nodes that planted links or special files in their volumes

    @property
    def exit_code(self) -> int:
        if self.status == "failed" and self.rollback_failed:
            return EXIT_NOT_ROLLED_BACK
        return {"no-op": EXIT_OK, "succeeded": EXIT_OK, "rolled_back": EXIT_ROLLED_BACK}.get(self.status, EXIT_ERROR)


def _runs(steps: list[Step], together: Callable[[Step], object]) -> list[list[Step]]:
    """The steps cut into runs: consecutive steps of one `together` key in one run, a step whose key is None alone."""
    out: list[list[Step]] = []
    for step in steps:
        key = together(step)
        if key is not None and out and together(out[-1][0]) == key:
            out[-1].append(step)
        else:
            out.append([step])
    return out


def _in_phase(step: Step) -> object:
    """Runs of the containers phase: the steps of one batch; new volumes."""
    return "volumes" if step.kind == "volume" and step.action == "create" else step.batch


def _in_batch(step: Step) -> object:
    """Runs of a replace batch: its nodes (max_unavailable of them); every other step alone."""
    return "nodes" if step.kind == "container" else None


def _side_by_side(run: list[Step]) -> bool:
    """New volumes, and the new nodes (batch 0): none needs another, none serves yet."""
    return _in_phase(run[0]) in ("volumes", 0)


class NodesNotRestored(Exception):
    """A batch failed and the nodes it had stopped could not all be put back."""

    def __init__(self, failure: Exception, names: list[str], why: str):
        self.names = names
        why = "for the same reason" if why == str(failure) else f"({why})"
        super().__init__(f"{failure}; {', '.join(names)} not restored {why}")


class Applier:
    """Runs one plan against the host: executors, gates, journal."""

    def __init__(self, target: Target, host: HostAccess, state: Stores, gen: int, report: Progress):
        self.target = target
        self.host = host
        self.state = state
        self.gen = gen
        self.report = report
        self.ex = Executor(target, host.root, host.state_dir, host.docker(), key_backups=backup_dir(host.state_dir, gen), images=state.images)

    def step(self, step: Step) -> None:
        self.state.history.step(self.gen, step.phase, step.kind, step.id, step.action, "started")
        t0 = time.monotonic()
        try:
            self.ex.run(step)
        except StepFailed as exc:
            self.state.history.step(self.gen, step.phase, step.kind, step.id, step.action, "failed", str(exc))
            # The journal and the report say it to people; the event is for machine logs (--log-format json).
            log.info("step.failed", kind=step.kind, id=step.id, action=step.action, error=str(exc))
            raise
        self.state.history.step(self.gen, step.phase, step.kind, step.id, step.action, "done")
        log.info("step.done", kind=step.kind, id=step.id, action=step.action, seconds=round(time.monotonic() - t0, 2))
        self.report(f"  {step.action:>7} {step.kind} {step.id}")
        if step.kind == "keys":
            self.report(f"keys backed up to {self.ex.key_backups}")

    def run(self, plan: Plan, phases: tuple[str, ...] = PHASES) -> None:
        with self.state.history.journal_open():
            for phase in phases:
                steps = [s for s in plan.changes if s.phase == phase]
                if not steps:
                    continue
                log.info("phase.start", phase=phase, steps=len(steps))
                PHASE_RUNNERS[phase](self, steps)
                log.info("phase.healthy", phase=phase)

    # ------------------------------------------------------------ phases

    def phase_sysctl(self, steps: list[Step]) -> None:
        for step in steps:
            self.step(step)
        # A refusal is remembered, so the next plan holds the key instead of trying it forever.
        for key, (value, answer) in self.ex.sysctl_answers.items():
            self.state.kernel.record(key, value, answer)
        keys = {s.id: s.desired["value"] for s in steps if s.kind == "sysctl" and s.action != "delete"}
        sysctl_gate(self.ex, keys)

    def phase_nginx(self, steps: list[Step]) -> None:
        for step in steps:
            self.step(step)
        if not self.target.front.enabled or all(s.action == "delete" for s in steps):
            if self.ex.nginx_changed and self.ex.nginx_pid():
                self.ex.reload_nginx()
            return
        reload = self.ex.reload_nginx() if self.ex.nginx_changed else None
        nginx_gate(self.ex, self.target.gate_timeout, reload)

    def phase_containers(self, steps: list[Step]) -> None:
        """The steps in the order conduit.plan.schedule wrote them: a batch of new nodes starts side
        by side; a batch of replacements is drained, replaced and gated together, or restored."""
        touched: list[str] = []
        replaced = [s for s in steps if s.kind == "container" and s.action in ("replace", "adopt")]
        adopted: list[str] = []  # old containers kept until every batch passed (see replace_batch)
        for batch in _runs(steps, _in_phase):
            if _side_by_side(batch):
                self.side_by_side(batch)
                touched += [s.id for s in batch if s.kind == "container"]
            elif batch[0].batch is not None:
                self.replace_batch(batch, adopted)
                if batch[-1].batch == replaced[-1].batch:
                    for name in adopted:
                        self.ex.drop_previous(name)
            else:
                self.step(batch[0])
                if batch[0].kind == "container" and batch[0].action == "update":
                    touched.append(batch[0].id)
        self.gate_containers(touched, bool(replaced))

    def side_by_side(self, steps: list[Step]) -> None:
        """Steps of which none waits for another (new volumes, new nodes, the nodes of one batch),
        run at once; each is journalled, and the first failure is raised once all have ended."""
        if len(steps) == 1:
            self.step(steps[0])
            return
        with ThreadPoolExecutor(min(self.ex.docker().side_by_side, len(steps))) as pool:
            for future in [pool.submit(self.step, s) for s in steps]:
                future.result()

    def gate_containers(self, touched: list[str], replaced: bool) -> None:
        """The created and updated nodes serve, and the front reaches them (replaced ones were gated batch by batch)."""
        if touched:
            containers_gate(self.ex, touched, self.target.gate_timeout, self.target.settle)
        if touched or replaced:
            front_gate(self.ex, self.target.gate_timeout)

    def replace_batch(self, batch: list[Step], adopted: list[str]) -> None:
        """One batch (its compartments, drain, replacements and restore steps), in the plan's order:
        on failure every node of it (and every adopted one) is restored, and the front given all
        its backends back."""
        nodes = [s for s in batch if s.kind == "container"]
        restores = [s for s in batch if s.kind == "backends" and s.action == "restore"]
        try:
            for run in _runs([s for s in batch if s not in restores], _in_batch):
                self.side_by_side(run)
            containers_gate(self.ex, [s.id for s in nodes], self.target.gate_timeout, self.target.settle)
        except (StepFailed, GateFailed, DockerError) as exc:
            drained = any(s.kind == "backends" and s.action == "drain" for s in batch)
            self.restore_batch([s.id for s in nodes] + adopted, drained, exc)
            raise
        self.keep_new(nodes, adopted)
        for step in restores:
            self.step(step)

    def keep_new(self, nodes: list[Step], adopted: list[str]) -> None:
        """The batch passed: replaced nodes' old containers go; adopted ones wait for every batch."""
        for step in nodes:
            if step.action == "adopt":
                adopted.append(step.id)
            else:
                self.ex.drop_previous(step.id)

    def restore_batch(self, names: list[str], drained: bool, failure: Exception) -> None:
        """Put back the nodes this batch stopped. A Docker daemon that stopped answering gets the gate
        timeout to answer again; if it does not, NodesNotRestored says which nodes are left."""
        deadline = time.monotonic() + self.target.gate_timeout
        for number, name in enumerate(names):
            try:
                restored = self.restore_waiting(name, deadline)
            except (DockerError, StepFailed) as exc:
                raise NodesNotRestored(failure, names[number:], str(exc)) from None
            if restored:
                self.report(f"  {name} failed its gate: restored as it was")
        if drained:
            self.ex.drain_backends(self.target.front.stream)

    def restore_waiting(self, name: str, deadline: float) -> bool:
        """Restore the node; while Docker does not answer, ask again once it does, until `deadline`. A
        Docker that answers and refuses (one that is starting up again) is asked at most every RETRY_SECONDS."""
        while True:
            tried = time.monotonic()
            try:
                return self.ex.restore_previous(name)
            except DockerError:
                if time.monotonic() >= deadline:
                    raise
                log.warning("restore.waiting_for_docker", node=name)
            if not docker_answers(self.ex.docker()):
                for _ in retries(deadline - time.monotonic(), longest=RETRY_SECONDS):
                    if docker_answers(self.ex.docker()):
                        break
            time.sleep(max(0.0, min(tried + RETRY_SECONDS, deadline) - time.monotonic()))

    def phase_tracker(self, steps: list[Step]) -> None:
        for step in steps:
            self.step(step)
        if any(s.action != "delete" for s in steps):
            tracker_gate(self.ex, self.target.settle)


PHASE_RUNNERS = {"sysctl": Applier.phase_sysctl, "nginx": Applier.phase_nginx, "containers": Applier.phase_containers, "tracker": Applier.phase_tracker}


# ------------------------------------------------------------------ roll back


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def roll_back(host: HostAccess, facts: HostFacts, state: Stores, failed_gen: int, before: list[Resource], report: Progress) -> tuple[str, str | None]:
    """Re-apply the last good generation; with none, put back what the host had before.

    Returns what it rolled back to, and why it did not finish (None when it did)."""
    good = state.history.last_good(state.history.generation(failed_gen).cluster)  # never another cluster's spec
    target = f"generation {good.id}" if good is not None else "the state before this apply"
    try:
        if good is not None:
            spec = load_text(good.spec_text, f"generation {good.id}", facts)
            intent = Rollback(good.id, generation_image(state.images, good.id))
        else:
            spec = load_text(state.history.generation(failed_gen).spec_text, f"generation {failed_gen}", facts)
            intent = Rollback(None, before=tuple(before))
        plan, _ = plan_on_host(intent, spec, host)
        report(f"rolling back to {target}")
        Applier(plan.target, host, state, failed_gen, report).run(plan, tuple(reversed(PHASES)))
    except (StepFailed, GateFailed, DockerError, NodesNotRestored) as exc:
        report(f"the rollback did not finish: {exc}")
        return target, str(exc)
    except Exception as exc:  # noqa: BLE001 - a rollback ends in a report, never in a traceback
        log.debug("rollback.error", exc_info=True)
        report(f"the rollback did not finish: {type(exc).__name__}: {exc}")
        return target, f"{type(exc).__name__}: {exc}"
    return target, None
