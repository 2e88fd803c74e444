"""`conduit status`: the cluster at a glance."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

from conduit.errors import EXIT_INVALID, DockerError, SpecError
from conduit.cli.common import fail, invalid
from conduit.features.status import collect
from conduit.spec.compose import ComposeError
from conduit.spec.load import compose_text, load_file, load_text, read_spec_text
from conduit.spec.spec import ClusterSpec
from conduit.state.db import Database, StateError
from conduit.state.history import History, running
from conduit.views.status import render_prometheus, to_json


CTRL_C_LOOK = 0.1  # seconds between looks for a Ctrl-C while a watch waits for its next frame


@click.command("status")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--prometheus", is_flag=True, help="Print the cluster's metrics in the Prometheus text format.")
@click.option("--watch", "refresh", default=None, is_flag=False, flag_value="2", metavar="[SECONDS]",
              help="Refresh in place every SECONDS (default 2), like top; `--watch FILE` and `FILE --watch` are the same.")
@click.option("--no-drift", is_flag=True, help="Skip the drift check (it observes the whole host).")
@click.pass_obj
def status_command(opts, file, as_json, prometheus, refresh, no_drift) -> None:
    """Nodes, clients, CPU and memory against limits, the front, countries, generation and drift.

    A spec that does not load is when the host is most worth seeing: it is shown as the last
    generation's spec describes it, and the spec's error ends the output (exit 2)."""
    refresh, file = _refresh_and_file(refresh, file)
    spec, spec_error = _spec_or_last_applied(opts, file)
    host = opts.host()

    def gather() -> dict:
        try:
            data = collect(spec, host, drift=not no_drift)
        except (DockerError, StateError) as exc:
            fail(str(exc))
        if spec_error:
            data["spec_error"] = spec_error
        return data

    if as_json:
        click.echo(to_json(gather()))
    elif prometheus:
        click.echo(render_prometheus(gather()), nl=False)
    elif refresh:
        from rich.live import Live  # the table's, not --json's: rich is loaded only to draw it
        from conduit.views.status_table import render_text

        with _ctrl_c_asked() as asked, Live(render_text(gather()), auto_refresh=False, screen=False) as live:
            while not _wait_unless(asked, refresh):
                live.update(render_text(gather()), refresh=True)
    else:
        from rich.console import Console
        from conduit.views.status_table import render_text

        Console(highlight=False).print(render_text(gather()))
    if spec_error:
        fail(spec_error, EXIT_INVALID)


@contextmanager
def _ctrl_c_asked() -> Iterator[list]:
    """Ctrl-C ends the watch after the frame being drawn, so it never lands inside the drawing and the
    terminal gets its cursor back; a second Ctrl-C aborts as usual. The handler only appends to a
    list: it runs between any two steps of this thread, where a lock it waited on could be held."""
    asked: list = []
    before = signal.getsignal(signal.SIGINT)

    def stop(signum, frame) -> None:
        asked.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, stop)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, before)


def _wait_unless(asked: list, seconds: float) -> bool:
    """Sleep `seconds`, or less when Ctrl-C is asked meanwhile: whether it was."""
    end = time.monotonic() + seconds
    while not asked and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, CTRL_C_LOOK))
    return bool(asked)


def _cluster_named(file: str) -> str | None:
    """metadata.name as FILE (merged on its bases) writes it, when it parses at all; None when it cannot tell."""
    try:
        data, _ = compose_text(read_spec_text(file), file)
        name = data["metadata"]["name"]
    except (SpecError, ComposeError, KeyError, TypeError):  # a spec that did not load: any shape, or none
        return None
    return name if isinstance(name, str) else None


def _refresh_and_file(refresh: str | None, file: str | None) -> tuple[float | None, str]:
    """--watch takes optional seconds, so `status --watch FILE` would read FILE as them: a value that
    is no number is the spec, refreshed every 2 seconds."""
    seconds = None
    if refresh is not None:
        try:
            seconds = float(refresh)
        except ValueError:
            if file is not None:
                fail(f"--watch takes seconds, not {refresh!r}: `conduit status FILE --watch [SECONDS]`", EXIT_INVALID)
            seconds, file = 2.0, refresh
    if file is None:
        fail("give the spec: `conduit status FILE`", EXIT_INVALID)
    return seconds, file


def _spec_or_last_applied(opts, file: str) -> tuple[ClusterSpec, str | None]:
    """FILE's spec; when it does not load, the spec of the generation its cluster runs (else its last
    one) and the spec's error in one line. Without such a generation the error stops status (exit 2)."""
    try:
        return load_file(file, opts.detected()), None
    except SpecError as exc:
        lines = exc.lines()
    named = _cluster_named(file)
    try:
        db = Database.reader(opts.state_dir)
        generations = History(db).generations() if db else []
        # A spec too broken to name its cluster: the host's one cluster is the one shown; with several, none.
        one = len({g.cluster for g in generations}) == 1
        ours = [g for g in generations if g.cluster in (None, named)] if named else generations if one else []
        gen = (running(ours) or ours[-1]) if ours else None
    except StateError:
        gen = None
    if gen is None:
        invalid(lines)
    more = f" (and {len(lines) - 1} more: conduit validate {file})" if len(lines) > 1 else ""
    error = f"{lines[0]}{more}; shown as generation {gen.id} of {gen.cluster} describes the cluster; fix the spec file"
    try:
        return load_text(gen.spec_text, f"generation {gen.id}", opts.detected()), error
    except SpecError:
        invalid(lines)
    raise AssertionError("unreachable")
