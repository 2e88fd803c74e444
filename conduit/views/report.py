"""Plans as people read them, in the Terraform manner."""

from __future__ import annotations

import sys

from rich.markup import escape

from conduit.plan.planner import Plan, Step
from conduit.engine.settle import new_version_said
from conduit.plan.saved import dumps
from conduit.views import values
from conduit.views.grouping import groups, id_ranges, rollout_line

SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "adopt": "<=", "delete": "-", "no-op": " ",
          "pull": "v", "drain": "||", "restore": "|>", "measure": "?", "judge": "?!", "backup": "=>", "probe": "?"}
COLOUR = {"create": "green", "update": "yellow", "replace": "magenta", "adopt": "cyan", "delete": "red", "no-op": "dim",
          "pull": "blue", "drain": "blue", "restore": "blue", "measure": "blue", "judge": "blue", "backup": "blue", "probe": "blue"}


def _verb(step: Step) -> str:
    """Steps that are not a resource's change say what they do."""
    return f"{step.action} " if step.action in ("pull", "drain", "restore", "measure", "judge", "backup", "probe") else ""


def _note(group: list[Step], rollout: str | None) -> str:
    step = group[0]
    note = step.reason
    if step.action == "replace":
        note += "; forces replacement"
    if step.kind == "container" and step.batch and rollout is None:
        note += f"; batch {step.batch}"
    if step.on_error == "warn":
        note += "; a refusal only warns"
    if step.action == "delete" and step.kind == "container":
        note += "; its data volume is kept" if len(group) == 1 else "; their data volumes are kept"
    return note


def _step_lines(group: list[Step], plan: Plan, verbose: bool) -> list[str]:
    """One step, or a run of steps that change the same fields in the same way (grouped)."""
    step = group[0]
    colour = COLOUR[step.action]
    ids = step.id.split(",") if step.kind == "keys" else [s.id for s in group]  # a backup names all its nodes
    head = f"[{colour}]{SYMBOL[step.action]:>3} {_verb(step)}{step.kind} {escape(id_ranges(ids))}[/{colour}]"
    rollout = rollout_line(group, plan, drains_shown=verbose) if step.kind == "container" else None
    lines = [f"{head}  [dim]({_note(group, rollout)})[/dim]"]
    if step.new_identity:
        lines.append("      [bold red]NEW IDENTITY[/bold red]: " + ("this node" if len(group) == 1 else "these nodes")
                     + " would start on another volume with a new key; "
                     "its reputation starts again (apply refuses without --allow-new-identity)")
    if rollout:
        lines.append(f"      {rollout}")
    if step.action == "create" and step.desired and step.kind not in ("image", "compartment"):
        lines += _desired_lines(group, verbose)
    for change in step.changes:
        lines += _change_lines(change, verbose)
    return lines


def _desired_lines(group: list[Step], verbose: bool) -> list[str]:
    """What a create makes; a value that differs between the grouped nodes is the first node's, then
    what differs in the last one's."""
    lines = []
    for name, first in group[0].desired.items():
        if first in (None, [], {}, ""):
            continue
        lines.append(f"      {name}: {values.value(name, first, verbose)}")
        last = group[-1].desired.get(name)
        if last != first:
            lines.append(f"        .. {escape(group[-1].id)}: {values.per_node(name, first, last, verbose)}")
    return lines


def _change_lines(change, verbose: bool) -> list[str]:
    mark = "  [magenta]# forces replacement[/magenta]" if change.forces_replacement else ""
    diff = values.content_diff(change.old, change.new) if verbose else None
    if diff is not None:
        return [f"      ~ {change.field}:{mark}"] + [f"          {line}" for line in diff]
    return [f"      ~ {change.field}: {values.change(change.field, change.old, change.new, verbose)}{mark}"]


OFFLINE_HEADER = "Offline plan: against an empty host; Docker, nginx, /proc/sys and the tracker were not read."
OFFLINE_SUMMARY = "(offline: this host was not read)"


def render_plan(plan: Plan, verbose: bool = False, offline: bool = False) -> str:
    """Rich markup text; print it with a rich Console. Problems are not in it: see render_problems."""
    out: list[str] = [f"[bold]{OFFLINE_HEADER}[/bold]"] if offline else []
    phase = None
    for group in groups(plan.steps, verbose):
        if group[0].phase != phase:
            phase = group[0].phase
            out.append(f"\n[bold]# {phase}[/bold]")
        out.extend(_step_lines(group, plan, verbose))
    out += update_lines(plan.update)
    if plan.notes:
        out.append("")
    out += [escape(note) for note in plan.notes]
    # A key the kernel refuses is explained when the plan would change the host (or on request),
    # not again on every run that finds nothing to do: then the summary names it in one line.
    quiet = list(plan.held) if not plan.changes and not verbose else []
    said = {warning for key in quiet for warning in plan.held[key]}
    out += [f"[yellow]warning:[/yellow] {escape(w)}" for w in plan.warnings if w not in said]
    out += _summary_lines(plan, quiet)
    if offline:
        out[-1] += f" {OFFLINE_SUMMARY}"
    return "\n".join(out).lstrip("\n")


def _side(digest: str | None, image_id: str | None, version: str | None) -> str:
    return escape((digest or image_id or "unknown")[:19] + (f" ({version})" if version else ""))


def update_lines(update: dict | None) -> list[str]:
    """A new digest behind the spec's tag, and whether this plan moves the nodes to it."""
    if not update:
        return []
    old = _side(update["old_digest"], update["old_id"], update["old_version"])
    new = _side(update["new_digest"], update["new_id"], new_version_said(update))
    if update.get("new_tag"):  # updates.versions: the newest tag inside the range, not the spec's own
        repo = update["image"][: -len(update["new_tag"]) - 1]
        old = f"{escape(update['old_tag'])} {old}" if update.get("old_tag") else old
        lines = [
            f"\n[bold]Image update:[/bold] {escape(repo)}: {old} -> {escape(update['new_tag'])} {new}"
            f" (the newest tag inside {escape(update['versions'] or '')})"
        ]
    else:
        lines = [f"\n[bold]Image update:[/bold] {escape(update['image'])} moved in its registry: {old} -> {new}"]
    if update["taken"]:
        lines.append("  taken: the canaries first, judged by their clients, then the rest (see the steps)")
    else:
        lines.append(f"  not taken: {escape(update['why_not'] or '')}")
    return lines


def _summary_lines(plan: Plan, quiet: list[str]) -> list[str]:
    s = plan.summary()
    if not plan.changes:
        if quiet:
            keys = ", ".join(quiet)
            return [f"\nNo changes. The host matches the spec as far as its kernel allows (held: {escape(keys)}; "
                    "`conduit plan --verbose` says why)."]
        return ["\nNo changes. The host matches the spec" + (" as far as its kernel allows (see the warnings)." if plan.held else ".")]
    adopt = f", {s['adopt']} to adopt" if s["adopt"] else ""
    pull = f", {s['pull']} image to pull" if s["pull"] else ""
    batches = f"; nodes replaced in {s['batches']} batch{'es' if s['batches'] != 1 else ''}" if s["batches"] else ""
    lines = [f"\n[bold]Plan:[/bold] {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy{adopt}{pull}{batches}."]
    if s["new_identity"]:
        lines.append(f"[bold red]NEW IDENTITY[/bold red] for {s['new_identity']} node{'s' if s['new_identity'] != 1 else ''}.")
    return lines


def render_problems(plan: Plan) -> str:
    """The problems that stop the plan: a short block, meant for stderr, after the plan."""
    if not plan.problems:
        return ""
    count = len(plan.problems)
    lines = [f"\nThis host cannot take the plan yet ({count} problem{'s' if count != 1 else ''}):"]
    lines += [f"error: {problem}" for problem in plan.problems]
    return "\n".join(lines)


def print_plan(plan: Plan, verbose: bool = False, offline: bool = False) -> None:
    """The plan on stdout; the problems that stop it last, on stderr."""
    from rich.console import Console  # the agent renders plans to text, never to a console: it does not load one

    Console(highlight=False, soft_wrap=True).print(render_plan(plan, verbose, offline))
    if plan.problems:
        print(render_problems(plan), file=sys.stderr)


def show_plan(plan: Plan, data: dict, as_json: bool, verbose: bool = False) -> None:
    """What `conduit plan` prints: `data` (the plan as saved, conduit.plan.saved.plan_data) as
    JSON, or the plan as text."""
    if as_json:
        print(dumps(data))
    else:
        print_plan(plan, verbose, bool(data.get("offline")))
