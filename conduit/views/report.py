"""Plans as people read them, in the Terraform manner."""

from __future__ import annotations

import hashlib
import json

from rich.markup import escape

from conduit.plan.planner import Plan, Step

SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "adopt": "<=", "delete": "-", "no-op": " "}
COLOUR = {"create": "green", "update": "yellow", "replace": "magenta", "adopt": "cyan", "delete": "red", "no-op": "dim"}
LONG = 72


def _value(value: object) -> str:
    """One escaped line per value; file contents are summarised by line count and hash."""
    if isinstance(value, str) and "\n" in value:
        return f"<{value.count(chr(10))} lines, sha256 {hashlib.sha256(value.encode()).hexdigest()[:8]}>"
    text = json.dumps(value, sort_keys=True)
    return escape(text if len(text) <= LONG else text[: LONG - 3] + "...")


def _step_lines(step: Step) -> list[str]:
    colour = COLOUR[step.action]
    head = f"[{colour}]{SYMBOL[step.action]:>3} {step.kind} {escape(step.id)}[/{colour}]"
    note = step.reason
    if step.action == "replace":
        note += "; forces replacement"
    if step.action == "delete" and step.kind == "container":
        note += "; its data volume is kept"
    lines = [f"{head}  [dim]({note})[/dim]"]
    if step.action == "create" and step.desired:
        for name, value in step.desired.items():
            if value not in (None, [], {}, ""):
                lines.append(f"      {name}: {_value(value)}")
    for change in step.changes:
        mark = "  [magenta]# forces replacement[/magenta]" if change.forces_replacement else ""
        lines.append(f"      ~ {change.field}: {_value(change.old)} -> {_value(change.new)}{mark}")
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
    for warning in plan.warnings:
        out.append(f"[yellow]warning:[/yellow] {escape(warning)}")
    s = plan.summary()
    if not plan.changes:
        out.append("\nNo changes. The host matches the spec.")
    else:
        adopt = f", {s['adopt']} to adopt" if s["adopt"] else ""
        out.append(f"\n[bold]Plan:[/bold] {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy{adopt}.")
    if offline:
        out[-1] += f" {OFFLINE_SUMMARY}"
    return "\n".join(out).lstrip("\n")


def render_problems(plan: Plan) -> str:
    """The problems that stop the plan: a short block, meant for stderr, after the plan."""
    if not plan.problems:
        return ""
    count = len(plan.problems)
    lines = [f"\nThis host cannot take the plan yet ({count} problem{'s' if count != 1 else ''}); install or change, then plan again:"]
    lines += [f"error: {problem}" for problem in plan.problems]
    return "\n".join(lines)
