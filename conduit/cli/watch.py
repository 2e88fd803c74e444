"""`conduit watch`: follow a spec file or a git repository, and heal drift."""

from __future__ import annotations

import shutil
import socket
import sys
import urllib.parse
from pathlib import Path

import click

from conduit.cli.common import fail
from conduit.log import structlog as load_structlog
from conduit.features.follow import Target, follow
from conduit.features.watch import Watcher, render_unit
from conduit.state.git import without_password
from conduit.state.db import StateError, check_writable


def follow_options(command):
    """The options of how to follow a spec that `conduit serve` takes as well (beside its own
    --watch [FILE] and --git [URL]), so that one process can be the agent and the watcher."""
    for option in reversed(FOLLOW_OPTIONS):
        command = option(command)
    return command


FOLLOW_OPTIONS = (
    click.option("--ref", default="main", show_default=True, help="Branch or ref to follow with --git."),
    click.option("--path", "spec_path", default="cluster.yaml", show_default=True, help="The spec's path in the repository."),
    click.option("--git-credentials-file", "credentials", type=click.Path(dir_okay=False, path_type=Path),
                 help="A root-only file of `https://USER:TOKEN@host` lines for --git (git-credential-store format)."),
    click.option("--poll", type=float, default=60, show_default=True, help="Seconds between fetches with --git."),
    click.option("--jitter", type=click.FloatRange(0, 1), default=0.2, show_default=True,
                 help="With --git: wait up to this share of --poll more, at random, so a fleet's hosts do not fetch at once."),
    click.option("--no-heal", is_flag=True, help="Only report drift found on an interval; still apply new specs."),
    click.option("--debounce", type=float, default=0.5, show_default=True, help="Quiet seconds after the last save before applying."),
    click.option("--allow-new-identity", is_flag=True, help="Apply specs that would give a node a new key (another volume or data dir)."),
)  # fmt: skip


@click.command("watch")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--git", "git_url", help="Follow this git repository (URL or path) instead of a local file.")
@click.option("--interval", type=float, default=300, show_default=True, help="Seconds between re-reconciles that repair drift.")
@click.option("--fleet", "fleet_path", help="With --git: the fleet file's path in the repository; the host's ring names the ref it follows.")
@click.option("--host", "host_name", help="With --fleet: this host's name in the fleet file.  [default: the machine's host name]")
@click.option("--print-unit", is_flag=True, help="Print a systemd unit that runs this watch, and exit.")
@follow_options
@click.pass_obj
def watch_command(opts, file, git_url, interval, fleet_path, host_name, print_unit, ref, spec_path, credentials, poll, jitter, no_heal, debounce,
                  allow_new_identity) -> None:  # fmt: skip
    """Apply FILE (or a git repository) whenever it changes, and repair drift every --interval.

    An invalid or failing spec never takes the cluster down: it is reported, the last good
    generation keeps serving, and the same spec is not retried until it changes.
    """
    target = target_of(file, git_url, ref, spec_path, fleet_path, host_name, credentials)
    if print_unit:
        argv = [shutil.which("conduit") or "/usr/local/bin/conduit", "watch"]
        argv += git_args(target, poll) if target else [str(Path(file).absolute())]
        argv += ["--interval", str(interval)] + follow_flags(no_heal, allow_new_identity)
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
    load_structlog()  # a long run logs from its threads: loaded while this is the only one, without rich (conduit.log)
    watcher = Watcher(opts.host(), opts.detected, heal=not no_heal, report=click.echo, allow_new_identity=allow_new_identity)
    watcher.install_signals()
    if target:
        follow(watcher, target, interval, poll, jitter)
    else:
        watcher.watch_file(Path(file), interval, debounce)
    click.echo("watch stopped")
    sys.exit(0)


def target_of(file, git_url, ref, spec_path, fleet_path, host_name, credentials) -> Target | None:
    """What --git and its options say to follow (None for a FILE); exits 2 on a contradiction."""
    if bool(file) == bool(git_url):
        fail("give a FILE or --git URL", 2)
    if (fleet_path or host_name) and not git_url:
        fail("--fleet and --host follow a repository; give --git URL too", 2)
    if not git_url:
        return None
    return Target(git_url, ref, spec_path, fleet_path, host_name or (socket.gethostname() if fleet_path else None), credentials)


def follow_flags(no_heal: bool, allow_new_identity: bool) -> list[str]:
    return (["--no-heal"] if no_heal else []) + (["--allow-new-identity"] if allow_new_identity else [])


CREDENTIALS_FILE = Path("/etc/conduit/secrets/git-credentials")


def git_args(target: Target, poll: float) -> list[str]:
    """The unit's --git arguments: a URL's password goes to a root-only file the unit names, never into the unit."""
    url, credentials = target.url, target.credentials
    public = without_password(url)
    if public != url and credentials is None:
        credentials = CREDENTIALS_FILE
        parts = urllib.parse.urlsplit(public)
        click.echo(f"warning: the password in the URL is not written into the unit; put `{parts.scheme}://USER:PASSWORD@{parts.netloc}` "
                   f"into {credentials} (root's, chmod 600), which the unit reads with --git-credentials-file", err=True)
    argv = ["--git", public, "--ref", target.ref, "--path", target.spec_path, "--poll", str(poll)]
    argv += ["--fleet", target.fleet, "--host", target.host or ""] if target.fleet else []
    return argv + (["--git-credentials-file", str(Path(credentials).resolve())] if credentials else [])
