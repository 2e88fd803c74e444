"""How apply carries out a diff, written into the plan as steps: image pulls, parallel creates,
replacement batches with their drains, and which failures only warn.

Pure, like the diff: what it needs of the host (is the image here?) and of the spec (rollout,
front, sysctl policy) is passed in. The executor runs these steps as they stand; `plan` and
`plan --json` show them, and the journal records each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from conduit.facts.compartment import wants_compartment
from conduit.plan.planner import Plan, Step

NEW_CONTAINER = ("create", "replace", "adopt")
REPLACED = ("replace", "adopt")


@dataclass(frozen=True)
class Rollout:
    """The spec's answers the schedule needs."""

    image: str
    image_present: bool  # Docker already has the spec's image
    max_unavailable: int
    drain_seconds: float
    front: bool  # nginx fronts the nodes, so a replaced node is drained from it first
    sysctl_on_refused: str = "fail"  # fail | warn
    held: dict[str, str] = field(default_factory=dict)  # sysctl keys not tried under warn, and why
    canary: int = 0  # nodes that take a new image first, alone, and are judged before the rest (0: no canary)
    analysis_seconds: float = 600.0
    min_clients_ratio: float = 0.5
    probe: dict | None = None  # a new digest to pull (image: repository@digest) and what the plan expects it to say


def schedule(plan: Plan, rollout: Rollout) -> Plan:
    """A new plan: its containers phase in execution order and its policy on each step. The plan
    given and its steps are left as they are (steps are frozen; the schedule makes new ones)."""
    steps = [_policy(step, rollout) for step in plan.steps]
    phase = [s for s in steps if s.phase == "containers"]
    if phase:
        first = steps.index(phase[0])
        steps[first : first + len(phase)] = containers_order(phase, rollout)
    return replace(plan, steps=steps)


def _policy(step: Step, rollout: Rollout) -> Step:
    """A sysctl step under spec.sysctl.on_refused; a held key's write is not tried again."""
    if step.kind != "sysctl" or step.action == "delete":
        return step
    step = replace(step, on_error=rollout.sysctl_on_refused)
    if step.action in ("create", "update") and step.id in rollout.held:
        # Trying again would be refused again: the plan converges instead of repeating it.
        step = replace(step, action="no-op", reason=f"held: {rollout.held[step.id]}", changes=())
    return step


def containers_order(steps: list[Step], rollout: Rollout) -> list[Step]:
    """Networks and volumes; the pull; the new nodes' compartments, then the nodes side by side
    (batch 0); updates; the keys backed up before any is touched; replacements in batches of
    max_unavailable, each drained from the front first and put back after its gate; deletes last
    (containers first, so a network is free when it goes)."""
    containers = [s for s in steps if s.kind == "container"]
    others = [s for s in steps if s.kind != "container"]
    creates = [replace(s, batch=0) for s in _acting(containers, "create")]
    replaced = _acting(containers, *REPLACED)
    return (
        [s for s in others if s.action != "delete"]
        + pull(containers, rollout)
        + _acting(containers, "no-op")
        + [c for s in _acting(containers, "create") for c in compartment(s)]  # one by one, before batch 0
        + creates
        + _acting(containers, "update")
        + key_backup(replaced, [s.id for s in others if s.kind == "volume" and s.action == "delete"])
        + replacement_batches(replaced, rollout)
        + _acting(containers, "delete")
        + _acting(others, "delete")
    )


def _volumes(step: Step) -> list[str]:
    """The volumes a replace touches: the one it starts on, and the one it leaves (its key stays there)."""
    mounts = [step.desired.get("volume")] + [c.old for c in step.changes if c.field == "volume"]
    return [m.partition(":")[0] for m in mounts if isinstance(m, str) and m]


def key_backup(replaced: list[Step], purged: list[str]) -> list[Step]:
    """One step that copies out the keys of every volume a replace or a purge touches, before any is."""
    nodes = {volume: s.id for s in replaced for volume in _volumes(s)}
    volumes = sorted(set(nodes) | set(purged))
    if not volumes:
        return []
    names = [s.id for s in replaced] or volumes
    reason = "their keys, copied to the state directory before any is touched"
    return [Step("containers", "keys", ",".join(names), "backup", reason, desired={"volumes": volumes, "nodes": nodes})]


def compartment(step: Step) -> list[Step]:
    """A node whose command asks for personal clients and names no compartment gets one made on its
    volume, by its own image, before it starts (conduit.facts.compartment); kept if it has one."""
    props = step.desired or {}
    if not wants_compartment(list(props.get("command") or [])):
        return []
    volume, _, data_dir = props["volume"].partition(":")
    desired = {"node": step.id, "volume": volume, "data_dir": data_dir, "image": props.get("image_id") or props["image"]}
    reason = "personal clients: made once on its volume before it starts, unless it has one"
    return [Step("containers", "compartment", step.id, "create", reason, batch=step.batch, desired=desired)]


def _acting(steps: list[Step], *actions: str) -> list[Step]:
    return [s for s in steps if s.action in actions]


def pull(containers: list[Step], rollout: Rollout) -> list[Step]:
    """The image, once, when a node is made from it and Docker does not have it; a new digest behind
    the tag is then asked what it speaks, before any node is touched."""
    if rollout.image_present or not _acting(containers, *NEW_CONTAINER):
        return []
    if rollout.probe is None:
        reason = "not on this host; pulled before any node stops"
        return [Step("containers", "image", rollout.image, "pull", reason, desired={"image": rollout.image})]
    image = rollout.probe["image"]
    expected = f"the nodes are planned as {rollout.probe['rendered_for']}"
    return [
        Step("containers", "image", image, "pull", "the new digest behind the tag; pulled before any node stops", desired={"image": image}),
        Step("containers", "image", image, "probe", f"asked what it speaks: {expected}; a lower version or another CLI "
             "stops the apply before any node is touched", desired=dict(rollout.probe)),
    ]


def new_image(step: Step) -> bool:
    """The node moves from one image to another (not its first image, not only new flags)."""
    return any(c.field == "image_id" and c.old is not None for c in step.changes)


def _batches(replaced: list[Step], rollout: Rollout) -> tuple[list[Step], list[list[Step]]]:
    """The canaries, and the batches: max_unavailable at a time, a new image to the canaries first, alone."""
    canaries = [s for s in replaced if new_image(s)][: rollout.canary]
    rest = [s for s in replaced if s not in canaries]
    size = rollout.max_unavailable
    return canaries, ([canaries] if canaries else []) + [rest[i : i + size] for i in range(0, len(rest), size)]


def _analysis(canaries: list[Step], rollout: Rollout) -> tuple[Step, Step]:
    names = [s.id for s in canaries]
    joined = ",".join(names)
    measure = Step("containers", "canary", joined, "measure", "their clients before the new image", desired={"nodes": names})
    reason = (
        f"each that had clients wins back {rollout.min_clients_ratio:.0%} of them within {rollout.analysis_seconds:g}s, "
        "before any other node moves; one that had none is judged by its gates"
    )
    judge = Step("containers", "canary", joined, "judge", reason,
                 desired={"nodes": names, "seconds": rollout.analysis_seconds, "ratio": rollout.min_clients_ratio})
    return measure, judge


def replacement_batches(replaced: list[Step], rollout: Rollout) -> list[Step]:
    out: list[Step] = []
    canaries, batches = _batches(replaced, rollout)
    judge = None
    if canaries:
        measure, judge = _analysis(canaries, rollout)
        out.append(measure)
    for number, batch in enumerate(batches, 1):
        names = ",".join(s.id for s in batch)
        batch = [replace(s, batch=number) for s in batch]
        out += [c for s in batch for c in compartment(s)]  # made while the old nodes still serve
        if rollout.front:
            reason = f"batch {number}: out of nginx for {rollout.drain_seconds:g}s before they stop"
            out.append(Step("containers", "backends", names, "drain", reason, batch=number,
                            desired={"nodes": [s.id for s in batch], "seconds": rollout.drain_seconds}))
        out += batch
        if rollout.front:
            reason = f"batch {number}: back in nginx once they pass their gate"
            out.append(Step("containers", "backends", names, "restore", reason, batch=number, desired={"nodes": []}))
        if number == 1 and judge is not None:
            out.append(judge)
    return out
