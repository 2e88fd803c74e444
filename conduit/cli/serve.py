"""`conduit serve`: the host's agent (REST API, live dashboard, Prometheus exporter)."""

from __future__ import annotations

import shutil
import socket
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from conduit.errors import EXIT_INVALID
from conduit.cli.common import fail, load_spec
from conduit.cli.companion import Companion, NotStarted, start
from conduit.cli.watch import follow_flags, follow_options, git_args, target_of
from conduit.features.follow import SPEC_FILE, Target
from conduit.features.watch import render_unit
from conduit.features.watch_record import read_watch_status
from conduit.features.fleetstatus import TOKENS_FILE
from conduit.serve.auth import Limiter, bind_refusal, parse_proxies
from conduit.serve.fleet import FleetFiles

from conduit.state.git import git_revision, public_url
from conduit.state.db import Database, StateError
from conduit.state.tokens import Tokens

if TYPE_CHECKING:
    from conduit.serve.agent import Agent
    from conduit.serve.run import Watching
    from conduit.spec.spec import ClusterSpec

LOOPBACK_PROXY = "127.0.0.1,::1"


WORKTREE = "worktree"  # --git alone: FILE sits in a git work tree
THE_FILE = "file"  # --watch alone: watch FILE


@dataclass(frozen=True)
class Following:
    """What the agent serves and follows: FILE, or with --git URL the merged spec that watch writes."""

    file: str
    target: Target | None  # --git URL
    watching: bool
    worktree: bool  # --git alone


def _following(opts, file: str | None, watch: str | None, git: str | None, follow: dict) -> Following:
    """FILE, --watch [FILE] and --git [URL] read together; exits 2 on a contradiction."""
    url = git if git not in (None, WORKTREE) else None
    watched = file if watch == THE_FILE else watch
    if watched and file and Path(watched).resolve() != Path(file).resolve():
        fail("give the spec once: FILE or --watch FILE", EXIT_INVALID)
    if url:
        if watched or file:
            fail("--git URL follows a repository: give no FILE and no --watch FILE with it", EXIT_INVALID)
        target = target_of(None, url, follow["ref"], follow["spec_path"], None, None, follow["credentials"])
        return Following(str(Path(opts.state_dir) / SPEC_FILE), target, True, False)
    file = file or watched
    if not file:
        fail("give the spec: FILE, --watch FILE or --git URL", EXIT_INVALID)
    if not Path(file).is_file():
        fail(f"{file}: no such file; give the spec's path", EXIT_INVALID)
    return Following(file, None, bool(watch), git == WORKTREE)


def _watching(following: Following, interval: float, follow: dict) -> Watching | None:
    """`conduit watch`'s loop for what the agent follows (None when it only serves)."""
    if not following.watching:
        return None
    from conduit.serve.run import Watching

    return Watching(following.target or Path(following.file), interval, follow["debounce"], follow["poll"], follow["jitter"],
                    not follow["no_heal"], follow["allow_new_identity"])  # fmt: skip


def _unit_argv(following: Following, listen: str, port: int, interval: float, tls: tuple[str | None, str | None], behind_proxy: str | None,
               watch_interval: float, follow: dict) -> list[str]:  # fmt: skip
    argv = [shutil.which("conduit") or "/usr/local/bin/conduit", "serve"]
    argv += git_args(following.target, follow["poll"]) if following.target else [str(Path(following.file).absolute())]
    argv += ["--listen", listen, "--port", str(port), "--interval", str(interval)]
    if tls[0] and tls[1]:
        argv += ["--tls-cert", str(Path(tls[0]).resolve()), "--tls-key", str(Path(tls[1]).resolve())]
    if following.watching:
        argv += ([] if following.target else ["--watch"]) + ["--watch-interval", str(watch_interval)]
        argv += follow_flags(follow["no_heal"], follow["allow_new_identity"])
    return argv + (["--behind-proxy", behind_proxy] if behind_proxy else []) + (["--git"] if following.worktree else [])


def _fleet_args(fleet: FleetFiles | None) -> list[str]:
    return ["--fleet", str(fleet.fleet), "--fleet-tokens", str(fleet.tokens), "--host", fleet.host] if fleet else []


def _fleet_files(fleet_file: Path | None, tokens: Path, host_name: str | None) -> FleetFiles | None:
    if host_name and not fleet_file:
        fail("--host names this host in a fleet file; give --fleet FLEET too", EXIT_INVALID)
    return FleetFiles(fleet_file.resolve(), tokens, host=host_name or socket.gethostname()) if fleet_file else None


def _print_unit(opts, argv: list[str], watching: bool) -> None:
    env = {"CONDUIT_STATE_DIR": str(Path(opts.state_dir).resolve())}
    if opts.docker_host:
        env["DOCKER_HOST"] = opts.docker_host
    if str(opts.root) != "/":
        env["CONDUIT_ROOT"] = str(Path(opts.root).resolve())
    purpose = "the host's agent, its watcher and its tracker in one process" if watching else "the host's agent: REST API, dashboard and metrics"
    click.echo(render_unit(argv, env, "serve", purpose), nl=False)


def _follows_git(opts, file: str, git: bool) -> bool:
    """The spec follows git when --git says so, or when it sits in a git work tree that watch follows."""
    if git:
        return True
    return git_revision(file)[0] is not None and read_watch_status(opts.state_dir) is not None


def startup_lines(listen: str, port: int, tls: bool, behind_proxy: bool, watching: str | None, has_tokens: bool | None,
                  first_apply: bool = False) -> list[str]:  # fmt: skip
    """What `serve` says as it starts: where, whether TLS is on, how to make the token every request
    needs, and (`first_apply`: following a repository with nothing applied yet) what waits for the first apply."""
    host = listen if listen.startswith("[") or ":" not in listen else f"[{listen}]"
    url = f"{'https' if tls else 'http'}://{host}:{port}/"
    how = "TLS on" if tls else ("TLS off: a TLS proxy on this host fronts it" if behind_proxy else "TLS off")
    lines = [f"conduit agent at {url} ({how}): dashboard /, API /api/v1 (OpenAPI /openapi.json), metrics /metrics"]
    if watching:
        lines.append(f"watching {watching}: applied when it changes, drift healed")
    if first_apply:
        lines.append("nothing applied here yet: the Telegram bot and the budget, if the spec asks for them, start once its first apply lands")
    if has_tokens is False:
        lines.append("no tokens yet, and every request needs one: make one with `conduit tokens create NAME --role operator` "
                     "(or --role viewer to read only)")
    return lines


def _has_tokens(opts) -> bool | None:
    """Whether any token exists (None when the state cannot say)."""
    try:
        db = Database.reader(opts.state_dir)
        return bool(Tokens(db).all()) if db else False
    except StateError:
        return None


def _companion(agent: Agent, spec: ClusterSpec | None) -> Companion:
    """The bot and the budget beside the built agent, as the spec it follows asks (conduit.cli.companion);
    exits 1 when the spec at start-up asks for one that refuses, before anything listens."""
    try:
        return Companion(agent.spec.latest, lambda latest: start(agent, latest), spec)
    except NotStarted as exc:
        fail(str(exc))


def _proxies(listen: str, tls: bool, behind_proxy: str | None) -> frozenset[str]:
    """The proxies whose X-Forwarded-For is believed; exits 2 when the agent may not listen there so."""
    refusal = bind_refusal(listen, tls, bool(behind_proxy))
    if refusal:
        fail(refusal, EXIT_INVALID)
    try:
        return parse_proxies(behind_proxy) if behind_proxy else frozenset()
    except ValueError as exc:
        fail(f"{exc}; give IP addresses, comma separated", EXIT_INVALID)


def _stopped(*_) -> None:
    click.echo("agent stopped")
    sys.exit(0)


@click.command("serve")
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True))
@click.option("--listen", default="127.0.0.1", show_default=True, help="Address to listen on; off the loopback it needs TLS or --behind-proxy.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between observations of the host.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="Serve HTTPS with this certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="The certificate's private key (PEM).")
@click.option("--behind-proxy", is_flag=False, flag_value=LOOPBACK_PROXY, default=None, metavar="[ADDRESSES]",
              help="A TLS reverse proxy on this host fronts the agent: listen without TLS off the loopback, and believe "
                   "X-Forwarded-For only from these proxy addresses (comma separated; alone: 127.0.0.1,::1).")
@click.option("--git", is_flag=False, flag_value=WORKTREE, default=None, metavar="[URL]",
              help="Alone: FILE follows git (refuse writes that would diverge from the committed spec). With a URL (or a "
                   "repository's path): follow it as `conduit watch --git URL` does, in this process; the agent serves the merged "
                   "spec it applied (STATE/fleet-spec.yaml).")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Requests a second allowed per token and per client address (bursts of twice that).")
@click.option("--watch", is_flag=False, flag_value=THE_FILE, default=None, metavar="[FILE]",
              help="Also run `conduit watch FILE` in this process: apply FILE when it changes, heal drift, and run the spec's "
                   "tracker here (one daemon for the host).")
@click.option("--watch-interval", type=float, default=300, show_default=True, help="With --watch: seconds between re-reconciles that repair drift.")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also serve this fleet: its status at /fleet and /api/v1/fleet, its exporters for Prometheus at /api/v1/fleet/targets.")
@click.option("--fleet-tokens", type=click.Path(dir_okay=False, path_type=Path), default=TOKENS_FILE, show_default=True,
              help="With --fleet: the root-only file of the other agents' tokens and addresses: "
                   "`HOST: {viewer: TOKEN, operator: TOKEN, agent: URL}` (the bot's actions on HOST need its operator token).")
@click.option("--host", "host_name", help="With --fleet: this host's name in the fleet file (the bot asks its Agent, not its API) "
              "[default: the machine's host name]")
@click.option("--print-unit", is_flag=True, help="Print a systemd unit that runs this agent, and exit.")
@follow_options
@click.pass_obj
def serve_command(opts, file, listen, port, interval, tls_cert, tls_key, behind_proxy, git, rate, watch, watch_interval, fleet_file, fleet_tokens,
                  host_name, print_unit, **follow) -> None:  # fmt: skip
    """Serve FILE's cluster: a REST API under /api/v1 (OpenAPI at /openapi.json), live events, a
    dashboard at / and /metrics. Every request needs a token (`conduit tokens create`).

    With --watch (or --git URL) the agent is also the host's watcher and runs the spec's tracker:
    one process instead of three (not beside a `conduit watch` of the same host). `conduit serve
    --watch FILE` and `conduit serve FILE --watch` are the same."""
    if bool(tls_cert) != bool(tls_key):
        fail("give both --tls-cert and --tls-key", EXIT_INVALID)
    following = _following(opts, file, watch, git, follow)
    if following.watching and watch_interval <= 0:
        fail("--watch-interval must be above 0", EXIT_INVALID)
    fleet = _fleet_files(fleet_file, fleet_tokens, host_name)
    proxies = _proxies(listen, bool(tls_cert), behind_proxy)
    if print_unit:
        argv = _unit_argv(following, listen, port, interval, (tls_cert, tls_key), behind_proxy, watch_interval, follow)
        _print_unit(opts, argv + _fleet_args(fleet), following.watching)
        return
    file = following.file
    # An invalid spec stops here, exit 2, before anything listens; with --git URL there is none until the first apply.
    spec = load_spec(opts, file) if not following.target or Path(file).is_file() else None
    from conduit.serve.run import build, run  # uvicorn and the app's modules: not for --print-unit or a refusal

    limits = (Limiter(rate, 2 * rate), Limiter(rate, 2 * rate))
    # SIGTERM is how a service is stopped: before the agent listens, and again once uvicorn has shut
    # down and hands the signal back, it ends the command with exit 0 rather than killing it.
    signal.signal(signal.SIGTERM, _stopped)
    watching = (public_url(following.target.url) if following.target else file) if following.watching else None
    for line in startup_lines(listen, port, bool(tls_cert), behind_proxy, watching, _has_tokens(opts), spec is None):
        click.echo(line)
    sys.stdout.flush()  # a service's log (journald, a pipe) gets these lines now, not when the agent stops
    try:
        repository = public_url(following.target.url) if following.target else None
        agent = build(opts.host(), Path(file), opts.detected, interval, _follows_git(opts, file, following.worktree), limits, fleet,
                      repository)  # fmt: skip
        beside = _companion(agent, spec)  # started before the agent's threads (it may refuse), stopped after them
        try:
            run(agent, listen, port, (tls_cert, tls_key), proxies, _watching(following, watch_interval, follow))
        finally:
            beside.stop()
    except StateError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {listen}:{port}: {exc.strerror or exc}")

