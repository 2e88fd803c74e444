"""How an apply's end maps to its exit code, and an outcome record that a full disk refused once."""

from __future__ import annotations

import dataclasses

import pytest

from conduit.engine.apply import Outcome
from conduit.engine.reconcile import _finish
from conduit.state.db import StateError
from conduit.state.history import History
from conduit.state.stores import Stores, open_state


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (Outcome("no-op"), 0),
        (Outcome("succeeded", 2), 0),
        (Outcome("failed", 2, "key backup failed, nothing was changed"), 1),
        (Outcome("rolled_back", 2, "disk full", "generation 1"), 3),
        (Outcome("failed", 2, "disk full", "generation 1", rollback_failed="the journal could not be written"), 4),
    ],
)
def test_exit_codes(outcome, code):
    assert outcome.exit_code == code


class FullOnce(History):
    """A history whose disk is full until the backup copy is given back."""

    def finish(self, gen, outcome, reason=None):
        if self.db.backup_path.exists():
            raise StateError(f"state directory {self.db.dir}: cannot record the end of a generation: database or disk is full")
        super().finish(gen, outcome, reason)


def with_history(state: Stores, history: type[History]) -> Stores:
    return dataclasses.replace(state, history=history(state.db))


def test_the_outcome_is_recorded_after_freeing_the_backup_copy(tmp_path):
    state = with_history(open_state(tmp_path), FullOnce)
    gen = state.history.begin("spec", "h", None, (None, None), "edge")
    open_state(tmp_path).db.back_up()
    assert _finish(state, gen, "rolled_back", "disk full") == []
    assert [(g.id, g.outcome) for g in open_state(tmp_path).history.generations()] == [(gen, "rolled_back")]


def test_an_outcome_that_cannot_be_recorded_is_a_warning_not_a_fault(tmp_path):
    class Full(History):
        def finish(self, gen, outcome, reason=None):
            raise StateError("state directory s: cannot record the end of a generation: database or disk is full")

    state = with_history(open_state(tmp_path), Full)
    gen = state.history.begin("spec", "h", None, (None, None), "edge")
    (warning,) = _finish(state, gen, "failed", "disk full")
    assert warning.startswith(f"generation {gen} ended failed, but the state could not record it: ")


def test_steps_side_by_side_stay_within_the_sdk_pool_on_a_host_only_the_sdk_speaks_to():
    import threading
    from types import SimpleNamespace

    from conduit.engine import apply as apply_module

    from conduit.drivers.docker import SDK_SIDE_BY_SIDE, SIDE_BY_SIDE, side_by_side

    running, most, lock = [0], [0], threading.Lock()
    # Each step waits for a full pool's worth: a pool that starts its threads slowly still shows its size.
    together = threading.Barrier(SDK_SIDE_BY_SIDE)

    def step(_):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            together.wait(timeout=10)
        except threading.BrokenBarrierError:  # fewer side by side than the pool allows: the count below says so
            pass
        with lock:
            running[0] -= 1

    assert side_by_side("ssh://root@vps") == side_by_side("https://vps:2376") == SDK_SIDE_BY_SIDE
    assert side_by_side("unix:///var/run/docker.sock") == side_by_side("tcp://127.0.0.1:2375") == SIDE_BY_SIDE
    sdk_only = SimpleNamespace(side_by_side=side_by_side("ssh://root@vps"))
    applier = apply_module.Applier.__new__(apply_module.Applier)
    applier.ex = SimpleNamespace(docker=lambda: sdk_only)
    applier.step = step
    applier.side_by_side(list(range(3 * SDK_SIDE_BY_SIDE)))
    assert most[0] == SDK_SIDE_BY_SIDE
