"""A failed gate's one line: the container's own cause preferred, the last lines of the run it is about quoted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conduit.execute.nodehealth import cause
from conduit.engine.reconcile import nothing_changed
from conduit.facts import nodelog

LOG = (
    "2026-01-02T10:00:00.100000000Z [OK] Starting Psiphon Conduit (Max Common Clients: 50, Max Personal Clients: 0, Bandwidth: 2 Mbps)\n"
    "2026-01-02T10:00:00.200000000Z standin: exiting (STANDIN_EXIT_AFTER=0)\n"
    "2026-01-02T10:00:00.500000000Z [OK] Starting Psiphon Conduit (Max Common Clients: 50, Max Personal Clients: 0, Bandwidth: 2 Mbps)\n"
)


def test_a_container_that_stopped_is_judged_by_the_run_that_ended_not_one_started_since():
    lines = nodelog.last_run(LOG, "2026-01-02T10:00:00.050Z", "2026-01-02T10:00:00.210Z", serving=False)
    assert lines[-1] == "standin: exiting (STANDIN_EXIT_AFTER=0)"


def test_a_serving_container_is_judged_by_its_current_run():
    lines = nodelog.last_run(LOG, "2026-01-02T10:00:00.450Z", "2026-01-02T10:00:00.210Z", serving=True)
    assert len(lines) == 1 and lines[0].startswith("[OK] Starting")


def test_quote_takes_the_last_three_trims_and_redacts():
    key = "A" * 20 + "b" * 24  # looks like a key or token
    lines = ["first", "", f"token {key} here", "x " * 250, "\x1b[31mred\x1b[0m", "last"]
    quoted = nodelog.quote(lines)
    assert quoted.split(" | ")[0].startswith("x x x") and quoted.split(" | ")[0].endswith("…")
    assert "first" not in quoted and "\x1b" not in quoted and quoted.endswith(" | last")
    assert key not in nodelog.quote(lines, count=6) and "[redacted]" in nodelog.quote(lines, count=6)


@given(st.lists(st.text(max_size=400), max_size=20))
def test_quote_is_one_bounded_line_without_secret_like_runs(lines):
    quoted = nodelog.quote(lines)
    assert "\n" not in quoted and "\r" not in quoted
    assert len(quoted) <= 3 * nodelog.QUOTED_WIDTH + 6
    assert nodelog._SECRET_LIKE.search(quoted) is None


def info(status: str, running: bool, restarting: bool = False, code: int = 0, restarts: int = 0, oom: bool = False) -> dict:
    state = {"Status": status, "Running": running, "Restarting": restarting, "ExitCode": code, "OOMKilled": oom}
    return {"State": state, "RestartCount": restarts}


def test_cause_prefers_what_docker_says():
    assert cause("n-1", info("restarting", True, True, 3, 2)) == "container n-1 is restarting (exit code 3, restarted 2 times)"
    assert cause("n-1", info("exited", False, code=1)) == "container n-1 is exited (exit code 1)"
    assert cause("n-1", info("running", True, restarts=1), last_exit=3) == (
        "container n-1 keeps exiting: it was restarted 1 time (last exit code 3)")
    assert "OOMKilled" in cause("n-1", info("exited", False, code=137, oom=True))
    assert cause("n-1", info("running", True)) is None  # nothing more specific than the gate's own reason


def test_only_a_failed_pull_changed_nothing():
    pull = [("containers", "image", "img", "pull", "started", None), ("containers", "image", "img", "pull", "failed", "x")]
    assert nothing_changed(pull)
    assert not nothing_changed([])
    assert not nothing_changed(pull[:1] + [("containers", "container", "n-1", "replace", "started", None)])
