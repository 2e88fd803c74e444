"""How apply carries out a diff, written into the plan as steps: image pulls, parallel creates,
replacement batches with their drains, and which failures only warn.

Pure, like the diff: what it needs of the host (is the image here?) and of the spec (rollout,
front, sysctl policy) is passed in. The executor runs these steps as they stand; `plan` and
`plan --json` show them, and the journal records each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conduit.plan.planner import Plan, Step

NEW_CONTAINER = ("create", "replace", "adopt")
REPLACED = ("replace", "adopt")


@dataclass(frozen=True)
class Rollout:
    """The spec's answers the schedule needs."""

    image: str
    image_present: bool  # the engine already has the spec's image
    max_unavailable: int
    drain_seconds: float
    front: bool  # nginx fronts the nodes, so a replaced node is drained from it first
    sysctl_on_refused: str = "fail"  # fail | warn
    held: dict[str, str] = field(default_factory=dict)  # sysctl keys not tried under warn, and why


def schedule(plan: Plan, rollout: Rollout) -> Plan:
    """The plan with its containers phase in execution order and its policy on each step."""
    for step in plan.steps:
        if step.kind == "sysctl" and step.action != "delete":
            step.on_error = rollout.sysctl_on_refused
        if step.kind == "sysctl" and step.action in ("create", "update") and step.id in rollout.held:
            # Trying again would be refused again: the plan converges instead of repeating it.
            step.action, step.reason, step.changes = "no-op", f"held: {rollout.held[step.id]}", []
    phase = [s for s in plan.steps if s.phase == "containers"]
    if not phase:
        return plan
    first = plan.steps.index(phase[0])
    plan.steps[first : first + len(phase)] = containers_order(phase, rollout)
    return plan


def containers_order(steps: list[Step], rollout: Rollout) -> list[Step]:
    """Networks and volumes; the pull; new nodes side by side (batch 0); updates; replacements in
    batches of max_unavailable, each drained from the front first and put back after its gate;
    deletes last (containers first, so a network is free when it goes)."""
    containers = [s for s in steps if s.kind == "container"]
    others = [s for s in steps if s.kind != "container"]
    creates = _acting(containers, "create")
    for step in creates:
        step.batch = 0
    return (
        [s for s in others if s.action != "delete"]
        + pull(containers, rollout)
        + _acting(containers, "no-op")
        + creates
        + _acting(containers, "update")
        + replacement_batches(_acting(containers, *REPLACED), rollout)
        + _acting(containers, "delete")
        + _acting(others, "delete")
    )


def _acting(steps: list[Step], *actions: str) -> list[Step]:
    return [s for s in steps if s.action in actions]


def pull(containers: list[Step], rollout: Rollout) -> list[Step]:
    """The image, once, when a node is made from it and the engine does not have it."""
    if rollout.image_present or not _acting(containers, *NEW_CONTAINER):
        return []
    reason = "not on this host; pulled before any node stops"
    return [Step("containers", "image", rollout.image, "pull", reason, desired={"image": rollout.image})]


def replacement_batches(replaced: list[Step], rollout: Rollout) -> list[Step]:
    out: list[Step] = []
    size = rollout.max_unavailable
    for number, start in enumerate(range(0, len(replaced), size), 1):
        batch = replaced[start : start + size]
        names = ",".join(s.id for s in batch)
        for step in batch:
            step.batch = number
        if rollout.front:
            reason = f"batch {number}: out of nginx for {rollout.drain_seconds:g}s before they stop"
            out.append(Step("containers", "backends", names, "drain", reason, batch=number,
                            desired={"nodes": [s.id for s in batch], "seconds": rollout.drain_seconds}))
        out += batch
        if rollout.front:
            reason = f"batch {number}: back in nginx once they pass their gate"
            out.append(Step("containers", "backends", names, "restore", reason, batch=number, desired={"nodes": []}))
    return out
