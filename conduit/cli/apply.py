"""Change the host: apply a spec or a saved plan, list the generations, roll back to one."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import click
from conduit.cli.common import Options, confirm, fail, invalid, load_spec
from conduit.cli.plan import interrupted_warnings
from conduit.errors import DockerError, HostMoved, Locked, NotASavedPlan, SpecError
from conduit.engine import intents
from conduit.engine.intents import Door
from conduit.engine.reconcile import Reconciled, Request, reconciling
from conduit.features.alerts import notify
from conduit.plan.planner import Plan
from conduit.plan.saved import read_saved
from conduit.spec.load import spec_text
from conduit.spec.spec import ClusterSpec
from conduit.state.db import StateError, check_writable
from conduit.state.images import Images
from conduit.state.stores import open_state, read_state
from conduit.views.history import render_history
from conduit.views.report import print_plan


def _report_outcome(spec: ClusterSpec, outcome) -> None:
    for text in outcome.compromised:
        notify(spec, text)
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    if outcome.status == "succeeded":
        click.echo(f"Applied generation {outcome.generation}: the host matches the spec.")
    elif outcome.status == "rolled_back":
        click.echo(f"\nGeneration {outcome.generation} FAILED: {outcome.failure}", err=True)
        click.echo(f"Rolled back to {outcome.restored}. Data volumes and node keys were not touched. "
                   "Fix what the line above names (in the spec or on the host), then apply again.", err=True)  # fmt: skip
        notify(spec, f"apply of generation {outcome.generation} failed: {outcome.failure}. Rolled back to {outcome.restored}.")
    elif outcome.status == "failed" and outcome.rollback_failed:
        click.echo(f"error: {not_rolled_back(outcome)}", err=True)
        notify(spec, f"apply of generation {outcome.generation} failed and was not rolled back: {outcome.failure}")
    elif outcome.status == "failed":
        click.echo(f"error: {outcome.failure}", err=True)
        notify(spec, f"apply failed: {outcome.failure}")


def not_rolled_back(outcome) -> str:
    """Exit 4 in one line: what failed, why the host was not put back, where to look, what to do."""
    why = outcome.rollback_failed
    why = "for the same reason" if why in outcome.failure else f"({why})"
    return (f"generation {outcome.generation} failed: {outcome.failure}; the rollback to {outcome.restored} did not finish {why}; "
            f"the host is part way: `conduit status` shows each node and `conduit history` shows generation {outcome.generation} "
            "as failed; fix the cause and apply again, which converges from here")


def door(opts: Options, command: str, path: str | None, no_wait: bool, allow_new_identity: bool = False) -> Door:
    """Where the CLI's lines go (stdout, a wait for the lock on stderr) and whether it waits for the lock."""
    return Door(opts.host(), opts.detected(), f"conduit {command} {path or ''}".strip(), click.echo, wait=not no_wait,
                on_wait=partial(click.echo, err=True), allow_new_identity=allow_new_identity)  # fmt: skip


@dataclass(frozen=True)
class Asking:
    """How the CLI shows a plan and asks before it changes the host."""

    opts: Options
    auto_approve: bool
    verbose: bool = False
    question: str = "Apply these changes?"

    def show(self, plan: Plan) -> None:
        plan.warnings += interrupted_warnings(self.opts)
        print_plan(plan, self.verbose)

    def approve(self) -> None:
        confirm(self.auto_approve, self.question)


def reconciled(request: Request, asking: Asking) -> Reconciled:
    """One reconcile as the CLI runs it: the plan shown, then asked for, under the one lock. Exits 1
    on what stops it before any change (another apply holds the lock, Docker, the state)."""
    try:
        with reconciling(request) as pending:
            asking.show(pending.plan)
            outcome = pending.decide()
            if outcome is None:
                asking.approve()
                outcome = pending.run()
    except (Locked, DockerError, HostMoved, StateError) as exc:
        fail(str(exc))
    return outcome


def built(build: Callable[..., Request], *args) -> Request:
    """The request an intent builds; a spec that no longer loads is invalid input (exit 2)."""
    try:
        return build(*args)
    except SpecError as exc:
        invalid(exc.lines())
    raise AssertionError("unreachable")


def run_apply(request: Request, asking: Asking, epilogue: str | None = None) -> None:
    """Run one reconcile for the CLI: print what it did, exit with its code."""
    outcome = reconciled(request, asking)
    if outcome.status == "blocked":
        for problem in outcome.problems[len(outcome.plan.problems) :]:
            click.echo(f"error: {problem}", err=True)
        fail("nothing was changed; fix the problems above, then apply again")
    _report_outcome(request.spec, outcome)
    if epilogue and outcome.status in ("succeeded", "no-op"):
        click.echo(epilogue, err=True)
    sys.exit(outcome.exit_code)


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, exists=True), help="Apply exactly a plan saved by `conduit plan --out`; refused if the file was edited or the host moved since.")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Fail at once when another apply is running instead of waiting.")
@click.option("--allow-new-identity", is_flag=True, help="Apply a plan that gives a node a new key (another volume or data dir); the old key is backed up first.")
@click.option("-v", "--verbose", is_flag=True, help="Show every step and node on its own, with full values, and resources that need no change.")
@click.pass_obj
def apply(opts: Options, file: str | None, plan_file: str | None, auto_approve: bool, no_wait: bool, allow_new_identity: bool,
          verbose: bool) -> None:
    """Make the host match FILE, phase by phase, with health gates and automatic rollback.

    Exit codes: 0 applied (or nothing to do), 1 error before any change, 2 invalid input, 3 failed
    and rolled back, 4 failed and could not roll back (`conduit status` and `conduit history` show the host).
    """
    if plan_file:
        if file:
            fail("give a FILE or --plan, not both", 2)
        try:
            saved = read_saved(plan_file)
        except NotASavedPlan as exc:
            fail(str(exc), exc.code)
        how = door(opts, "apply", saved.spec_file, no_wait, allow_new_identity)
        run_apply(built(intents.apply_saved, how, saved), Asking(opts, auto_approve, verbose))
    elif file:
        spec = load_spec(opts, file)
        how = door(opts, "apply", file, no_wait, allow_new_identity)
        run_apply(intents.apply_spec(how, spec, spec_text(file), file), Asking(opts, auto_approve, verbose))
    else:
        fail("give a FILE or --plan", 2)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Every field of every generation in full.")
@click.option("--spec", "spec_of", type=int, metavar="N", help="Print the spec generation N applied, as it was recorded.")
@click.pass_obj
def history(opts: Options, as_json: bool, spec_of: int | None) -> None:
    """List the generations applied to this host."""
    try:
        state = read_state(opts.state_dir)
        gens = state.history.generations() if state else []
    except StateError as exc:
        fail(str(exc))
    if spec_of is not None:
        gen = next((g for g in gens if g.id == spec_of), None)
        if gen is None:
            fail(f"no generation {spec_of}; `conduit history` lists them", 2)
        if gen.outcome == "destroyed":  # it records only a comment naming the cluster
            fail(f"generation {spec_of} ({gen.outcome}) records no spec; `conduit history` lists the others", 2)
        click.echo(gen.spec_text, nl=not gen.spec_text.endswith("\n"))
        return
    images = {g.id: _images(state.images, g.id) for g in gens}
    if as_json:
        click.echo(json.dumps([{k: v for k, v in g.__dict__.items() if k != "spec_text"} | {"images": images[g.id]} for g in gens], indent=2))
        return
    if not gens:
        click.echo("No generations yet.")
        return
    click.echo(render_history(gens, images))


def _images(images: Images, gen: int) -> dict[str, dict]:
    """{node: image ID, digest, version} the nodes ran when generation `gen` succeeded ({} when it did not)."""
    try:
        return {node: {"image_id": r.image_id, "digest": r.digest, "version": r.version} for node, r in images.of_nodes(gen).items()}
    except StateError:
        return {}


@click.command()
@click.argument("generation", required=False, type=int)
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Fail at once when another apply is running.")
@click.option("--cluster", metavar="NAME", help="The cluster to roll back (needed when the state directory holds more than one).")
@click.pass_obj
def rollback(opts: Options, generation: int | None, auto_approve: bool, no_wait: bool, cluster: str | None) -> None:
    """Re-apply generation GENERATION (default: the last good generation of the cluster before its current one)."""
    try:
        check_writable(opts.state_dir)
        state = open_state(opts.state_dir)
        cluster = _rollback_cluster(state.history.clusters(), cluster)
        target = intents.rollback_target(state.history, generation, cluster)
        current = state.history.last_good(cluster)
    except StateError as exc:
        fail(str(exc))
    except intents.NoRollback as exc:
        fail(str(exc), 1 if exc.missing else 2)
    now = f" from generation {current.id}" if current is not None and current.id != target.id else ""
    click.echo(f"Rolling back{now} to generation {target.id} ({target.outcome}, spec {target.spec_hash[:12]})")
    how = door(opts, "rollback", target.spec_path, no_wait)
    run_apply(built(intents.roll_back, how, state.images, target), Asking(opts, auto_approve), epilogue="warning: " + intents.undo_warning(target.spec_path, target.id))


def _rollback_cluster(known: list[str], given: str | None) -> str | None:
    """The cluster a rollback is for: the one given, else the only one the history names."""
    if given is not None:
        if known and given not in known:  # generations from before clusters were named are every cluster's
            fail(f"no generation of cluster {given}; the state directory holds {', '.join(known) or 'no named cluster'}", 2)
        return given
    if len(known) > 1:
        fail(f"the state directory holds clusters {', '.join(known)}; give --cluster NAME", 2)
    return known[0] if known else None
