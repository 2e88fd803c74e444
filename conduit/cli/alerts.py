"""`conduit alerts test`: check the alert channel end to end."""

from __future__ import annotations

import click

from conduit.cli.common import fail, load_spec
from conduit.errors import AlertError
from conduit.features.alerts import send


@click.group("alerts")
def alerts_group() -> None:
    """Telegram alerts for failed applies, rollbacks and repaired drift."""


@alerts_group.command("test")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def alerts_test(opts, file) -> None:
    """Send a test message with FILE's alert settings."""
    spec = load_spec(opts, file)
    try:
        sent = send(spec, "conduit alerts test: this host can reach you.")
    except AlertError as exc:
        fail(str(exc))
    if not sent:
        fail(f"{file} configures no alerts (spec.alerts.telegram)")
    click.echo("sent")
