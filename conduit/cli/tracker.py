"""`conduit tracker run`: the per-country traffic tracker process that apply supervises."""

from __future__ import annotations

import click

from conduit.cli.common import Options, fail
from conduit.state.db import StateError
from conduit.tracker.process import run, settings


@click.group()
def tracker() -> None:
    """The per-country traffic tracker."""


@tracker.command("run")
@click.option("--cluster", required=True, expose_value=False, help="The cluster sampled: it names the process, which apply finds by its command line.")
@click.option("--metrics-ports", default="", help="Nodes' metrics ports on 127.0.0.1: 9090-9097 or 9090,9091.")
@click.option("--interface", default="auto")
@click.option("--source", type=click.Choice(["auto", "metrics", "capture"]), default="auto")
@click.option("--filter", "capture_filter", default="udp")
@click.option("--sample-seconds", type=int, default=10)
@click.option("--interval-seconds", type=float, default=300)
@click.option("--snaplen", type=int, default=96)
@click.option("--retention-days", type=int, default=30)
@click.option("--keep-addresses-hours", type=int, default=0)
@click.option("--no-geoip", is_flag=True)
@click.pass_obj
def tracker_run(opts: Options, **options) -> None:
    """Sample the cluster's per-country clients and traffic until stopped (run by apply)."""
    try:
        run(opts.state_dir, settings(**options))  # by the options' names, as the hosted tracker's from the spec
    except StateError as exc:
        fail(str(exc))
