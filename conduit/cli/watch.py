"""`conduit watch`: follow a spec file or a git repository, and heal drift."""

from __future__ import annotations

import shutil
import sys
import urllib.parse
from pathlib import Path

import click

from conduit.cli.common import fail
from conduit.features.watch import Watcher, render_unit
from conduit.state.git import without_password
from conduit.state.db import StateError, check_writable


@click.command("watch")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--git", "git_url", help="Follow this git repository (URL or path) instead of a local file.")
@click.option("--ref", default="main", show_default=True, help="Branch or ref to follow with --git.")
@click.option("--path", "spec_path", default="cluster.yaml", show_default=True, help="The spec's path in the repository.")
@click.option("--interval", type=float, default=300, show_default=True, help="Seconds between re-reconciles that repair drift.")
@click.option("--git-credentials-file", "credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="A root-only file of `https://USER:TOKEN@host` lines for --git (git-credential-store format).")
@click.option("--poll", type=float, default=60, show_default=True, help="Seconds between fetches with --git.")
@click.option("--no-heal", is_flag=True, help="Only report drift found on an interval; still apply new specs.")
@click.option("--debounce", type=float, default=0.5, show_default=True, help="Quiet seconds after the last save before applying.")
@click.option("--print-unit", is_flag=True, help="Print a systemd unit that runs this watch, and exit.")
@click.option("--allow-new-identity", is_flag=True, help="Apply specs that would give a node a new key (another volume or data dir).")
@click.pass_obj
def watch_command(opts, file, git_url, ref, spec_path, credentials, interval, poll, no_heal, debounce, print_unit, allow_new_identity) -> None:
    """Apply FILE (or a git repository) whenever it changes, and repair drift every --interval.

    An invalid or failing spec never takes the cluster down: it is reported, the last good
    generation keeps serving, and the same spec is not retried until it changes.
    """
    if bool(file) == bool(git_url):
        fail("give a FILE or --git URL", 2)
    if print_unit:
        argv = [shutil.which("conduit") or "/usr/local/bin/conduit", "watch"]
        argv += _git_args(git_url, ref, spec_path, poll, credentials) if git_url else [str(Path(file).resolve())]
        argv += ["--interval", str(interval)] + (["--no-heal"] if no_heal else [])
        argv += ["--allow-new-identity"] if allow_new_identity else []
        env = {"CONDUIT_STATE_DIR": str(Path(opts.state_dir).resolve())}
        if opts.docker_host:
            env["DOCKER_HOST"] = opts.docker_host
        if str(opts.root) != "/":
            env["CONDUIT_ROOT"] = str(Path(opts.root).resolve())
        click.echo(render_unit(argv, env), nl=False)
        return
    try:
        check_writable(opts.state_dir)
    except StateError as exc:
        fail(str(exc))
    watcher = Watcher(opts.host(), opts.detected, heal=not no_heal, report=click.echo, allow_new_identity=allow_new_identity)
    watcher.install_signals()
    if git_url:
        watcher.watch_git(git_url, ref, spec_path, interval, poll, credentials)
    else:
        watcher.watch_file(Path(file), interval, debounce)
    click.echo("watch stopped")
    sys.exit(0)


CREDENTIALS_FILE = Path("/etc/conduit/secrets/git-credentials")


def _git_args(url: str, ref: str, spec_path: str, poll: float, credentials: Path | None) -> list[str]:
    """The unit's --git arguments: a URL's password goes to a root-only file the unit names, never into the unit."""
    public = without_password(url)
    if public != url and credentials is None:
        credentials = CREDENTIALS_FILE
        parts = urllib.parse.urlsplit(public)
        click.echo(f"warning: the password in the URL is not written into the unit; put `{parts.scheme}://USER:PASSWORD@{parts.netloc}` "
                   f"into {credentials} (root's, chmod 600), which the unit reads with --git-credentials-file", err=True)
    argv = ["--git", public, "--ref", ref, "--path", spec_path, "--poll", str(poll)]
    return argv + (["--git-credentials-file", str(Path(credentials).resolve())] if credentials else [])
