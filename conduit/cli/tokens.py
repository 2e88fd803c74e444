"""`conduit tokens`: who may call the agent (`conduit serve`), and with which role."""

from __future__ import annotations

import time

import click

from conduit.cli.common import fail
from conduit.serve.auth import ROLES, digest, new_token
from conduit.state.db import Database, StateError, check_writable
from conduit.state.tokens import Tokens


def _tokens(opts) -> Tokens:
    try:
        check_writable(opts.state_dir)
        return Tokens(Database(opts.state_dir))
    except StateError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


@click.group("tokens")
def tokens_group() -> None:
    """Bearer tokens for the agent's API: viewers read, operators read and write."""


@tokens_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer: read only; operator: read and write (apply, rollback, restart).")
@click.pass_obj
def create(opts, name: str, role: str) -> None:
    """Make a token NAME and print it once; only its digest is kept."""
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
        fail("a token name is letters, digits, '-', '_' and '.', at most 64", 2)
    token = new_token()
    try:
        made = _tokens(opts).add(name, role, digest(token))
    except StateError as exc:
        fail(str(exc))
    if not made:
        fail(f"a token named {name} exists already; revoke it first", 2)
    click.echo(token)
    click.echo(f"token {name} ({role}) created; it is shown only this once: send it as 'Authorization: Bearer TOKEN'", err=True)


@tokens_group.command("list")
@click.pass_obj
def list_tokens(opts) -> None:
    """The tokens by name, with their role and when they were made (never the tokens themselves)."""
    try:
        db = Database.reader(opts.state_dir)
        rows = Tokens(db).all() if db else []
    except StateError as exc:
        fail(str(exc))
    if not rows:
        click.echo("No tokens; make one with `conduit tokens create NAME --role viewer` (or --role operator).")
    for name, role, created in rows:
        click.echo(f"{name}\t{role}\t{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(created))}")


@tokens_group.command("revoke")
@click.argument("name")
@click.pass_obj
def revoke(opts, name: str) -> None:
    """Remove token NAME; the agent refuses it within two seconds."""
    try:
        gone = _tokens(opts).revoke(name)
    except StateError as exc:
        fail(str(exc))
    if not gone:
        fail(f"no token named {name}; `conduit tokens list` names them")
    click.echo(f"token {name} revoked")
