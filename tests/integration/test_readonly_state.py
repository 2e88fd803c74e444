"""A state directory on a read-only mount is still read by the commands that only read."""

from __future__ import annotations

import subprocess

import pytest

from conduit.state.stores import open_state
from tests.helpers import CONDUIT, cli_env

pytestmark = pytest.mark.integration


@pytest.fixture
def readonly_state(tmp_path):
    state = tmp_path / "state"
    store = open_state(state)
    gen = store.history.begin("kind: x\n", "feedface0000", None, (None, None), "edge")
    store.history.finish(gen, "succeeded")
    mounted = tmp_path / "ro"
    mounted.mkdir()
    done = subprocess.run(["mount", "--bind", str(state), str(mounted)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root and mount): {done.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], check=True, capture_output=True)
        yield mounted
    finally:
        subprocess.run(["umount", str(mounted)], capture_output=True)


def test_history_reads_a_state_database_on_a_read_only_mount(readonly_state):
    done = subprocess.run([*CONDUIT, "--state-dir", str(readonly_state), "history", "--json"], capture_output=True, text=True,
                          env=cli_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"spec_hash": "feedface0000"' in done.stdout
    assert not list(readonly_state.glob("state.db-*"))  # nothing was written beside it
