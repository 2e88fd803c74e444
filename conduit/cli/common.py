"""What every command shares: the global options, one-line failures, loading a spec, asking before a change."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NoReturn
from pathlib import Path

import click

from conduit.drivers import hostfacts
from conduit.drivers.observe import HostAccess
from conduit.errors import EXIT_ERROR, EXIT_INVALID, SpecError
from conduit.spec.load import load_file
from conduit.spec.spec import ClusterSpec


@dataclass
class Options:
    """Global options every command shares, so a test or a second cluster can point anywhere."""

    state_dir: Path
    root: Path
    docker_host: str | None
    log_format: str

    def detected(self):
        # Hardware is the machine's own, whatever --root says the managed files live under.
        return hostfacts.detect("/")

    def host(self):
        return HostAccess(root=self.root, state_dir=self.state_dir, docker_host=self.docker_host)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line, no traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def invalid(lines: list[str], code: int = EXIT_INVALID) -> None:
    """Print a spec's problems, one line each, and stop with exit code 2 (or `code`)."""
    for line in lines:
        click.echo(line, err=True)
    sys.exit(code)


def invalid_code(detailed: bool) -> int:
    """Where exit 2 means "there are changes" (plan --detailed-exitcode, update --check), bad input is an error, 1."""
    return EXIT_ERROR if detailed else EXIT_INVALID


def load_spec(opts: Options, path: str, code: int = EXIT_INVALID) -> ClusterSpec:
    try:
        return load_file(path, opts.detected())
    except SpecError as exc:
        invalid(exc.lines(), code)
        raise AssertionError("unreachable")


def confirm(auto_approve: bool, question: str) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        fail("refusing to change the host without confirmation: pass --auto-approve")
    if not click.confirm(question, default=False):
        fail("cancelled; nothing was changed")
