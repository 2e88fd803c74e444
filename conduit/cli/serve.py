"""`conduit serve`: the host's agent (REST API, live dashboard, Prometheus exporter)."""

from __future__ import annotations

import shutil
import socket
import signal
import sys
from pathlib import Path

import click

from conduit.errors import EXIT_INVALID
from conduit.cli.common import fail, load_spec
from conduit.features.watch import read_watch_status, render_unit
from conduit.features.fleetstatus import TOKENS_FILE
from conduit.serve.auth import Limiter, bind_refusal, parse_proxies
from conduit.serve.fleet import FleetFiles

LOOPBACK_PROXY = "127.0.0.1,::1"
from conduit.state.git import git_revision
from conduit.state.db import Database, StateError
from conduit.state.tokens import Tokens


def _unit_argv(file: str, listen: str, port: int, interval: float, tls: tuple[str | None, str | None], behind_proxy: str | None, git: bool,
               watch_interval: float | None) -> list[str]:  # fmt: skip
    argv = [shutil.which("conduit") or "/usr/local/bin/conduit", "serve", str(Path(file).resolve()),
            "--listen", listen, "--port", str(port), "--interval", str(interval)]  # fmt: skip
    if tls[0] and tls[1]:
        argv += ["--tls-cert", str(Path(tls[0]).resolve()), "--tls-key", str(Path(tls[1]).resolve())]
    argv += ["--watch", "--watch-interval", str(watch_interval)] if watch_interval else []
    return argv + (["--behind-proxy", behind_proxy] if behind_proxy else []) + (["--git"] if git else [])


def _fleet_args(fleet: FleetFiles | None) -> list[str]:
    return ["--fleet", str(fleet.fleet), "--fleet-tokens", str(fleet.tokens), "--host", fleet.host] if fleet else []


def _fleet_files(fleet_file: Path | None, tokens: Path, host_name: str | None) -> FleetFiles | None:
    if host_name and not fleet_file:
        fail("--host names this host in a fleet file; give --fleet FLEET too", EXIT_INVALID)
    return FleetFiles(fleet_file.resolve(), tokens, host=host_name or socket.gethostname()) if fleet_file else None


def _print_unit(opts, argv: list[str]) -> None:
    env = {"CONDUIT_STATE_DIR": str(Path(opts.state_dir).resolve())}
    if opts.docker_host:
        env["DOCKER_HOST"] = opts.docker_host
    if str(opts.root) != "/":
        env["CONDUIT_ROOT"] = str(Path(opts.root).resolve())
    click.echo(render_unit(argv, env, "serve", "the host's agent: REST API, dashboard and metrics"), nl=False)


def _follows_git(opts, file: str, git: bool) -> bool:
    """The spec follows git when --git says so, or when it sits in a git work tree that watch follows."""
    if git:
        return True
    return git_revision(file)[0] is not None and read_watch_status(opts.state_dir) is not None


def startup_lines(listen: str, port: int, tls: bool, behind_proxy: bool, watching: str | None, has_tokens: bool | None) -> list[str]:
    """What `serve` says as it starts: where, whether TLS is on, and how to make the token every request needs."""
    host = listen if listen.startswith("[") or ":" not in listen else f"[{listen}]"
    url = f"{'https' if tls else 'http'}://{host}:{port}/"
    how = "TLS on" if tls else ("TLS off: a TLS proxy on this host fronts it" if behind_proxy else "TLS off")
    lines = [f"conduit agent at {url} ({how}): dashboard /, API /api/v1 (OpenAPI /openapi.json), metrics /metrics"]
    if watching:
        lines.append(f"watching {watching}: applied when it changes, drift healed")
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


def _companion(doc):
    """What starts the bot and the budget with the agent, or None; the bot's modules (and its
    library) are not imported for an agent that has neither."""
    telegram = doc.spec.alerts.telegram
    if (telegram is None or telegram.bot is None or not telegram.bot.poll) and doc.spec.budget is None:
        return None
    from conduit.bot.api import BotApiError
    from conduit.bot.run import start
    from conduit.errors import AlertError, PolicyError
    from conduit.spec.policy import load_policy

    try:
        policy = load_policy()[0]
    except PolicyError as exc:
        fail(str(exc))
    name = (telegram.server_label if telegram else None) or socket.gethostname()

    def begin(agent):
        try:
            return start(agent, doc, policy.telegram, name)
        except (BotApiError, AlertError, PolicyError) as exc:
            fail(str(exc))

    return begin


def _stopped(*_) -> None:
    click.echo("agent stopped")
    sys.exit(0)


@click.command("serve")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--listen", default="127.0.0.1", show_default=True, help="Address to listen on; off the loopback it needs TLS or --behind-proxy.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between observations of the host.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="Serve HTTPS with this certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="The certificate's private key (PEM).")
@click.option("--behind-proxy", is_flag=False, flag_value=LOOPBACK_PROXY, default=None, metavar="[ADDRESSES]",
              help="A TLS reverse proxy on this host fronts the agent: listen without TLS off the loopback, and believe "
                   "X-Forwarded-For only from these proxy addresses (comma separated; alone: 127.0.0.1,::1).")
@click.option("--git", is_flag=True, help="The spec follows git: refuse writes that would diverge from the committed spec.")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Requests a second allowed per token and per client address (bursts of twice that).")
@click.option("--watch", is_flag=True, help="Also run `conduit watch FILE` in this process: apply FILE when it changes, heal drift.")
@click.option("--watch-interval", type=float, default=300, show_default=True, help="With --watch: seconds between re-reconciles that repair drift.")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also serve this fleet: its status at /fleet and /api/v1/fleet, its exporters for Prometheus at /api/v1/fleet/targets.")
@click.option("--fleet-tokens", type=click.Path(dir_okay=False, path_type=Path), default=TOKENS_FILE, show_default=True,
              help="With --fleet: the root-only file of the other agents' tokens: `HOST: TOKEN` (a viewer's) or "
                   "`HOST: {viewer: TOKEN, operator: TOKEN}` (the bot's actions on HOST need its operator token).")
@click.option("--host", "host_name", help="With --fleet: this host's name in the fleet file (the bot asks its Agent, not its API) "
              "[default: the machine's host name]")
@click.option("--print-unit", is_flag=True, help="Print a systemd unit that runs this agent, and exit.")
@click.pass_obj
def serve_command(opts, file, listen, port, interval, tls_cert, tls_key, behind_proxy, git, rate, watch, watch_interval, fleet_file, fleet_tokens,
                  host_name, print_unit) -> None:  # fmt: skip
    """Serve FILE's cluster: a REST API under /api/v1 (OpenAPI at /openapi.json), live events, a
    dashboard at / and /metrics. Every request needs a token (`conduit tokens create`).

    With --watch the agent is also the host's watcher (one process instead of two; not beside a
    `conduit watch` of the same host)."""
    if bool(tls_cert) != bool(tls_key):
        fail("give both --tls-cert and --tls-key", EXIT_INVALID)
    if watch and watch_interval <= 0:
        fail("--watch-interval must be above 0", EXIT_INVALID)
    watch_interval = watch_interval if watch else None
    fleet = _fleet_files(fleet_file, fleet_tokens, host_name)
    refusal = bind_refusal(listen, bool(tls_cert), bool(behind_proxy))
    if refusal:
        fail(refusal, EXIT_INVALID)
    try:
        proxies = parse_proxies(behind_proxy) if behind_proxy else frozenset()
    except ValueError as exc:
        fail(f"{exc}; give IP addresses, comma separated", EXIT_INVALID)
    if print_unit:
        argv = _unit_argv(file, listen, port, interval, (tls_cert, tls_key), behind_proxy, git, watch_interval)
        _print_unit(opts, argv + _fleet_args(fleet))
        return
    doc = load_spec(opts, file)  # an invalid spec stops here, exit 2, before anything listens
    from conduit.serve.run import serve

    limits = (Limiter(rate, 2 * rate), Limiter(rate, 2 * rate))
    # SIGTERM is how a service is stopped: before the agent listens, and again once uvicorn has shut
    # down and hands the signal back, it ends the command with exit 0 rather than killing it.
    signal.signal(signal.SIGTERM, _stopped)
    for line in startup_lines(listen, port, bool(tls_cert), behind_proxy, file if watch else None, _has_tokens(opts)):
        click.echo(line)
    sys.stdout.flush()  # a service's log (journald, a pipe) gets these lines now, not when the agent stops
    try:
        serve(opts.host(), Path(file), opts.detected, listen, port, interval, (tls_cert, tls_key), _follows_git(opts, file, git), limits,
              watch_interval, proxies, fleet, _companion(doc))  # fmt: skip
    except StateError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {listen}:{port}: {exc.strerror or exc}")

