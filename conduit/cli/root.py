"""The `conduit` command line: the root group and its global options; every command lives in its own module."""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path

import click

from conduit.cli.boundary import Boundary
from conduit.spec.policy_file import DEFAULT_PATH, ENV


# Each command's module, imported only when that command runs: a long-running process such as
# `conduit serve` holds only what its own command needs, and `--help` lists the commands from
# their first sentences here (each is its docstring's, tests/unit/test_cli.py checks).
COMMANDS = {
    "validate": ("plan:validate", "Check FILE against the spec language and this host; exit 2 when it is invalid."),
    "plan": ("plan:plan", "Show what `apply` would change on this host to make it match FILE."),
    "diff": ("plan:diff", "Print the plan between two specs: OLD NEW, or --git-ref REF FILE."),
    "apply": ("apply:apply", "Make the host match FILE, phase by phase, with health gates and automatic rollback."),
    "history": ("apply:history", "List the generations applied to this host."),
    "rollback": ("apply:rollback", "Re-apply generation GENERATION (default: the last good generation of the cluster before its current one)."),
    "schema": ("tools:schema", "Print the JSON Schema of the spec."),
    "init": ("tools:init", "Detect this machine's hardware and write a commented spec with recommended values."),
    "completion": ("tools:completion", 'Print the shell completion script: eval "$(conduit completion bash)".'),
    "update": ("update:update", "Ask the registry what FILE's image tag means now; move the nodes to a new digest, canary first."),
    "tracker": ("tracker:tracker", "The per-country traffic tracker."),
    "watch": ("watch:watch_command", "Apply FILE (or a git repository) whenever it changes, and repair drift every --interval."),
    "serve": (
        "serve:serve_command",
        "Serve FILE's cluster: a REST API under /api/v1 (OpenAPI at /openapi.json), live events, a dashboard at / and /metrics.",
    ),
    "tokens": ("tokens:tokens_group", "Bearer tokens for the agent's API: viewers read, operators read and write."),
    "status": ("status:status_command", "Nodes, clients, CPU and memory against limits, the front, countries, generation and drift."),
    "import-v1": ("keys:import_v1_command", "Write a spec that adopts a bash-manager install: same containers, same volumes, same keys."),
    "keys": ("keys:keys_group", "Back up and restore the nodes' identity keys (conduit_key.json in each data volume)."),
    "claim": ("keys:claim_command", "The Ryve claim QR code of node INDEX (default 1)."),
    "destroy": ("keys:destroy_command", "Remove everything the tool manages for FILE's cluster."),
    "alerts": ("alerts:alerts_group", "Telegram alerts for failed applies, rollbacks and repaired drift."),
    "telegram": ("telegram:telegram_group", "The Telegram bot: connect it to this host."),
    "fleet": ("fleet:fleet_group", "Many hosts from one repository: FLEET is a fleet.yaml naming each host's spec, ring and agent."),
}


class Commands(Boundary):
    """The root group: its commands are loaded by name, on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name][0].partition(":")
            # No pydantic plugin is used: pydantic's first model then skips reading every installed package's entry points.
            os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
            self.add_command(getattr(import_module(f"conduit.cli.{module}"), attr), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their first sentences, as click lists them, without loading any."""
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [(name, click.Command(name, help=summary).get_short_help_str(limit)) for name, (_, summary) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # only for --version: it is slow to import

    try:
        return version("conduit-reconciler")
    except PackageNotFoundError:
        return "0+unknown"


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"conduit, version {_version()}", color=ctx.color)
        ctx.exit()


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version, help="Show the version and exit.")
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
    help="Docker daemon endpoint (default: DOCKER_HOST, else the local socket).",
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
    # What commands need, loaded only when one runs: `--help` and `--version` stay fast.
    from conduit.cli.common import Options
    from conduit.state.db import report_recoveries
    from conduit import log

    if policy:
        # Every spec this process and its children load, from a file, git or a saved plan, meets it.
        os.environ[ENV] = policy
    # People read the step lines on stdout; every event is still there with --log-format json.
    log.configure(log_format, "debug" if debug else "info" if log_format == "json" else "warning")
    # A damaged state database restored from its copy, or started afresh: one line, once.
    report_recoveries(lambda message: click.echo(f"warning: {message}", err=True))
    ctx.obj = Options(state_dir=state_dir, root=root, docker_host=docker_host, log_format=log_format)

