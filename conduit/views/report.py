"""Plans as people read them, in the Terraform manner."""

from __future__ import annotations

import hashlib
import json
import os
import sys

from rich.console import Console
from rich.markup import escape

from conduit.plan.planner import Plan, Step
from conduit.plan.saved import dumps

SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "adopt": "<=", "delete": "-", "no-op": " ",
          "pull": "v", "drain": "||", "restore": "|>", "measure": "?", "judge": "?!"}
COLOUR = {"create": "green", "update": "yellow", "replace": "magenta", "adopt": "cyan", "delete": "red", "no-op": "dim",
          "pull": "blue", "drain": "blue", "restore": "blue", "measure": "blue", "judge": "blue"}
LONG = 72
CONTEXT = 24  # characters shown before the first difference of a long pair


def _text(value: object) -> str:
    """One line per value; file contents are summarised by line count and hash."""
    if isinstance(value, str) and "\n" in value:
        return f"<{value.count(chr(10))} lines, sha256 {hashlib.sha256(value.encode()).hexdigest()[:8]}>"
    return json.dumps(value, sort_keys=True)


def _clip(text: str) -> str:
    return escape(text if len(text) <= LONG else text[: LONG - 3] + "...")


def _value(value: object) -> str:
    return _clip(_text(value))


def _change(old: object, new: object) -> tuple[str, str]:
    """Both sides of a change. A long pair skips most of the start the two share, so that the
    difference is what shows (a flag added at the end of a long command line)."""
    a, b = _text(old), _text(new)
    shared = len(os.path.commonprefix([a, b]))
    if max(len(a), len(b)) > LONG and shared > CONTEXT:
        a, b = "..." + a[shared - CONTEXT :], "..." + b[shared - CONTEXT :]
    return _clip(a), _clip(b)


def _verb(step: Step) -> str:
    """Steps that are not a resource's change say what they do."""
    return f"{step.action} " if step.action in ("pull", "drain", "restore", "measure", "judge") else ""


def _step_lines(step: Step) -> list[str]:
    colour = COLOUR[step.action]
    head = f"[{colour}]{SYMBOL[step.action]:>3} {_verb(step)}{step.kind} {escape(step.id)}[/{colour}]"
    note = step.reason
    if step.action == "replace":
        note += "; forces replacement"
    if step.kind == "container" and step.batch:
        note += f"; batch {step.batch}"
    if step.on_error == "warn":
        note += "; a refusal only warns"
    if step.action == "delete" and step.kind == "container":
        note += "; its data volume is kept"
    lines = [f"{head}  [dim]({note})[/dim]"]
    if step.new_identity:
        lines.append("      [bold red]NEW IDENTITY[/bold red]: this node would start on another volume with a new key; "
                     "its reputation starts again (apply refuses without --allow-new-identity)")
    if step.action == "create" and step.desired and step.kind != "image":
        for name, value in step.desired.items():
            if value not in (None, [], {}, ""):
                lines.append(f"      {name}: {_value(value)}")
    for change in step.changes:
        mark = "  [magenta]# forces replacement[/magenta]" if change.forces_replacement else ""
        before, after = _change(change.old, change.new)
        lines.append(f"      ~ {change.field}: {before} -> {after}{mark}")
    return lines


OFFLINE_HEADER = "Offline plan: against an empty host; Docker, nginx, /proc/sys and the tracker were not read."
OFFLINE_SUMMARY = "(offline: this host was not read)"


def render_plan(plan: Plan, verbose: bool = False, offline: bool = False) -> str:
    """Rich markup text; print it with a rich Console. Problems are not in it: see render_problems."""
    out: list[str] = [f"[bold]{OFFLINE_HEADER}[/bold]"] if offline else []
    phase = None
    for step in plan.steps:
        if step.action == "no-op" and not verbose:
            continue
        if step.phase != phase:
            phase = step.phase
            out.append(f"\n[bold]# {phase}[/bold]")
        out.extend(_step_lines(step))
    out += update_lines(plan.update)
    if plan.notes:
        out.append("")
    out += [escape(note) for note in plan.notes]
    for warning in plan.warnings:
        out.append(f"[yellow]warning:[/yellow] {escape(warning)}")
    out += _summary_lines(plan)
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
    new = _side(update["new_digest"], update["new_id"], update["new_version"])
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


def _summary_lines(plan: Plan) -> list[str]:
    s = plan.summary()
    if not plan.changes:
        held = any(step.reason.startswith("held: ") for step in plan.steps)
        return ["\nNo changes. The host matches the spec" + (" as far as its kernel allows (see the warnings)." if held else ".")]
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
    lines = [f"\nThis host cannot take the plan yet ({count} problem{'s' if count != 1 else ''}); install or change, then plan again:"]
    lines += [f"error: {problem}" for problem in plan.problems]
    return "\n".join(lines)


def print_plan(plan: Plan, verbose: bool = False, offline: bool = False) -> None:
    """The plan on stdout; the problems that stop it last, on stderr."""
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
