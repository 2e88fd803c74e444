"""Nodes held stopped: the store (until a date, released on start), planning that keeps a held
node stopped instead of repairing it, `conduit status` naming who stopped it, the budget's line,
the bot's refusal rows rate limited, a throttle's CPU cap held and planned in place, and a budget
action other than stop or throttle refused at validate."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from conduit.bot.run import RateLimitedAudit
from conduit.engine.planning import capped_on_hold, stopped_on_hold
from conduit.features.budget import GB, BudgetKeeper, budget_status
from conduit.plan.planner import make_plan
from conduit.serve.auth import Limiter
from conduit.spec.resources import Resource
from conduit.spec.spec import Budget
from conduit.state.holds import Holds
from conduit.views.status_table import _budget_lines, _held_lines

NOW = datetime(2027, 1, 3, 12, tzinfo=timezone.utc)


def test_a_hold_lasts_until_its_date_or_its_release(tmp_path):
    holds = Holds(tmp_path)
    holds.hold("c-1", "by the budget", until=datetime(2027, 1, 5, tzinfo=timezone.utc))
    holds.hold("c-2", "from Telegram by @olu")
    assert {n: h.line() for n, h in holds.current(NOW).items()} == {
        "c-1": "stopped by the budget until 2027-01-05", "c-2": "stopped from Telegram by @olu"}  # fmt: skip
    assert set(holds.current(NOW + timedelta(days=3))) == {"c-2"}  # the budget's reset passed
    holds.release("c-2")
    assert set(holds.current(NOW)) == {"c-1"}
    assert (tmp_path / "holds.json").stat().st_mode & 0o777 == 0o600


def test_an_unreadable_hold_file_holds_nothing(tmp_path):
    (tmp_path / "holds.json").write_text("{not json")
    assert Holds(tmp_path).current(NOW) == {}


def container(name: str, state: str) -> Resource:
    return Resource("container", name, {"image": "x", "state": state}, frozenset({"image"}))


@pytest.mark.parametrize(("seen", "held", "action", "new"), [
    ("exited", False, "update", "running"),  # drift: the watcher starts it again
    ("exited", True, "no-op", None),  # held: left stopped
    ("running", True, "update", "stopped"),  # held but started by hand: stopped again
])  # fmt: skip
def test_planning_keeps_a_held_node_stopped(seen, held, action, new):
    desired, observed = stopped_on_hold([container("c-1", "running")], [container("c-1", seen)], frozenset({"c-1"} if held else ()))
    (step,) = make_plan("c", desired, observed, {("container", "c-1")}).steps
    assert step.action == action
    assert [c.new for c in step.changes] == ([new] if new else [])


def test_status_names_who_stopped_a_node_and_shows_the_budget(tmp_path):
    assert [t.plain for t in _held_lines({"held": {"c-1": "stopped by the budget until 2027-01-05"}})] == [
        "c-1: stopped by the budget until 2027-01-05"]  # fmt: skip
    budget = Budget(monthly_gb=10, resets_on_day=5)
    assert budget_status(tmp_path, budget, {"c-1": (GB, GB)}, NOW)["counting"] is False  # the agent has not counted yet
    BudgetKeeper(tmp_path, budget).check(NOW, {"c-1": (GB, GB)}, ["c-1"])
    found = budget_status(tmp_path, budget, {"c-1": (3 * GB, 2 * GB)}, NOW)
    assert found | {"stopped": []} == {"used_gb": 3.0, "monthly_gb": 10, "percent": 30.0, "resets": "2027-01-05", "action": "stop",
                                       "counting": True, "stopped": []}  # fmt: skip
    assert [t.plain for t in _budget_lines({"budget": found})] == ["budget: 3.0 of 10 GB this month (30 %), resets 2027-01-05, at 100 %: stop"]


def test_stop_and_throttle_are_the_budget_actions():
    assert Budget(monthly_gb=10, action="throttle").action == "throttle"
    with pytest.raises(ValidationError, match="action"):
        Budget(monthly_gb=10, action="slow")


def test_a_throttle_hold_keeps_its_cpu_cap_until_its_date(tmp_path):
    holds = Holds(tmp_path)
    holds.hold("c-1", "by the budget", until=datetime(2027, 1, 5, tzinfo=timezone.utc), cpus=0.05)
    assert {n: (h.cpus, h.line()) for n, h in Holds(tmp_path).current(NOW).items()} == {
        "c-1": (0.05, "throttled to 0.05 CPU by the budget until 2027-01-05")}  # fmt: skip
    assert Holds(tmp_path).current(NOW + timedelta(days=3)) == {}


def test_planning_applies_a_held_cpu_cap_in_place():
    node = Resource("container", "c-1", {"image": "x", "state": "running", "cpus": 1.5}, frozenset({"image"}))
    desired = capped_on_hold([node], {"c-1": 0.05})
    (step,) = make_plan("c", desired, [node], set()).steps
    assert step.action == "update"  # in place: the node keeps running, its clients connected
    assert [(c.field, c.old, c.new) for c in step.changes] == [("cpus", 1.5, 0.05)]
    (same,) = make_plan("c", desired, [replace(node, props=node.props | {"cpus": 0.05})], set()).steps
    assert same.action == "no-op"  # the watcher does not undo the cap
    assert capped_on_hold([node], {}) == [node]


class Rows:
    def __init__(self):
        self.rows: list[tuple[str, str, dict]] = []

    def audit(self, event: str, user: str, detail: dict) -> None:
        self.rows.append((event, user, detail))


def test_the_bots_refusal_rows_are_rate_limited_per_user_and_its_writes_are_not():
    agent = Rows()
    audit = RateLimitedAudit(agent, Limiter(1 / 60, 3))
    for _ in range(20):
        audit("bot.refused", "telegram:66", {"chat": 77, "reason": "chat or user not in the host policy"})
        audit("bot.stop", "telegram:12", {"status": "refused", "reason": "not an operator"})
        audit("bot.restart", "telegram:11", {"status": "done"})
    by = lambda user: [d for _, u, d in agent.rows if u == user]  # noqa: E731
    assert len(by("telegram:66")) == 4 and "more refusals of telegram:66 are not written for now" in by("telegram:66")[-1]["reason"]
    assert len(by("telegram:12")) == 4
    assert len(by("telegram:11")) == 20


def test_an_agent_with_a_budget_and_no_bot_never_imports_the_bot_library():
    import subprocess
    import sys

    probe = ("import sys; import conduit.cli.serve; from conduit.cli.companion import asked; from tests.helpers import minimal; "
             "from conduit.spec.spec import ClusterSpec; "
             "doc = ClusterSpec.model_validate(minimal(containers={'count': 1}, budget={'monthly_gb': 5})); "
             "assert asked(doc) == 'the budget'; import conduit.bot.run; print('telegram' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
