"""Helpers around the spec and the shell: schema, init, completion."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from conduit.cli.common import Options
from conduit.render.init_spec import render_init
from conduit.spec.jsonschema import COMMITTED, schema_text
from conduit.spec.reference import reference_markdown


@click.command()
@click.option("--check", is_flag=True, help="Exit 1 when the committed schema differs from the models.")
@click.option("--markdown", is_flag=True, help="Print the spec reference page instead (docs/spec-reference.md).")
def schema(check: bool, markdown: bool) -> None:
    """Print the JSON Schema of the spec."""
    if markdown:
        click.echo(reference_markdown(), nl=False)
        return
    text = schema_text()
    if check:
        if not COMMITTED.exists() or COMMITTED.read_text() != text:
            click.echo(f"{COMMITTED} is out of date: run `conduit schema > {COMMITTED}`", err=True)
            sys.exit(1)
        click.echo(f"{COMMITTED} is up to date")
        return
    click.echo(text, nl=False)


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(opts: Options, output: str | None, force: bool) -> None:
    """Detect this machine's hardware and write a commented spec with recommended values."""
    text = render_init(opts.detected())
    if output is None:
        click.echo(text, nl=False)
        return
    target = Path(output)
    if target.exists() and not force:
        click.echo(f"error: {output} exists; use --force to overwrite it", err=True)
        sys.exit(1)
    target.write_text(text)
    click.echo(f"wrote {output}: set count and the image you want, then `conduit plan {output}` shows what apply would do")


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(conduit completion bash)"."""
    cls = get_completion_class(shell)
    root = click.get_current_context().find_root().command
    click.echo(cls(root, {}, "conduit", "_CONDUIT_COMPLETE").source())


COMMANDS = (schema, init, completion)
