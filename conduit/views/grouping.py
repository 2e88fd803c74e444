"""Which steps of a plan a person reads as one: the nodes that change the same fields in the same
way, one after the other, are one line (`conduit-1..4`), with how they are rolled out."""

from __future__ import annotations

import json
import re

from conduit.plan.planner import Plan, Step
from conduit.views.values import change

GROUPED_KINDS = ("container", "volume", "compartment")  # one per node, named <prefix><index>
FOLDED = ("drain", "restore")  # said in the note of the nodes they are for
_INDEXED = re.compile(r"^(.*\D)(\d+)$")


def _index(name: str) -> tuple[str, int] | None:
    match = _INDEXED.match(name)
    return (match.group(1), int(match.group(2))) if match else None


def _signature(step: Step) -> str | None:
    """Equal for steps that read the same but for their node; None for a step shown on its own."""
    named = _index(step.id)
    if step.kind not in GROUPED_KINDS or named is None:
        return None
    # The changes as they read: `-m 100 -> -m 150` is the same change on every node, though
    # each node's whole command line has its own metrics port.
    shown = [(c.field, change(c.field, c.old, c.new), c.forces_replacement) for c in step.changes]
    return json.dumps([named[0], step.phase, step.kind, step.action, step.reason, step.on_error, step.new_identity, shown])


def visible(steps: list[Step], verbose: bool) -> list[Step]:
    """Every step with --verbose; else the changes, without the drains and restores (their nodes' note says them)."""
    if verbose:
        return list(steps)
    shown = [s for s in steps if s.action != "no-op" and s.action not in FOLDED]
    # Each batch makes its nodes' compartments just before it; read as one line, before the first
    # batch, so the nodes' replacement still reads as one line too (--verbose shows the real order).
    made = [s for s in shown if s.kind == "compartment"]
    if not made:
        return shown
    first = shown.index(made[0])
    rest = [s for s in shown if s.kind != "compartment"]
    return rest[:first] + made + rest[first:]


def groups(steps: list[Step], verbose: bool) -> list[list[Step]]:
    """Runs of shown steps with one signature; each step alone with --verbose."""
    out: list[list[Step]] = []
    last = None
    for step in visible(steps, verbose):
        signature = None if verbose else _signature(step)
        if signature is not None and signature == last and out[-1][-1].phase == step.phase:
            out[-1].append(step)
        else:
            out.append([step])
        last = signature
    return out


def id_ranges(ids: list[str]) -> str:
    """conduit-1, conduit-2, conduit-3, conduit-5 -> 'conduit-1..3, conduit-5'; names of no one
    prefix and index are listed as they are."""
    if len(ids) == 1:
        return ids[0]
    named = [_index(i) for i in ids]
    if None in named or len({n[0] for n in named}) > 1:  # type: ignore[index]
        return ", ".join(ids)
    prefix = named[0][0]  # type: ignore[index]  # grouped steps share their prefix
    numbers = sorted(n for _, n in named)  # type: ignore[misc]
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{prefix}{r[0]}" + (f"..{r[-1]}" if len(r) > 1 else "") for r in runs)


def _batches_text(batches: list[int], sizes: list[int]) -> str:
    if len(batches) == 1:
        return f"replaced in batch {batches[0]}"
    contiguous = batches[-1] - batches[0] == len(batches) - 1
    which = f"{batches[0]}..{batches[-1]}" if contiguous else ", ".join(map(str, batches))
    return f"replaced {max(sizes)} at a time (batches {which})"


def rollout_line(group: list[Step], plan: Plan, drains_shown: bool) -> str | None:
    """How the nodes of `group` are replaced, when it takes more than one batch or (unless the
    drain steps are shown too) a drain from the front: how many at a time, in which batches."""
    batches = sorted({s.batch for s in group if s.batch})
    drain = None if drains_shown else _drain_seconds(plan, batches)
    if not batches or (len(batches) == 1 and drain is None):
        return None
    sizes = [sum(1 for s in plan.steps if s.kind == "container" and s.batch == b) for b in batches]
    line = _batches_text(batches, sizes)
    if drain is not None:
        line += f"; each batch leaves nginx {drain:g}s before it stops and comes back after its gate"
    return line


def _drain_seconds(plan: Plan, batches: list[int]) -> float | None:
    """How long the batches are out of nginx before they stop (None: they are not drained)."""
    drains = [s for s in plan.steps if s.action == "drain" and s.batch in batches]
    return (drains[0].desired or {}).get("seconds", 0) if drains else None
