"""The whole command line, fed mutated specs: `validate`, `plan --offline` and `diff` answer with
a result or one line per problem and exit 2, never a traceback.

CONDUIT_CLI_EXAMPLES sets the number of examples, shared evenly by the commands, each a test of its own so
that the suite's workers run them side by side (CI runs 10,000).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from conduit.cli.root import main
from tests.helpers import EXAMPLE
from tests.strategies import mutated_examples

EXAMPLES = int(os.environ.get("CONDUIT_CLI_EXAMPLES") or (10_000 if os.environ.get("CI") == "true" else 300))
COMMANDS = [["validate"], ["plan", "--offline"], ["plan", "--offline", "--json"], ["diff", str(EXAMPLE)]]
# Hardware given, so every example is judged against the same host whatever machine runs it.
HOST = {"vcpus": 2, "memory": "4GiB", "nic_mbps": 1000, "nofile_limit": 20000}
FOLDER = Path(tempfile.mkdtemp(prefix="conduit-cli-properties-"))
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: the pure-Python emitter took a third of each example


def _with_host(data):
    if isinstance(data, dict) and isinstance(data.get("spec"), dict) and "host" not in data["spec"]:
        data["spec"]["host"] = dict(HOST)
    return data


@pytest.mark.parametrize("command", COMMANDS, ids=["validate", "plan", "plan-json", "diff"])
@given(mutated_examples().map(_with_host))
@settings(max_examples=max(1, EXAMPLES // len(COMMANDS)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_cli_never_shows_a_traceback(command, data):
    path = FOLDER / "cluster.yaml"
    path.write_text(yaml.dump(data, Dumper=DUMPER, sort_keys=False, allow_unicode=True))
    result = CliRunner().invoke(main, [*command, str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert lines and all(re.match(rf"^{re.escape(str(path))}:\d+:\d+: ", line) for line in lines), lines
