"""Read-only: validate a spec, plan it for this host, diff two specs (apply, history and rollback: conduit.cli.apply)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from conduit.cli.common import Options, fail, invalid, invalid_code, load_spec
from conduit.errors import DockerDown, DockerError, GitError, SpecError
from conduit.engine.intent import Apply
from conduit.engine.observe import plan_on_host
from conduit.engine import planning
from conduit.plan.saved import dumps, plan_data, spec_fields
from conduit.spec.advisor import capacity
from conduit.spec.load import MAX_BYTES, load_text, spec_text
from conduit.spec.spec import ClusterSpec
from conduit.state.git import show_committed
from conduit.state.db import StateError
from conduit.state.stores import read_state
from conduit.views.report import show_plan


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def validate(opts: Options, file: str) -> None:
    """Check FILE against the spec language and this host; exit 2 when it is invalid."""
    spec = load_spec(opts, file)
    count = spec.spec.containers.count
    click.echo(f"{file}: valid ({spec.metadata.name}: {count} container{'s' if count != 1 else ''})")
    click.echo(f"not checked: {', '.join(host_checks(spec))} (`conduit plan {file}` checks them)")
    advice = capacity(spec)
    for line in advice.summary:
        click.echo(line)
    for warning in advice.warnings:
        click.echo(f"warning: {warning}", err=True)


def host_checks(spec: ClusterSpec) -> list[str]:
    """What only `plan` checks, because it reads the host beyond its hardware."""
    s = spec.spec
    checks = ["the Docker daemon"]
    if s.loadbalancer.enabled:
        checks.append("nginx and its stream module")
    checks.append("ports in use")
    if s.sysctl.profile != "none":
        checks.append("/proc/sys")
    if s.tracker.enabled:
        checks.append("the tracker")
    return checks


def _show(plan, as_json: bool, out: str | None, verbose: bool, extra: dict | None = None) -> None:
    data = plan_data(plan, extra)
    if out:
        Path(out).write_text(dumps(data) + "\n")
    show_plan(plan, data, as_json, verbose)
    if not as_json:
        if out and not plan.problems:
            click.echo(f"\nSaved the plan to {out}; apply exactly it with: conduit apply --plan {out}")


def _exit_for(plan, detailed: bool) -> None:
    if plan.problems:
        sys.exit(1)
    if detailed and plan.changes:
        sys.exit(2)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Plan against an empty host: no Docker, nginx or /proc/sys needed.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the plan, with a fingerprint of the observed host.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing changes, 2 when something does, 1 on error (an invalid spec too).")
@click.option("-v", "--verbose", is_flag=True, help="Show every step and node on its own, with full values, and resources that need no change.")
@click.pass_obj
def plan(opts: Options, file: str, offline: bool, as_json: bool, out: str | None, detailed_exitcode: bool, verbose: bool) -> None:
    """Show what `apply` would change on this host to make it match FILE. Changes nothing."""
    spec = load_spec(opts, file, invalid_code(detailed_exitcode))
    try:
        result = planning.plan(Apply(), spec, planning.nothing_observed()) if offline else plan_on_host(Apply(), spec, opts.host())[0]
    except DockerDown as exc:  # only a plan can do without Docker: the way out is said here, not by every door
        fail(f"{exc}, or plan with --offline")
    except DockerError as exc:
        fail(str(exc))
    extra = spec_fields(file, spec_text(file), offline)
    advice = capacity(spec)
    result.notes, result.warnings = advice.summary, advice.warnings + result.warnings
    if not offline:
        result.warnings += interrupted_warnings(opts)
    _show(result, as_json, out, verbose, extra)
    _exit_for(result, detailed_exitcode)


def _git_show(ref: str, file: str) -> str:
    try:
        return show_committed(ref, file, MAX_BYTES)
    except GitError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--git-ref", help="Compare FILE with its committed version at this ref (for example origin/main).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing changes, 2 when something does, 1 on error (an invalid spec too).")
@click.option("-v", "--verbose", is_flag=True, help="Show every step and node on its own, with full values, and resources that need no change.")
@click.pass_obj
def diff(opts: Options, files: tuple[str, ...], git_ref: str | None, as_json: bool, detailed_exitcode: bool, verbose: bool) -> None:
    """Print the plan between two specs: OLD NEW, or --git-ref REF FILE. Reads no host."""
    facts = opts.detected()
    bad_input = invalid_code(detailed_exitcode)
    if git_ref:
        if len(files) != 1:
            fail("with --git-ref give one FILE", bad_input)
        old_name, new_name = f"{git_ref}:{files[0]}", files[0]
        old_text = _git_show(git_ref, files[0])
    else:
        if len(files) != 2:
            fail("give OLD and NEW, or --git-ref REF FILE", bad_input)
        old_name, new_name = files
        try:
            old_text = Path(old_name).read_text()
        except OSError as exc:
            fail(f"{old_name}: cannot read: {exc.strerror}", bad_input)
    try:
        old = load_text(old_text, old_name, facts)
    except SpecError as exc:
        invalid(exc.lines(), bad_input)
    new = load_spec(opts, new_name, bad_input)
    result = planning.plan(Apply(), new, planning.as_applied(old, new))
    _show(result, as_json, None, verbose)
    _exit_for(result, detailed_exitcode)


def interrupted_warnings(opts: Options) -> list[str]:
    """Applies that never finished; a state that cannot be read is one warning, and the plan goes on."""
    try:
        state = read_state(opts.state_dir)
        if state is None:
            return []
        out = []
        for gen in state.history.interrupted():
            steps = state.history.journal(gen.id)
            last = f" after {steps[-1][3]} {steps[-1][1]} {steps[-1][2]} ({steps[-1][4]})" if steps else ""
            out.append(f"generation {gen.id} was interrupted{last}; the next apply converges from here")
        return out
    except StateError as exc:
        return [f"{exc}; the plan does not know the host's history"]
