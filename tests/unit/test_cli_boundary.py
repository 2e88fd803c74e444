"""The CLI's one error boundary: whatever a command raises ends in one line on stderr and an
exit code; --debug adds the traceback; usage errors and invalid specs keep exit 2."""

from __future__ import annotations

import requests.exceptions
from click.testing import CliRunner

import conduit.cli.apply as cli_apply
import conduit.cli.plan as cli_plan
from conduit.cli.root import main
from tests.helpers import EXAMPLE

SOCKET = "unix:///nonexistent/conduit-test/docker.sock"


def test_any_fault_escaping_a_command_is_one_line(monkeypatch):
    def down(*args, **kwargs):
        raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))")

    monkeypatch.setattr(cli_plan, "plan_on_host", down)
    # The same diagnosis whether or not this machine has dockerd installed.
    monkeypatch.setattr("conduit.drivers.docker.dockerd_installed", lambda: True)
    result = CliRunner().invoke(main, ["--docker-host", SOCKET, "plan", str(EXAMPLE)])
    assert result.exit_code == 1 and not isinstance(result.exception, requests.exceptions.ConnectionError)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Docker daemon" in line and ";" in line
    debug = CliRunner().invoke(main, ["--debug", "--docker-host", SOCKET, "plan", str(EXAMPLE)])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr and debug.stderr.strip().splitlines()[-1] == line


def test_an_unexpected_fault_names_itself_and_the_debug_flag(tmp_path, monkeypatch):
    def broken(state_dir):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli_apply, "read_state", broken)
    result = CliRunner().invoke(main, ["--state-dir", str(tmp_path), "history"])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: unexpected ZeroDivisionError") and line.endswith("run again with --debug for the traceback")


def test_usage_errors_and_invalid_specs_keep_exit_2(tmp_path):
    assert CliRunner().invoke(main, ["apply", "--no-such-flag"]).exit_code == 2
    bad = tmp_path / "cluster.yaml"
    bad.write_text("kind: nonsense\n")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_refused_command_line_ends_in_one_line_with_exit_2():
    """As every fault does: `error: <what>; see `<command> --help``, not click's usage, hint and Error lines."""
    for args, line in (
        (["validate"], "error: missing argument 'FILE'; see `conduit validate --help`"),
        (["plan", "--verbos", "x.yaml"], "error: no such option '--verbos' (did you mean '--verbose'?); see `conduit plan --help`"),
        (["nosuch"], "error: no such command 'nosuch'; see `conduit --help`"),
        (["plan", "--bogus", "x.yaml"], "error: no such option '--bogus' (did you mean one of: '--out', '--verbose'?); see `conduit plan --help`"),
        (["--bogus", "plan"], "error: no such option '--bogus'; see `conduit --help`"),
        (["tokens", "create", "x"], "error: missing option '--role'. Choose from: viewer, operator; see `conduit tokens create --help`"),
    ):
        result = CliRunner().invoke(main, args, prog_name="conduit")
        assert (result.exit_code, result.stderr) == (2, line + "\n"), args
    bare = CliRunner().invoke(main, ["tokens"], prog_name="conduit")  # a group called bare shows its help, as click does
    assert bare.exit_code == 2 and bare.output.startswith("Usage: conduit tokens [OPTIONS] COMMAND [ARGS]...")
