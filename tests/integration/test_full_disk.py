"""A state directory whose filesystem fills up in the middle of an apply (a real tmpfs, filled
after the first container step on the real engine): the apply ends rolled back (3) or not (4),
never "error before any change" (1), and the generation is recorded as such, never `applying`."""

from __future__ import annotations

import errno
import json
import subprocess

import pytest
from click.testing import CliRunner

from conduit.cli.root import main
from conduit.execute.executor import HANDLERS
from conduit.plan.kinds import Kind
from harness import free_port_block
from tests.helpers import cli_env
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def small_state(tmp_path):
    """The state directory on a 4 MiB tmpfs of its own."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(state)], check=True)
    yield state
    subprocess.run(["umount", "-l", str(state)], check=True)


def fill(folder) -> None:
    """Write zeros into `folder` until its filesystem says it is full."""
    with open(folder / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_disk_that_fills_after_the_first_container_step_ends_3_or_4_and_is_recorded(
    tmp_path, small_state, docker_engine, standin_image, docker_cleanup, monkeypatch
):
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("f"), free_port_block(4))
    cluster.write(count=2, max_clients=40)
    first = cluster.apply()
    assert first.returncode == 0, first.stdout + first.stderr

    cluster.write(count=2, max_clients=50)  # both nodes are replaced, one batch after the other
    container_step = HANDLERS[Kind.CONTAINER]

    def then_fill(self, step):
        container_step(self, step)
        if not (small_state / "filler").exists():
            fill(small_state)

    monkeypatch.setitem(HANDLERS, Kind.CONTAINER, then_fill)
    args = cluster.argv("apply", "--auto-approve", str(cluster.spec))[3:]  # in this process, for the hook
    result = CliRunner().invoke(main, args, env=cli_env(), catch_exceptions=False)
    assert result.exit_code in (3, 4), result.output
    said = [line for line in result.stderr.splitlines() if "FAILED" in line or line.startswith("error:")]
    assert len(said) == 1 and "Traceback" not in result.output, result.stderr  # one line says what happened
    assert "StateError" in said[0] or "disk" in said[0], said

    (small_state / "filler").unlink()
    history = subprocess.run(cluster.argv("history", "--json"), capture_output=True, text=True, env=cli_env())
    assert history.returncode == 0, history.stderr
    outcomes = [g["outcome"] for g in json.loads(history.stdout)]
    assert outcomes[0] == "succeeded"
    assert outcomes[-1] == ("rolled_back" if result.exit_code == 3 else "failed"), outcomes
