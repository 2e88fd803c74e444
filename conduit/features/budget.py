"""A host-wide monthly traffic budget (spec.budget): the bytes all nodes served since the month's
reset day, counted from the state database's lifetime totals (which survive node restarts),
alerts at 80 % and 100 %, the nodes stopped (or throttled) at 100 % and set free again at the reset.

The count of a month is the lifetime totals now minus the totals when the month began; that
baseline, the alerts already sent and the nodes the budget stopped are kept in one small file
in the state directory, so an agent restart neither forgets a stop nor alerts twice."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from conduit.drivers.files import atomic_write
from conduit.spec.spec import Budget

GB = 10**9
THRESHOLDS = (80, 100)
# A throttled node's CPU limit. Its throughput follows its CPU, so a twentieth of one core keeps it
# running (clients connected, counters kept) while it serves next to nothing; the limit is set in
# place (a Docker update), which a bandwidth start argument could not be without a replace.
THROTTLE_CPUS = 0.05
FILE = "budget.json"


def period_start(now: datetime, day: int) -> datetime:
    """The start (local midnight of the reset day) of the budget month `now` falls in."""
    start = now.replace(day=day, hour=0, minute=0, second=0, microsecond=0)
    if start > now:
        start = (start.replace(day=1) - timedelta(days=1)).replace(day=day)
    return start


def next_reset(start: datetime) -> datetime:
    return (start.replace(day=1) + timedelta(days=32)).replace(day=start.day)


@dataclass
class Ledger:
    """What the budget remembers between checks."""

    start: str  # the period's start, ISO with its offset
    baseline: dict[str, int]  # node: lifetime bytes (up + down) when the period began
    alerted: list[int] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # stopped or throttled, by `action`, once that succeeded
    freeing: list[str] = field(default_factory=list)  # held last month, until setting them free succeeds
    failing: list[str] = field(default_factory=list)  # the actions whose failure was alerted (once)


@dataclass
class Decision:
    used: int
    limit: int
    start: datetime
    resets: datetime
    alerts: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    start_again: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.limit

    def line(self) -> str:
        return (f"budget: {self.used / GB:.1f} of {self.limit / GB:g} GB this month ({self.percent:.0f} %), "
                f"resets {self.resets:%Y-%m-%d}")  # fmt: skip


WHAT = {"stop": "the nodes stop", "throttle": f"the nodes are throttled to {THROTTLE_CPUS:g} CPU"}
AGAIN = {"stop": "stopped start again", "throttle": "throttled run at full speed again"}


class BudgetKeeper:
    def __init__(self, state_dir: Path, budget: Budget):
        self.path = Path(state_dir) / FILE
        self.budget = budget

    def _load(self) -> Ledger | None:
        try:
            return Ledger(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None  # none yet, or unreadable: the count starts again from now

    def _save(self, ledger: Ledger) -> None:
        atomic_write(self.path, json.dumps(ledger.__dict__))  # 0600, never through a link, whole or not at all

    def check(self, now: datetime, totals: dict[str, tuple[int, int]], running: list[str]) -> Decision:
        """The month's count and what to do now; `now` is aware (the operator's zone), `totals` the
        lifetime (up, down) per node, `running` the nodes running now."""
        start = period_start(now, self.budget.resets_on_day)
        lifetime = {node: up + down for node, (up, down) in totals.items()}
        ledger = self._load()
        decision = Decision(0, int(self.budget.monthly_gb * GB), start, next_reset(start))
        if ledger is None or ledger.start != start.isoformat():
            freeing = sorted(set(ledger.stopped) | set(ledger.freeing)) if ledger is not None else []
            if ledger is not None and ledger.stopped:
                decision.alerts.append(f"budget: a new month began; {len(ledger.stopped)} node(s) the budget {AGAIN[self.budget.action]}")
            ledger = Ledger(start.isoformat(), dict(lifetime), freeing=freeing)  # a new month (or a first check) counts from here
        decision.start_again = list(ledger.freeing)  # again each check until it succeeds
        decision.used = sum(max(0, total - ledger.baseline.get(node, 0)) for node, total in lifetime.items())
        for threshold in THRESHOLDS:
            if decision.percent >= threshold and threshold not in ledger.alerted:
                ledger.alerted.append(threshold)
                decision.alerts.append(f"{decision.line()}: {threshold} % reached"
                                       + (f"; {WHAT[self.budget.action]} until the reset" if threshold == 100 else ""))  # fmt: skip
        if decision.percent >= 100:  # a node started by hand is stopped again; a throttled one runs, and stays throttled
            decision.stop = sorted(set(running) - (set(ledger.stopped) if self.budget.action == "throttle" else set()))
        self._save(ledger)
        return decision

    def record(self, action: str, nodes: list[str], ok: bool) -> bool:
        """What became of an action of the last check's decision: `nodes`, those it succeeded for, count
        as held (or set free); the rest is a failed one is decided again at the next check. True: a first
        failure, to alert (once, until it succeeds)."""
        ledger = self._load()
        if ledger is None:
            return not ok
        first_failure = not ok and action not in ledger.failing
        if action in ("stop", "throttle"):
            ledger.stopped = sorted(set(ledger.stopped) | set(nodes))
        else:
            ledger.freeing = sorted(set(ledger.freeing) - set(nodes))
        if ok:
            ledger.failing = [a for a in ledger.failing if a != action]
        elif first_failure:
            ledger.failing.append(action)
        self._save(ledger)
        return first_failure



def zone_of(spec) -> ZoneInfo:
    """The operator's zone (alerts.telegram.bot.reports.timezone), in which months begin; else UTC."""
    telegram = spec.spec.alerts.telegram
    return ZoneInfo(telegram.bot.reports.timezone if telegram is not None and telegram.bot is not None else "UTC")


def budget_status(state_dir: Path, budget: Budget, totals: dict[str, tuple[int, int]], now: datetime) -> dict:
    """The budget as `conduit status` shows it, read without changing the ledger: before the agent's
    first check of this month, nothing is counted yet."""
    start = period_start(now, budget.resets_on_day)
    ledger = BudgetKeeper(state_dir, budget)._load()
    counting = ledger is not None and ledger.start == start.isoformat()
    used = sum(max(0, up + down - ledger.baseline.get(node, 0)) for node, (up, down) in totals.items()) if counting else 0
    return {"used_gb": round(used / GB, 3), "monthly_gb": budget.monthly_gb, "percent": round(100.0 * used / (budget.monthly_gb * GB), 1),
            "resets": f"{next_reset(start):%Y-%m-%d}", "action": budget.action, "counting": counting,
            "stopped": sorted(ledger.stopped) if counting else []}  # fmt: skip
