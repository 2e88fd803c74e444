"""Desired vs observed resources, into an ordered plan. Pure: no host access here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from conduit.plan.kinds import Action, Kind, OnError
from conduit.plan.target import Target
from conduit.spec.resources import KIND_ORDER, KIND_PHASE, PHASES, Resource, digest, natural_key

PLAN_FORMAT = 2  # 2: steps of closed kinds, and the target the executor runs them against


@dataclass(frozen=True)
class Change:
    field: str
    old: object
    new: object
    forces_replacement: bool = False


@dataclass(frozen=True)
class Step:
    """One operation of a plan. Frozen: the schedule returns new steps (dataclasses.replace), and
    the executor runs exactly what the plan holds. Kind, action and on_error are closed sets
    (conduit.plan.kinds); a spelling outside them is a ValueError when the step is made."""

    phase: str
    kind: Kind
    id: str
    action: Action  # create | update | replace | adopt | delete | no-op; pull (image); drain | restore (backends); measure | judge (canary)
    reason: str
    changes: tuple[Change, ...] = ()
    desired: dict | None = None  # what the executor makes; None for delete
    batch: int | None = None  # container steps gated together (0: the new nodes, started side by side)
    on_error: OnError = OnError.FAIL  # a refused step stops the apply, or only warns
    new_identity: bool = False  # an existing node would start on another volume: a new key, its reputation lost

    def __post_init__(self) -> None:
        for name, closed in (("kind", Kind), ("action", Action), ("on_error", OnError)):
            object.__setattr__(self, name, closed(getattr(self, name)))
        object.__setattr__(self, "changes", tuple(self.changes))

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.id)

    def to_json(self) -> dict:
        """Plain JSON data: the closed sets as their spellings, the changes a list."""
        data = asdict(self)
        data.update(kind=self.kind.value, action=self.action.value, on_error=self.on_error.value, changes=list(data["changes"]))
        return data


@dataclass
class Plan:
    cluster: str
    steps: list[Step]
    fingerprint: str  # of the observed state the plan was made against
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    api_calls: int = 0
    update: dict | None = None  # a new image behind the tag: digests, versions, taken or why not
    notes: list[str] = field(default_factory=list)  # what the spec serves and the host carries (conduit.spec.advisor)
    target: Target | None = None  # what the executor needs of the spec (conduit.plan.target); None: not executable
    held: dict[str, list[str]] = field(default_factory=dict)  # sysctl keys whose write is held back, and the warnings saying why

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != "no-op"]

    def summary(self) -> dict[str, int]:
        def count(*actions: str) -> int:
            # A compartment is made in a node's volume, not added beside it: not counted as a resource.
            return sum(1 for s in self.steps if s.action in actions and s.kind != Kind.COMPARTMENT)

        return {
            "add": count("create", "replace"),
            "change": count("update"),
            "destroy": count("delete", "replace"),
            "adopt": count("adopt"),
            "pull": count("pull"),
            "batches": len({s.batch for s in self.steps if s.action in ("replace", "adopt") and s.batch}),
            "new_identity": sum(1 for s in self.steps if s.new_identity),
        }

    def to_json(self) -> dict:
        return {
            "format_version": PLAN_FORMAT,
            "cluster": self.cluster,
            "fingerprint": self.fingerprint,
            "summary": self.summary(),
            "steps": [s.to_json() for s in self.steps],
            "problems": self.problems,
            "warnings": self.warnings,
            "foreign": self.foreign,
            "update": self.update,
            "target": self.target.to_json() if self.target else None,
            # Only when there are some: plans made without a spec's advice keep their shape.
            **({"notes": self.notes} if self.notes else {}),
            **({"held": self.held} if self.held else {}),
        }


def _held(raw: object) -> dict[str, list[str]]:
    if not isinstance(raw, dict) or not all(isinstance(v, list) and all(isinstance(w, str) for w in v) for v in raw.values()):
        raise ValueError("held is not a map of sysctl keys to warnings")
    return {str(k): list(v) for k, v in raw.items()}


STEP_FIELDS = {f.name for f in fields(Step)}
CHANGE_FIELDS = {f.name for f in fields(Change)}


def plan_from_json(data: dict) -> Plan:
    """The Plan whose `to_json` is `data` (keys beyond it are ignored); ValueError, one line, when
    `data` is not one."""
    if data.get("format_version") != PLAN_FORMAT:
        raise ValueError(f"format_version {data.get('format_version')!r}, this conduit reads {PLAN_FORMAT}")
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise ValueError("steps is not a list")
    plan = Plan(
        cluster=_typed(data, "cluster", str),
        steps=[_step(raw, n) for n, raw in enumerate(steps, 1)],
        fingerprint=_typed(data, "fingerprint", str),
        problems=_strings(data, "problems"),
        warnings=_strings(data, "warnings"),
        foreign=_strings(data, "foreign"),
        update=data.get("update") if isinstance(data.get("update"), dict) else None,
        notes=_strings(data, "notes") if "notes" in data else [],
        held=_held(data.get("held", {})),
        target=None if data.get("target") is None else Target.from_json(data["target"]),
    )
    if plan.summary() != data.get("summary"):
        raise ValueError("its summary does not match its steps")
    return plan


def _typed(data: dict, name: str, kind: type, where: str = "") -> object:
    value = data.get(name)
    # JSON true is a Python bool, and a bool is an int: neither stands for the other here.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{where}{name} is missing or of the wrong type")
    return value


def _strings(data: dict, name: str) -> list[str]:
    value = data.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} is not a list of strings")
    return list(value)


def _step(raw: object, n: int) -> Step:
    where = f"step {n}: "
    if not isinstance(raw, dict) or set(raw) != STEP_FIELDS:
        raise ValueError(f"{where}not an object of the fields {', '.join(sorted(STEP_FIELDS))}")
    names = {name: _typed(raw, name, str, where) for name in ("phase", "kind", "id", "action", "reason", "on_error")}
    changes = [_change(c, where) for c in _typed(raw, "changes", list, where)]
    desired = None if raw["desired"] is None else _typed(raw, "desired", dict, where)
    batch = None if raw["batch"] is None else _typed(raw, "batch", int, where)
    new_identity = _typed(raw, "new_identity", bool, where)
    if names["phase"] not in PHASES:
        raise ValueError(f"{where}unknown phase, kind, action or on_error")
    try:
        return Step(**names, changes=changes, desired=desired, batch=batch, new_identity=new_identity)
    except ValueError:
        raise ValueError(f"{where}unknown phase, kind, action or on_error") from None


def _change(raw: object, where: str) -> Change:
    if not isinstance(raw, dict) or set(raw) != CHANGE_FIELDS:
        raise ValueError(f"{where}a change is not an object of the fields {', '.join(sorted(CHANGE_FIELDS))}")
    return Change(_typed(raw, "field", str, where), raw["old"], raw["new"], _typed(raw, "forces_replacement", bool, where))


def fingerprint(observed: list[Resource]) -> str:
    """Same observed state, same fingerprint; a saved plan is refused when it moves."""
    return digest(sorted(([r.kind, r.id, r.props] for r in observed), key=lambda x: (x[0], x[1])), 32)


def _field_changes(desired: Resource, observed: Resource) -> list[Change]:
    """The fields the desired resource names whose values differ; one the host lacks is null there.

    A field only the host reports is not compared: no step could make it go (a node's image ID
    while the spec's image is not on Docker to be pinned to, a field an older conduit recorded),
    so a change in it would be planned again after every apply."""
    names = sorted(desired.props)
    return [
        Change(name, observed.props.get(name), desired.props.get(name), name in desired.replace_fields)
        for name in names
        if observed.props.get(name) != desired.props.get(name)
    ]


def _moves_key(changes: list[Change]) -> bool:
    """A container's key lives in its data directory on its volume: another volume, another key."""
    return any(c.field == "volume" for c in changes)


def _order(step: Step) -> tuple:
    return (PHASES.index(step.phase), KIND_ORDER.index(step.kind), natural_key(step.id))


def make_plan(
    cluster: str,
    desired: list[Resource],
    observed: list[Resource],
    drifted: set[tuple[str, str]] | None = None,
) -> Plan:
    drifted = drifted or set()
    seen = {r.key: r for r in observed}
    steps: list[Step] = []
    for want in desired:
        have = seen.get(want.key)
        phase = KIND_PHASE[want.kind]
        if have is None:
            steps.append(Step(phase, want.kind, want.id, "create", "not on the host", [], want.props))
            continue
        changes = _field_changes(want, have)
        if have.adopt:
            reason = "made without conduit: recreated with its labels on the same volume and key"
            steps.append(Step(phase, want.kind, want.id, "adopt", reason, changes, want.props, new_identity=_moves_key(changes)))
            continue
        if not changes:
            steps.append(Step(phase, want.kind, want.id, "no-op", "up to date", [], want.props))
            continue
        action = "replace" if any(c.forces_replacement for c in changes) else "update"
        reason = "drift" if want.key in drifted else "differs from the spec"
        steps.append(Step(phase, want.kind, want.id, action, reason, changes, want.props, new_identity=_moves_key(changes)))
    wanted = {r.key for r in desired}
    for have in observed:
        if have.key in wanted or have.keep:
            continue
        steps.append(Step(KIND_PHASE[have.kind], have.kind, have.id, "delete", "no longer in the spec", [], None))
    steps.sort(key=_order)
    return Plan(cluster=cluster, steps=steps, fingerprint=fingerprint(observed))
