"""The `conduit` command line: the root group and its global options; every command lives in its own module."""

from __future__ import annotations

import os
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from conduit.cli.boundary import Boundary
from conduit.cli.common import Options
from conduit.spec.policy import DEFAULT_PATH, ENV
from conduit.state.db import report_recoveries
from conduit.views import logs


# Each command's module, imported only when that command runs (or help lists them all): a
# long-running process such as `conduit serve` holds only what its own command needs.
COMMANDS = {
    **{name: f"plan:{name}" for name in ("validate", "plan", "diff", "apply", "history", "rollback")},
    **{name: f"tools:{name}" for name in ("schema", "init", "completion")},
    "update": "update:update",
    "tracker": "tracker:tracker",
    "watch": "watch:watch_command",
    "serve": "serve:serve_command",
    "tokens": "tokens:tokens_group",
    "status": "status:status_command",
    "import-v1": "keys:import_v1_command",
    "keys": "keys:keys_group",
    "claim": "keys:claim_command",
    "destroy": "keys:destroy_command",
    "alerts": "alerts:alerts_group",
}


class Commands(Boundary):
    """The root group: its commands are loaded by name, on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            self.add_command(getattr(import_module(f"conduit.cli.{module}"), attr), cmd_name)
        return self.commands.get(cmd_name)


def _version() -> str:
    try:
        return version("conduit-reconciler")
    except PackageNotFoundError:
        return "0+unknown"


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
@click.option(
    "--policy",
    type=click.Path(dir_okay=False),
    envvar=ENV,
    default=None,
    help=f"The host policy: what a spec may choose on this host (default {DEFAULT_PATH}; built-in defaults when absent).",
)
@click.option("--debug", is_flag=True, help="On a fault, show the traceback too, and every debug event.")
@click.pass_context
def main(ctx: click.Context, state_dir: Path, root: Path, docker_host: str | None, log_format: str, policy: str | None, debug: bool) -> None:
    """Make a host running Psiphon Conduit nodes match one cluster.yaml.

    Exit codes: 0 ok, 1 error before any change, 2 invalid input, 3 failed and rolled back,
    4 failed and could not roll back (`conduit status` and `conduit history` show the host).
    """
    if policy:
        # Every spec this process and its children load, from a file, git or a saved plan, meets it.
        os.environ[ENV] = policy
    # People read the step lines on stdout; every event is still there with --log-format json.
    logs.configure(log_format, "debug" if debug else "info" if log_format == "json" else "warning")
    # A damaged state database restored from its copy, or started afresh: one line, once.
    report_recoveries(lambda message: click.echo(f"warning: {message}", err=True))
    ctx.obj = Options(state_dir=state_dir, root=root, docker_host=docker_host, log_format=log_format)

