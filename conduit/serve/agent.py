"""What the agent knows and does, apart from HTTP: the spec it serves, its observation, the live
plan, the tokens, the audit log, and the writes (each exactly one reconcile, or one node's
restart, stop or start)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path


from conduit.drivers.docker import answers
from conduit.drivers.dockerapi import container_log, not_found, refusals
from conduit.drivers.keys import claim_url, read_key
from conduit.drivers.observe import HostAccess
from conduit.engine.intent import Apply
from conduit.engine.observe import plan_on_host
from conduit.engine import planning
from conduit.engine import intents
from conduit.engine.intents import Door
from conduit.engine.reconcile import Reconciled, Request, reconcile
from conduit.features.alerts import compromised
from conduit.features.status import collect
from conduit.features.watch_record import read_watch_status
from conduit.plan.planner import Plan
from conduit.plan.saved import parse_saved, plan_data
from conduit.serve.auth import Limiter, digest
from conduit.serve.live import Hub, Observer
from conduit.errors import GitError, HostileEntry, KeyProblem, SpecError
from conduit.facts.keyfile import BadKey
from conduit.facts.nodelog import SHOWN_LINES, SHOWN_READ, printable, shown
from conduit.spec.load import MAX_BYTES, load_file, load_text, read_spec_text
from conduit.spec.profiles import HostFacts
from conduit.spec.resolve import node_settings, nodes
from conduit.spec.spec import ClusterSpec
from conduit.state.git import git_revision, show_committed
from conduit.state.history import Generation
from conduit.state.holds import Holds
from conduit.state.stores import Stores, open_state
from conduit.state.timeline import RANGES

MAX_REASON = 200  # a stop's reason, as status shows it
TOKEN_CACHE_SECONDS = 2.0  # a revoked token stops working within this
# The live plan asks the registry only as often as spec.updates says, not at every refresh.
DRIFT = Apply(registry="due")


class Refused(Exception):
    """A write the agent will not do; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SpecFile:
    """The spec the agent serves, read again when the file changes; a broken edit keeps the last good one."""

    def __init__(self, path: Path, facts: Callable[[], HostFacts]):
        self.path, self.facts = path, facts
        self.spec: ClusterSpec | None = None
        self.error: str | None = None
        self._stamp: tuple | None = None
        self._reading = threading.Lock()  # the observer, the tracker, the companion and requests ask at once

    def current(self) -> ClusterSpec:
        with self._reading:
            return self._current()

    def _current(self) -> ClusterSpec:
        try:
            info = self.path.stat()
            stamp = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)  # a link repointed at a twin is another file
        except OSError as exc:
            stamp, self.error = None, f"{self.path}: cannot read: {exc.strerror}"
        if stamp is not None and stamp != self._stamp:
            try:
                self.spec, self.error = load_file(str(self.path), self.facts()), None
            except SpecError as exc:
                self.error = " / ".join(exc.lines())
            self._stamp = stamp
        if self.spec is None:
            raise Refused(422, self.error or f"{self.path}: no valid spec")
        return self.spec

    def latest(self) -> ClusterSpec | None:
        """current(), or None while no valid spec was ever read (a fresh host before its first apply)."""
        try:
            return self.current()
        except Refused:
            return None


class Collector:
    """status's collect for the observer; the drift check (it plans the whole host) every `drift_every`th time."""

    def __init__(self, spec: SpecFile, host: HostAccess, drift_every: int = 10):
        self.spec, self.host, self.drift_every = spec, host, drift_every
        self.count = 0
        self.drift: dict = {}

    def __call__(self) -> dict:
        with_drift = self.count % self.drift_every == 0
        self.count += 1
        data = collect(self.spec.current(), self.host, drift=with_drift)
        if with_drift:
            self.drift = {"drift": data["drift"], "pending": data["pending"]}
        return {**self.drift, **data, "spec_error": self.spec.error}


def outcome_json(o: Reconciled) -> dict:
    return {
        "status": o.status, "generation": o.generation, "failure": o.failure, "restored": o.restored,
        "warnings": list(o.warnings), "rollback_failed": o.rollback_failed, "problems": list(o.problems),
        "changes": len(o.plan.changes) if o.plan else 0,
    }  # fmt: skip


def plain_lines(markup: list[str]) -> list[str]:
    """The plan's rich markup as plain text. rich is loaded here, when someone asks for a plan, not
    for an agent that only observes and serves (about 4 MiB resident)."""
    from rich.text import Text

    return [Text.from_markup(line).plain for line in markup]


def plain(plan: Plan, offline: bool = False) -> str:
    from conduit.views.report import render_plan  # rich markup: see plain_lines

    return plain_lines([render_plan(plan, offline=offline)])[0]


def update_text(update: dict | None) -> str:
    """A plan's image update as its text says it ("" when there is none): the dashboard shows these
    lines as they are, so that it says the update in the words of `conduit plan`."""
    from conduit.views.report import update_lines  # rich markup: see plain_lines

    return "\n".join(plain_lines(update_lines(update))).strip("\n")


@dataclass
class Agent:
    spec: SpecFile
    host: HostAccess
    observer: Observer
    hub: Hub
    git_follow: bool = False
    by_address: Limiter = field(default_factory=lambda: Limiter(20, 40))
    by_token: Limiter = field(default_factory=lambda: Limiter(20, 40))
    # Rows for refusals, per client address: ten at once, then one a minute; a flood is not a log.
    refusal_rows: Limiter = field(default_factory=lambda: Limiter(1 / 60, 10))
    reconcile: Callable[[Request], Reconciled] = reconcile
    restarter: Callable[[str], None] | None = None
    key_reader: Callable[[str, str], bytes | None] | None = None  # (volume, node) -> the node's key file
    # The plan a check for updates makes: the registry asked now, nothing taken (`conduit update --check`).
    check_planner: Callable[[Apply, ClusterSpec, HostAccess], tuple[Plan, object]] = plan_on_host
    plan_seconds: float = 5.0
    fleet: object = None  # conduit.serve.fleet.FleetFiles, with `serve --fleet`
    repository: str | None = None  # `serve --git URL`: the repository followed (its public URL), whose spec `spec` holds a copy of
    _state: Stores | None = None
    _tokens: dict = field(default_factory=dict)
    _plan: tuple[float, Plan] | None = None
    _plan_lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ state, tokens, audit

    def state(self) -> Stores:
        if self._state is None:
            self._state = open_state(self.host.state_dir)
        return self._state

    def who(self, token: str) -> tuple[str, str] | None:
        """(name, role) of a token, looked up by its digest (cached for a moment)."""
        key = digest(token)
        hit = self._tokens.get(key)
        if hit and time.monotonic() - hit[0] < TOKEN_CACHE_SECONDS:
            return hit[1]
        found = self.state().tokens.by_digest(key)
        if len(self._tokens) > 1000:
            self._tokens.clear()
        self._tokens[key] = (time.monotonic(), found)
        return found

    def audit(self, event: str, user: str, detail: dict) -> None:
        self.state().audit.record(event, detail, user=user)

    def audit_refusal(self, client: str, user: str | None, detail: dict) -> None:
        """A refused request's row, while the address's rows are within their rate; the first one
        beyond it says that the rest of the run is not written."""
        allowed, first = self.refusal_rows.take(client)
        if allowed:
            self.audit("api.refused", user or "anonymous", detail)
        elif first:
            self.audit("api.refused", user or "anonymous", detail | {"reason": f"{detail['reason']}; more refusals from {client} are not written for now"})

    # ------------------------------------------------------------ reads

    def data(self) -> dict:
        data = self.observer.latest()
        if data is None:
            raise Refused(503, self.observer.error or "the first observation of the host is not done yet")
        return data

    def live_plan(self) -> Plan:
        """The plan for the current spec against the host, at most `plan_seconds` old."""
        with self._plan_lock:
            if self._plan is None or time.monotonic() - self._plan[0] > self.plan_seconds:
                self._plan = (time.monotonic(), plan_on_host(DRIFT, self.spec.current(), self.host)[0])
            return self._plan[1]

    def plan_view(self) -> dict:
        plan = self.live_plan()
        return {
            "text": plain(plan),
            "plan": plan_data(plan),
            "drift": [f"{s.kind} {s.id}" for s in plan.changes if s.reason == "drift"],
            "pending": len(plan.changes),
            "changes": [f"{s.action} {s.kind} {s.id}" + (f" ({s.reason})" if s.reason else "") for s in plan.changes],
            "update": plan.update,
            "update_text": update_text(plan.update),
        }

    def timeline(self, span: str) -> dict:
        """The range's points from the state DB, and the bytes moved today, this month and in all."""
        if span not in RANGES:
            raise Refused(422, f"range must be one of {', '.join(RANGES)}")
        now = time.time()
        store = self.state().timeline
        local = time.localtime(now)
        day = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
        month = time.mktime((local.tm_year, local.tm_mon, 1, 0, 0, 0, 0, 0, -1))
        lifetime = self.state().lifetime.totals().values()
        totals = {
            "today": store.bytes_since(day), "month": store.bytes_since(month),
            "lifetime": (sum(u for u, _ in lifetime), sum(d for _, d in lifetime)),
        }  # fmt: skip
        return store.series(span, now) | {"totals": {k: {"bytes_up": u, "bytes_down": d} for k, (u, d) in totals.items()}}

    def cluster(self) -> str | None:
        """The cluster this agent serves (None before its spec ever loaded)."""
        try:
            return self.spec.current().metadata.name
        except Refused:
            return None

    def generations(self) -> list[Generation]:
        """This cluster's generations, oldest first: another cluster may share the state directory."""
        return self.state().history.generations(self.cluster())

    def generation_plan(self, gen_id: int) -> str | None:
        """The plan text of generation `gen_id`: from the last good spec before it, or from an empty host."""
        history = self.state().history
        this = history.generation(gen_id)
        gens = history.generations(this.cluster) if this else []
        if this is None:
            raise Refused(404, f"no generation {gen_id}")
        before = [g for g in gens if g.id < gen_id and g.outcome == "succeeded"]
        facts = self.spec.facts()
        try:
            new = load_text(this.spec_text, f"generation {this.id}", facts)
            if not before:
                return plain(planning.plan(Apply(), new, planning.nothing_observed()), offline=True)
            return plain(planning.plan(Apply(), new, planning.as_applied(load_text(before[-1].spec_text, f"generation {before[-1].id}", facts), new)))
        except SpecError as exc:
            return "the spec no longer loads on this host: " + " / ".join(exc.lines())

    def watch_status(self) -> dict | None:
        return read_watch_status(self.host.state_dir)

    # ------------------------------------------------------------ writes

    def _committed(self) -> str | None:
        """The spec as committed, when the host follows git; None otherwise."""
        if not self.git_follow:
            return None
        try:
            return show_committed("HEAD", str(self.spec.path), MAX_BYTES)
        except GitError as exc:
            raise Refused(409, f"the host follows git and the committed spec cannot be read: {exc}") from None

    def _same_as_git(self, text: str, what: str) -> str | None:
        """The committed spec (None: the host does not follow git), refused unless it is `text`."""
        committed = self._committed()
        if committed is not None and text != committed:
            raise Refused(409, f"{what} is not the committed spec and the host follows git; commit and push it instead")
        return committed

    def _served_text(self) -> str:
        """The spec the agent serves, as text: the committed one when the host follows git."""
        committed = self._committed()
        if committed is not None:
            return committed
        try:
            return read_spec_text(self.spec.path)
        except SpecError as exc:
            raise Refused(409, " / ".join(exc.lines())) from None

    def _run(self, build: Callable[[Door], Request], user: str, warning: str | None = None) -> Reconciled:
        """Exactly one reconcile, built by conduit.engine's intents as the CLI builds it; its steps go out as events as they run.
        `warning`: said with the outcome when the host then runs the request's spec."""
        report = lambda line: self.hub.publish("apply", {"line": line, "by": user})  # noqa: E731
        try:
            request = build(Door(self.host, self.spec.facts(), f"conduit serve ({user})", report, wait=False))
        except SpecError as exc:
            raise Refused(422, " / ".join(exc.lines())) from None
        self.hub.publish("apply.start", {"by": user})
        outcome = self.reconcile(request)
        if warning and outcome.status in ("succeeded", "no-op"):
            outcome = replace(outcome, warnings=[*outcome.warnings, warning])
        self.hub.publish("apply.done", {"by": user, **outcome_json(outcome)})
        with self._plan_lock:
            self._plan = None
        return outcome

    def apply_spec(self, user: str) -> Reconciled:
        """The spec file as it is now; when the host follows git, the committed one (a sync, never a divergence)."""
        text, path = self._served_text(), str(self.spec.path)
        return self._run(lambda door: intents.apply_spec(door, load_text(text, path, door.facts), text, path), user)

    def take_update(self, user: str) -> Reconciled:
        """`conduit update` for the spec the agent serves: a new image behind the tag, canary first."""
        self._updates_on()
        text, path = self._served_text(), str(self.spec.path)
        return self._run(lambda door: intents.take_update(door, load_text(text, path, door.facts), text, path), user)

    def apply_saved(self, text: str, user: str) -> Reconciled:
        """A saved plan of the spec this agent serves, and of no other: an operator does not choose the spec."""
        saved = parse_saved(text, "the posted plan")
        if saved.spec_text != self._served_text():
            raise Refused(403, f"the saved plan was made from another spec than {self.spec.path}, the one this agent serves"
                               + (" (as committed)" if self.git_follow else "") + "; plan it again from that spec")  # fmt: skip
        return self._run(lambda door: intents.apply_saved(door, saved), user)

    def rollback(self, gen_id: int | None, user: str) -> Reconciled:
        """Generation `gen_id`'s spec again; None: the last good generation before the current one, as `conduit rollback` chooses."""
        history, cluster = self.state().history, self.cluster()
        if gen_id is None and cluster is None:  # another cluster's generations may share the state directory
            raise Refused(409, f"the agent has no spec loaded to tell its cluster by: fix {self.spec.path} (`conduit validate` names "
                               "what is wrong), then roll back")  # fmt: skip
        try:
            target = intents.rollback_target(history, gen_id, cluster)
        except intents.NoRollback as exc:
            raise Refused(404 if exc.missing else 409, str(exc)) from None
        if cluster is None and target.cluster is not None:
            raise Refused(409, f"generation {target.id} is of cluster {target.cluster}; the agent has no spec loaded to tell its own by: "
                               f"fix {self.spec.path} (`conduit validate` names what is wrong), then roll back")  # fmt: skip
        committed = self._same_as_git(target.spec_text, f"generation {target.id}'s spec")
        return self._run(lambda door: intents.roll_back(door, self.state().images, target), user, self._undone_by(target.id, committed))

    def _undone_by(self, gen: int, committed: str | None) -> str | None:
        """What will undo a rollback to generation `gen`, as a warning; None when nothing will: the host
        follows a work tree whose file is `committed`, the spec the rollback put back."""
        if self.repository:
            return intents.undo_by_repository(self.repository, gen)
        if committed is not None:
            try:
                if read_spec_text(self.spec.path) == committed:
                    return None
            except SpecError:
                pass
        return intents.undo_warning(str(self.spec.path), gen)

    def _known(self, name: str) -> None:
        if name not in {n.name for n in nodes(self.spec.current())}:
            raise Refused(404, f"{name} is not a node of this cluster")

    def _docker(self):
        client = self.host.docker()
        if client is None:
            raise Refused(503, "no Docker daemon on this host")
        return client

    def _on_node(self, name: str, action, **options):
        """One Docker call on node `name`'s container; a node never created is refused, not a Docker daemon failure."""
        client = self._docker()
        try:
            with answers(client):
                return action(client)(name, **options)
        except not_found():
            raise Refused(409, f"{name} has no container on this host (never applied, or removed); apply the spec") from None
        except refusals() as exc:
            raise Refused(409, f"{name}: the Docker daemon refused: {exc.explanation or exc}") from None

    def restart(self, name: str, user: str) -> None:
        self._known(name)
        self.hub.publish("restart", {"name": name, "by": user})
        Holds(self.host.state_dir).release(name)  # a restart starts a node held stopped: the hold ends with it
        if self.restarter is not None:
            self.restarter(name)
        else:
            self._on_node(name, lambda c: c.api.restart, timeout=10)

    def stop(self, name: str, user: str, why: str | None = None, until: datetime | None = None) -> str:
        """Node `name` stopped and held so (conduit.state.holds): every apply and the watcher keep it
        stopped until it is started (or `until`). Returns the hold's reason as status shows it."""
        self._known(name)
        why = printable(why or "")[:MAX_REASON] or f"by {user}"
        Holds(self.host.state_dir).hold(name, why, until)
        self.hub.publish("stop", {"name": name, "by": user})
        self._on_node(name, lambda c: c.api.stop, timeout=10)
        return why

    def start(self, name: str, user: str) -> None:
        """Node `name`'s hold released, then its container started."""
        self._known(name)
        Holds(self.host.state_dir).release(name)
        self.hub.publish("start", {"name": name, "by": user})
        self._on_node(name, lambda c: c.api.start)

    def logs(self, name: str) -> list[str]:
        """Node `name`'s last log lines, bounded and printable (conduit.facts.nodelog.shown)."""
        self._known(name)
        raw = self._on_node(name, lambda c: partial(container_log, c.api), tty=None, tail=SHOWN_LINES, limit=SHOWN_READ)
        return shown(raw.decode(errors="replace"))

    def _updates_on(self) -> ClusterSpec:
        spec = self.spec.current()
        if spec.spec.updates.policy == "off":
            raise Refused(409, "spec.updates.policy is off, so the registry is never asked; set it to report or auto")
        return spec

    def check_updates(self, user: str) -> dict:
        """Ask the registry now what the tag means, as `conduit update --check`; nothing is taken."""
        spec = self._updates_on()
        self.hub.publish("apply", {"line": f"checking {spec.spec.containers.image} in its registry", "by": user})
        plan, _ = self.check_planner(Apply(take=False), spec, self.host)
        lines = [line.strip() for line in update_text(plan.update).splitlines()]
        said = " / ".join(lines) if lines else f"{spec.spec.containers.image}: the nodes run what it means now"
        self.hub.publish("apply", {"line": said, "by": user})
        with self._plan_lock:
            self._plan = None
        return {"update": plan.update, "text": said}

    def claim(self, name: str) -> dict:
        """Node `name`'s Ryve claim link and its QR code: it carries the node's private key."""
        spec = self.spec.current()
        node = next((n for n in nodes(spec) if n.name == name), None)
        if node is None:
            raise Refused(404, f"{name} is not a node of this cluster")
        volume = node_settings(spec, node.index).volume
        try:
            key = (self.key_reader or self._read_key)(volume, name)
        except HostileEntry as exc:  # the node planted a link or a special file: the operator is told, as by the CLI
            compromised(spec, exc)
            raise Refused(409, str(exc)) from None
        except KeyProblem as exc:
            raise Refused(409, str(exc)) from None
        if key is None:
            raise Refused(409, f"volume {volume} holds no key yet; start the node first")
        try:
            url = claim_url(key, name)
        except BadKey as exc:
            raise Refused(409, f"{volume}/conduit_key.json: the key cannot be read ({exc})") from None
        import qrcode  # only when an operator asks for a claim: the agent runs for months without it

        code = qrcode.QRCode(border=0)
        code.add_data(url)
        code.make(fit=True)
        # The modules as rows of 0 and 1: the page draws them itself and takes no markup from the agent.
        return {"name": name, "url": url, "modules": ["".join("1" if m else "0" for m in row) for row in code.get_matrix()]}

    def _read_key(self, volume: str, name: str) -> bytes | None:
        return read_key(self._docker(), volume, name)

    def git_revision(self) -> tuple[str | None, bool | None]:
        return git_revision(str(self.spec.path))
