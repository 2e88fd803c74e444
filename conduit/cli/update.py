"""conduit update: ask the registry now, and move the nodes to a new digest behind the tag, canary first."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from conduit.cli.common import Options, fail, invalid_code, load_spec
from conduit.cli.apply import Asking, door, run_apply
from conduit.errors import DockerError
from conduit.engine import intents
from conduit.engine.intent import Apply
from conduit.engine.observe import plan_on_host
from conduit.spec.load import spec_text
from conduit.views.report import update_lines


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Only ask: exit 0 when the nodes run what the tag means now, 2 when there is an update, 1 on error (an invalid spec too).")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Fail at once when another apply is running.")
@click.pass_obj
def update(opts: Options, file: str, check: bool, auto_approve: bool, no_wait: bool) -> None:
    """Ask the registry what FILE's image tag means now; move the nodes to a new digest, canary first.

    A canary that had clients must win them back (spec.updates) or every updated node returns to
    the old digest, on its own key. Exit codes as for apply; with --check, 0 none, 2 an update, 1 an error.
    """
    spec = load_spec(opts, file, invalid_code(check))
    if spec.spec.updates.policy == "off":
        # Under off the nodes follow Docker's own tag: `docker pull` it and apply.
        fail(f"{file}: spec.updates.policy is off, so the registry is never asked; set it to report or auto")
    if check:
        try:
            plan, _ = plan_on_host(Apply(take=False), spec, opts.host())
        except DockerError as exc:
            fail(str(exc))
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
        if plan.update is None:
            click.echo(f"{spec.spec.containers.image}: the nodes run what it means now.")
            return
        Console(highlight=False, soft_wrap=True).print("\n".join(update_lines(plan.update)).lstrip("\n"))
        sys.exit(2)
    run_apply(intents.take_update(door(opts, "update", file, no_wait), spec, spec_text(file), file), Asking(opts, auto_approve))


COMMANDS = (update,)
