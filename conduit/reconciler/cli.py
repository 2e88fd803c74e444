"""The `conduit` command line."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from conduit.reconciler import hostfacts, logs
from conduit.reconciler.load import SpecError, load_file
from conduit.schemas.spec import ClusterSpec

EXIT_INVALID = 2


def _version() -> str:
    try:
        return version("conduit-reconciler")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Options:
    """Global options every command shares, so a test or a second cluster can point anywhere."""

    state_dir: Path
    root: Path
    docker_host: str | None
    log_format: str

    def detected(self):
        return hostfacts.detect(self.root)


def invalid(lines: list[str]) -> None:
    """Print a spec's problems, one line each, and stop with exit code 2."""
    for line in lines:
        click.echo(line, err=True)
    sys.exit(EXIT_INVALID)


def load_spec(opts: Options, path: str) -> ClusterSpec:
    try:
        return load_file(path, opts.detected())
    except SpecError as exc:
        invalid(exc.lines())
        raise AssertionError("unreachable")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), "--version", prog_name="conduit")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/var/lib/conduit",
    show_default=True,
    envvar="CONDUIT_STATE_DIR",
    help="Where generations, the journal and the lock live.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default="/",
    show_default=True,
    envvar="CONDUIT_ROOT",
    help="Host filesystem root for the files the tool manages and for /proc/sys.",
)
@click.option(
    "--docker-host",
    envvar="DOCKER_HOST",
    default=None,
    help="Docker engine endpoint (default: DOCKER_HOST, else the local socket).",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="Format of the structured events written to stderr.",
)
@click.pass_context
def main(ctx: click.Context, state_dir: Path, root: Path, docker_host: str | None, log_format: str) -> None:
    """Make a host running Psiphon Conduit nodes match one cluster.yaml."""
    logs.configure(log_format)
    ctx.obj = Options(state_dir=state_dir, root=root, docker_host=docker_host, log_format=log_format)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def validate(opts: Options, file: str) -> None:
    """Check FILE against the spec language and this host; exit 2 when it is invalid."""
    spec = load_spec(opts, file)
    count = spec.spec.containers.count
    click.echo(f"{file}: valid ({spec.metadata.name}: {count} container{'s' if count != 1 else ''})")


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 when the committed schema differs from the models.")
def schema(check: bool) -> None:
    """Print the JSON Schema of the spec."""
    from conduit.schemas.jsonschema import COMMITTED, schema_text

    text = schema_text()
    if check:
        if not COMMITTED.exists() or COMMITTED.read_text() != text:
            click.echo(f"{COMMITTED} is out of date: run `conduit schema > {COMMITTED}`", err=True)
            sys.exit(1)
        click.echo(f"{COMMITTED} is up to date")
        return
    click.echo(text, nl=False)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(opts: Options, output: str | None, force: bool) -> None:
    """Detect this machine's hardware and write a commented spec with recommended values."""
    from conduit.renderers.init_spec import render_init

    text = render_init(opts.detected())
    if output is None:
        click.echo(text, nl=False)
        return
    target = Path(output)
    if target.exists() and not force:
        click.echo(f"error: {output} exists; use --force to overwrite it", err=True)
        sys.exit(1)
    target.write_text(text)
    click.echo(f"wrote {output}")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(conduit completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    click.echo(cls(main, {}, "conduit", "_CONDUIT_COMPLETE").source())
