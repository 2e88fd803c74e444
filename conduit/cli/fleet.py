"""`conduit fleet`: one repository of specs for many hosts (fleet.yaml); validate, plan offline and
diff against a git ref (these read no host); status asks every host's agent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conduit.cli.common import EXIT_INVALID, Options, fail
from conduit.features.fleet import FleetDiff, HostResult, diff_fleet, plan_fleet, validate_fleet
from conduit.features.fleetstatus import HEADERS, TOKENS_FILE, Row, cells, fleet_status, read_tokens
from conduit.plan.planner import Plan
from conduit.errors import GitError, PolicyError, SpecError
from conduit.spec.fleet import load_fleet
from conduit.views.report import render_plan

EXIT_CHANGES = 2


@click.group("fleet")
def fleet_group() -> None:
    """Many hosts from one repository: FLEET is a fleet.yaml naming each host's spec, ring and agent."""


def _fleet_failed(exc: SpecError | GitError, code: int) -> None:
    if isinstance(exc, SpecError):
        for line in exc.lines():
            click.echo(line, err=True)
        sys.exit(code)
    fail(str(exc), code)


def _problems(results: list[HostResult]) -> int:
    """Each host's problems on stderr, one line each, prefixed with the host; how many hosts had some."""
    bad = 0
    for result in results:
        for line in result.problems:
            click.echo(f"{result.host.name}: {line}", err=True)
        bad += bool(result.problems)
    return bad


@fleet_group.command("validate")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.pass_obj
def validate_command(opts: Options, fleet: str) -> None:
    """Check FLEET and every host's spec with its bases; exit 2 when anything is invalid."""
    try:
        results = validate_fleet(fleet, opts.detected())
    except SpecError as exc:
        _fleet_failed(exc, EXIT_INVALID)
    bad = _problems(results)
    if bad:
        click.echo(f"error: {bad} of {len(results)} hosts have an invalid spec; fix the lines above", err=True)
        sys.exit(EXIT_INVALID)
    specs = len({r.host.spec for r in results})
    click.echo(f"{fleet}: valid ({len(results)} host{'s' if len(results) != 1 else ''}, {specs} spec{'s' if specs != 1 else ''})")


def summary(plan: Plan) -> str:
    if not plan.changes:
        return "No changes."
    s = plan.summary()
    return f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."


def _head(result: HostResult) -> str:
    return f"{result.host.name} (ring {result.ring or '-'}, {result.host.spec})"


def _host_json(result: HostResult) -> dict:
    return {
        "name": result.host.name,
        "ring": result.ring,
        "spec": result.host.spec,
        "labels": result.host.labels.model_dump(exclude_none=True),
        "problems": result.problems,
        "changes": bool(result.plan and result.plan.changes),
        "summary": result.plan.summary() if result.plan else None,
        "plan": result.plan.to_json() if result.plan else None,
    }


def _show_hosts(results: list[HostResult], full: bool, offline: bool) -> None:
    console = Console(highlight=False, soft_wrap=True)
    for result in results:
        if result.plan is None:
            continue
        if full:
            console.print(f"\n[bold]== {_head(result)}[/bold]")
            console.print(render_plan(result.plan, False, offline))
        else:
            click.echo(f"{_head(result)}: {summary(result.plan)}")


def _exit(results: list[HostResult], detailed: bool = True) -> None:
    if _problems(results):
        sys.exit(1)
    if detailed and any(r.plan is not None and r.plan.changes for r in results):
        sys.exit(EXIT_CHANGES)


@fleet_group.command("plan")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Plan each host against an empty host (required: a fleet plan reads no host).")
@click.option("--json", "as_json", is_flag=True, help="Print every host's plan as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Print each host's full plan, not one line.")
@click.pass_obj
def plan_command(opts: Options, fleet: str, offline: bool, as_json: bool, verbose: bool) -> None:
    """Every host's plan against an empty host, one line each.

    Exit codes as `conduit plan --detailed-exitcode`: 0 nothing changes anywhere, 2 something
    changes, 1 a host's spec is invalid (its lines, prefixed with the host, on stderr).
    """
    if not offline:
        fail("a fleet plan reads no host: pass --offline (each host's agent plans against its own host)", EXIT_INVALID)
    try:
        results = plan_fleet(fleet, opts.detected())
    except SpecError as exc:
        _fleet_failed(exc, 1)
    if as_json:
        click.echo(json.dumps({"fleet": fleet, "offline": True, "hosts": [_host_json(r) for r in results]}, indent=2))
    else:
        _show_hosts(results, verbose, offline=True)
    _exit(results)


@fleet_group.command("diff")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.option("--git-ref", required=True, help="Compare each host's spec, and its bases, with the same files at this ref (for example origin/stable).")
@click.option("--json", "as_json", is_flag=True, help="Print the hosts' plans as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Print each touched host's full plan, not one line.")
@click.pass_obj
def diff_command(opts: Options, fleet: str, git_ref: str, as_json: bool, verbose: bool) -> None:
    """The hosts a change touches: for each, the plan from its spec at REF to the working tree's.

    Exit 0 when no host changes, 2 when some do, 1 when a spec is invalid or the ref cannot be read.
    """
    try:
        found = diff_fleet(fleet, git_ref, opts.detected())
    except (SpecError, GitError) as exc:
        _fleet_failed(exc, 1)
    if as_json:
        click.echo(json.dumps(_diff_json(fleet, git_ref, found), indent=2))
    else:
        _show_diff(found, verbose)
    _exit(found.changed)
    if found.removed:
        sys.exit(EXIT_CHANGES)


def _show_diff(found: FleetDiff, verbose: bool) -> None:
    _show_hosts(found.changed, verbose, offline=False)
    if found.removed:
        click.echo(f"removed from the fleet: {', '.join(found.removed)}")
    if found.unchanged:
        click.echo(f"unchanged: {', '.join(found.unchanged)}")


def _diff_json(fleet: str, ref: str, found: FleetDiff) -> dict:
    return {"fleet": fleet, "git_ref": ref, "hosts": [_host_json(r) for r in found.changed],
            "unchanged": found.unchanged, "removed": found.removed}  # fmt: skip


@fleet_group.command("status")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.option("--tokens", "tokens_path", type=click.Path(dir_okay=False, path_type=Path), default=TOKENS_FILE, show_default=True,
              help="A root-only YAML file of `HOST: {viewer: TOKEN, agent: URL}`: each agent's token goes only to that URL; never the repository.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=5.0, show_default=True, help="Seconds to wait for each agent.")
@click.option("--cacert", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="CA certificates the agents' TLS certificates chain to.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def status_command(fleet: str, tokens_path: Path, timeout: float, cacert: Path | None, as_json: bool) -> None:
    """Ask every host's agent at once and print one row each: ring, the commit applied and the one
    tried, ready or why not, nodes up, clients, bytes, drift and the last error.

    Exit 0 when every host is ready, 1 when one is not (or did not answer)."""
    try:
        found = load_fleet(fleet)
        tokens = read_tokens(tokens_path)
    except SpecError as exc:
        _fleet_failed(exc, EXIT_INVALID)
    except PolicyError as exc:
        fail(str(exc), 1)
    rows = fleet_status(found, tokens, timeout, cacert)
    if as_json:
        click.echo(json.dumps({"fleet": fleet, "hosts": [r.to_json() for r in rows]}, indent=2))
    else:
        # Piped, the table keeps its columns whole (a terminal's width otherwise)
        Console(highlight=False, width=None if sys.stdout.isatty() else 250).print(status_table(rows))
    sys.exit(0 if all(r.ready for r in rows) else 1)


def status_table(rows: list[Row]) -> Table:
    table = Table(*HEADERS, box=None, pad_edge=False)
    for row in rows:
        values = [escape(v) for v in cells(row)]
        values[4] = f"[green]{values[4]}[/green]" if row.ready else f"[red]{values[4]}[/red]"
        table.add_row(*values)
    return table
