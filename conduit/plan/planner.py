"""Desired vs observed resources, into an ordered plan. Pure: no host access here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from deepdiff import DeepDiff

from conduit.spec.resources import KIND_ORDER, KIND_PHASE, PHASES, Resource, digest, natural_key

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Change:
    field: str
    old: object
    new: object
    forces_replacement: bool = False


@dataclass
class Step:
    phase: str
    kind: str
    id: str
    action: str  # create | update | replace | adopt | delete | no-op; pull (image); drain | restore (backends)
    reason: str
    changes: list[Change] = field(default_factory=list)
    desired: dict | None = None  # what the executor makes; None for delete
    batch: int | None = None  # container steps gated together (0: the new nodes, started side by side)
    on_error: str = "fail"  # fail | warn: a refused step stops the apply, or only warns
    new_identity: bool = False  # an existing node would start on another volume: a new key, its reputation lost

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.id)


@dataclass
class Plan:
    cluster: str
    steps: list[Step]
    fingerprint: str  # of the observed state the plan was made against
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    api_calls: int = 0

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != "no-op"]

    def summary(self) -> dict[str, int]:
        def count(*actions: str) -> int:
            return sum(1 for s in self.steps if s.action in actions)

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
            "steps": [asdict(s) for s in self.steps],
            "problems": self.problems,
            "warnings": self.warnings,
            "foreign": self.foreign,
        }


def fingerprint(observed: list[Resource]) -> str:
    """Same observed state, same fingerprint; a saved plan is refused when it moves."""
    return digest(sorted(([r.kind, r.id, r.props] for r in observed), key=lambda x: (x[0], x[1])), 32)


def _field_changes(desired: Resource, observed: Resource) -> list[Change]:
    diff = DeepDiff(observed.props, desired.props, ignore_order=False, verbose_level=2)
    fields = set()
    for section in diff.values():
        for path in section:
            # root['command'][3] -> command
            top = path.split("[", 2)[1].rstrip("]").strip("'\"")
            fields.add(top)
    # A field one side lacks and the other holds as null is the same field: no change.
    return [
        Change(name, observed.props.get(name), desired.props.get(name), name in desired.replace_fields)
        for name in sorted(fields)
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
