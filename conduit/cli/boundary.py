"""The one error boundary of the CLI: any fault a command does not handle itself ends in one
line on stderr, `error: <what happened>; <what to do>`, and an exit code, never a traceback
(`conduit --debug …` shows the traceback as well)."""

from __future__ import annotations

import traceback

import click
import docker.errors
import requests.exceptions

from conduit.cli.common import EXIT_INVALID
from conduit.drivers.docker import EngineError, diagnose
from conduit.drivers.keys import KeyProblem
from conduit.drivers.volume import HostileEntry
from conduit.engine.apply import EXIT_ERROR
from conduit.engine.compartment import CompartmentProblem
from conduit.engine.planning import HostMoved
from conduit.features.alerts import AlertError
from conduit.plan.saved import NotASavedPlan
from conduit.spec.load import SpecError
from conduit.spec.policy import PolicyError
from conduit.state.git import GitError
from conduit.state.lock import Locked

# Faults whose message is already one line that says what to do.
ONE_LINE = (EngineError, HostileEntry, KeyProblem, CompartmentProblem, HostMoved, AlertError, GitError, Locked, PolicyError)
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def fault_lines(exc: Exception, docker_host: str | None = None) -> tuple[list[str], int]:
    """What to print for a fault that reached the boundary, and the exit code."""
    if isinstance(exc, SpecError):
        return exc.lines(), EXIT_INVALID
    if isinstance(exc, NotASavedPlan):
        return [f"error: {exc}"], exc.code
    if isinstance(exc, ONE_LINE):
        return [f"error: {exc}"], EXIT_ERROR
    if isinstance(exc, (docker.errors.DockerException, requests.exceptions.RequestException)):
        return [f"error: {diagnose(docker_host or DEFAULT_ENGINE, exc)}"], EXIT_ERROR
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return [f"error: {where}{exc.strerror or exc}; check the path and its permissions (run as root?)"], EXIT_ERROR
    text = " ".join(str(exc).split()) or "no message"
    return [f"error: unexpected {type(exc).__name__}: {text}; run again with --debug for the traceback"], EXIT_ERROR


class Boundary(click.Group):
    """A click group whose commands end in one line and an exit code whatever they raise."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors (exit 2), --help, Ctrl-C: click reports them itself
        except Exception as exc:  # noqa: BLE001 - this is the one place every fault ends
            if ctx.params.get("debug"):
                traceback.print_exc()
            lines, code = fault_lines(exc, ctx.params.get("docker_host"))
            for line in lines:
                click.echo(line, err=True)
            ctx.exit(code)
