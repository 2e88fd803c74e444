"""The one error boundary of the CLI: any fault a command does not handle itself ends in one
line on stderr, `error: <what happened>; <what to do>`, and an exit code, never a traceback
(`conduit --debug …` shows the traceback as well)."""

from __future__ import annotations

import re
import sys
import traceback

import click

from conduit.errors import (
    EXIT_ERROR,
    EXIT_INVALID,
    AlertError,
    CompartmentProblem,
    DockerError,
    GitError,
    HostileEntry,
    HostMoved,
    KeyProblem,
    Locked,
    NotASavedPlan,
    PolicyError,
    SpecError,
)

# Faults whose message is already one line that says what to do.
ONE_LINE = (DockerError, HostileEntry, KeyProblem, CompartmentProblem, HostMoved, AlertError, GitError, Locked, PolicyError)
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def fault_lines(exc: Exception, docker_host: str | None = None) -> tuple[list[str], int]:
    """What to print for a fault that reached the boundary, and the exit code."""
    if isinstance(exc, SpecError):
        return exc.lines(), EXIT_INVALID
    if isinstance(exc, NotASavedPlan):
        return [f"error: {exc}"], exc.code
    if isinstance(exc, ONE_LINE):
        return [f"error: {exc}"], EXIT_ERROR
    if _docker_fault(exc):
        from conduit.drivers.docker import diagnose  # loads the Docker drivers: only once they have failed

        return [f"error: {diagnose(docker_host or DEFAULT_ENGINE, exc)}"], EXIT_ERROR
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return [f"error: {where}{exc.strerror or exc}; check the path and its permissions (run as root?)"], EXIT_ERROR
    text = " ".join(str(exc).split()) or "no message"
    return [f"error: unexpected {type(exc).__name__}: {text}; run again with --debug for the traceback"], EXIT_ERROR


def _docker_fault(exc: Exception) -> bool:
    """A fault of a Docker call (conduit.drivers.dockerapi.failures: its own, the Docker SDK's, requests').
    Nothing is imported to ask: the SDK is only loaded through the Docker drivers, so a command that
    never loaded them cannot have raised their faults, and `--version` stays fast."""
    dockerapi = sys.modules.get("conduit.drivers.dockerapi")
    return dockerapi is not None and isinstance(exc, dockerapi.failures())


def usage_line(exc: click.exceptions.UsageError) -> str:
    """A command line click refused, in the one line every fault ends in (exit 2), instead of click's
    usage, hint and `Error:` lines."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    message = re.sub(r"\. \(?Did you mean (.*?)\)?$", r" (did you mean \1)", message)  # click's two wordings of a guess
    where = exc.ctx.command_path if exc.ctx is not None else "conduit"
    return f"error: {message[:1].lower()}{message[1:]}; see `{where} --help`"


def _refused(ctx: click.Context, exc: click.exceptions.UsageError) -> None:
    """End a refused command line in its one line; a group called bare shows its help, as click does."""
    if not isinstance(exc, click.exceptions.NoArgsIsHelpError):
        click.echo(usage_line(exc), err=True)
        ctx.exit(exc.exit_code)


class Boundary(click.Group):
    """A click group whose commands end in one line and an exit code whatever they raise."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.UsageError as exc:  # the group's own options (a command's are the invoke's)
            _refused(ctx, exc)
            raise

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.UsageError as exc:
            _refused(ctx, exc)
            raise
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # --help, Ctrl-C, a file click could not open: click reports them itself
        except Exception as exc:  # noqa: BLE001 - this is the one place every fault ends
            if ctx.params.get("debug"):
                traceback.print_exc()
            lines, code = fault_lines(exc, ctx.params.get("docker_host"))
            for line in lines:
                click.echo(line, err=True)
            ctx.exit(code)
