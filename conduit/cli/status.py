"""`conduit status`: the cluster at a glance."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.live import Live

from conduit.cli.common import fail, load_spec
from conduit.drivers.docker import EngineError
from conduit.features.status import collect
from conduit.state.store import StateError
from conduit.views.status import render_prometheus, render_text, to_json


@click.command("status")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--prometheus", is_flag=True, help="Print the cluster's metrics in the Prometheus text format.")
@click.option("--watch", "refresh", type=float, default=None, is_flag=False, flag_value=2.0, help="Refresh in place every N seconds (default 2), like top.")
@click.option("--no-drift", is_flag=True, help="Skip the drift check (it observes the whole host).")
@click.pass_obj
def status_command(opts, file, as_json, prometheus, refresh, no_drift) -> None:
    """Nodes, clients, CPU and memory against limits, the front, countries, generation and drift."""
    doc = load_spec(opts, file)
    host = opts.host()

    def gather() -> dict:
        try:
            return collect(doc, host, drift=not no_drift)
        except (EngineError, StateError) as exc:
            fail(str(exc))
        raise AssertionError("unreachable")

    if as_json:
        click.echo(to_json(gather()))
    elif prometheus:
        click.echo(render_prometheus(gather()), nl=False)
    elif refresh:
        with Live(render_text(gather()), auto_refresh=False, screen=False) as live:
            try:
                while True:
                    time.sleep(refresh)
                    live.update(render_text(gather()), refresh=True)
            except KeyboardInterrupt:
                pass
    else:
        Console(highlight=False).print(render_text(gather()))
