"""Reports at the operator's local hours on a fake clock, summaries from seeded history, alerts
once per cooldown, and the monthly budget stopping and starting the nodes across a month."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from conduit.bot.api import BotApi
from conduit.bot.duties import Duties
from conduit.bot.hosts import Unavailable
from conduit.bot.reports import Cooldown, Point, due, summary
from conduit.features.budget import GB, BudgetKeeper, period_start
from conduit.spec.spec import Bot, Budget, Reports
from tests.telegram_stub import TelegramStub
from tests.unit.test_bot import TOKEN

TEHRAN = ZoneInfo("Asia/Tehran")  # +03:30: a report hour is not a UTC hour


class SeededHistory:
    def __init__(self, points: list[Point], events: list[tuple[float, str]], countries: list[tuple[float, str, float]] = ()):
        self._points, self._events, self._countries = points, events, list(countries)

    def points(self, since: float, until: float) -> list[Point]:
        return [p for p in self._points if since <= p.at < until]

    def countries(self, since: float, until: float) -> dict[str, float]:
        peaks: dict[str, float] = {}
        for at, region, clients in self._countries:
            if since <= at < until:
                peaks[region] = max(peaks.get(region, 0), clients)
        return peaks

    def events(self, since: float, until: float) -> list[tuple[float, str]]:
        return [e for e in self._events if since <= e[0] < until]


class Machine:
    """A host whose nodes run until stopped; what the budget did to them is kept."""

    name = "edge-1"

    def __init__(self):
        self.running = {"conduit-1": True, "conduit-2": True}
        self.cpus: dict[str, float] = {}  # the nodes throttled, and their CPU limit
        self.applies: list[str] = []  # each apply a throttle ran: "throttle" or "unthrottle", "failed" when it failed
        self.failing_applies = 0  # the next so many applies fail (rolled back: nothing changes)
        self.done: list[tuple[str, str]] = []
        self.alerts: list[str] = []

    def status(self) -> dict:
        rows = [{"name": n, "index": i + 1, "state": "running" if up else "exited", "connected": 3 if up else 0}
                for i, (n, up) in enumerate(self.running.items())]  # fmt: skip
        return {"containers": rows, "alerts": list(self.alerts), "countries": [],
                "totals": {"running": sum(self.running.values()), "containers": 2, "connected": 6, "connecting": 0}}  # fmt: skip

    def stop(self, node: str, user: str, why: str | None = None, until=None) -> str:
        if not self.running[node]:
            raise Unavailable(f"{node} is not running")
        self.running[node] = False
        self.done.append(("stop", node))
        return f"{node} stopped"

    def start(self, node: str, user: str) -> str:
        self.running[node] = True
        self.done.append(("start", node))
        return f"{node} started"

    def _apply(self, what: str) -> None:
        if self.failing_applies:
            self.failing_applies -= 1
            self.applies.append("failed")
            raise Unavailable(f"{what}: rolled_back (conduit-2 did not become healthy)")
        self.applies.append(what)

    def throttle(self, nodes: list[str], user: str, cpus: float, why: str, until) -> str:
        self._apply("throttle")
        for node in nodes:
            self.cpus[node] = cpus
            self.done.append(("throttle", node))
        return "throttled"

    def unthrottle(self, nodes: list[str], user: str) -> str:
        self._apply("unthrottle")
        for node in nodes:
            self.cpus.pop(node)
            self.done.append(("unthrottle", node))
        return "at full speed"


def test_reports_fall_on_the_start_hour_and_every_n_hours_in_the_operators_zone():
    reports = Reports(every_hours=6, start_hour=8, timezone="Asia/Tehran", daily=True, weekly=True)
    monday = datetime(2026, 3, 2, 7, 30, tzinfo=TEHRAN)  # a Monday
    fired = {}
    for minutes in range(0, 24 * 60, 30):
        now = monday + timedelta(minutes=minutes + 30)
        for kind in due(reports, monday + timedelta(minutes=minutes), now):
            fired.setdefault(kind, []).append(now.astimezone(TEHRAN).hour)
    assert fired == {"status": [8, 14, 20, 2], "daily": [8], "weekly": [8]}


def test_no_report_twice_and_none_missed_across_a_long_pause():
    reports = Reports(every_hours=4, start_hour=1, timezone="UTC")
    start = datetime(2026, 3, 2, 0, 10, tzinfo=timezone.utc)
    assert due(reports, start, start + timedelta(hours=10)) == ["status"]  # one report, not three, after a pause
    assert due(reports, start, start + timedelta(minutes=40)) == []


def test_a_daily_summary_from_seeded_history():
    day = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()
    points = [Point(day - 10 * 86400, "conduit-1", 1, 0, 60, 60)]
    countries = [(day - 10 * 86400, "IR", 1)]
    for hour in range(24):
        at = day + hour * 3600
        points += [Point(at, "conduit-1", hour, 10**9 if hour else 0, 60, 60), Point(at, "conduit-2", 2, 0, 60, 60 if hour % 2 == 0 else 0)]
        countries += [(at, "IR", hour), (at, "DE", 1)] + ([(at, "CN", 2)] if hour > 20 else [])
    history = SeededHistory(points, [(day + 60, "restart"), (day + 120, "apply"), (day + 7200, "restart"), (day + 3 * 86400, "rollback")],
                            countries)  # fmt: skip
    text = summary("edge-1: daily summary", history, day, day + 86400)
    assert text.splitlines() == [
        "edge-1: daily summary",
        "clients: peak 25, average 13.5",  # 23 + 2 at the last hour; (0..23 mean 11.5) + 2
        "served: 23.0 GB",
        "uptime: 75.0 %",
        "top countries: IR 23, CN 2, DE 1",
        "new countries: CN, DE",
        "restarts 2, applies 1, rollbacks 0",
    ]


def test_an_alert_is_sent_once_per_cooldown_and_duplicates_are_one():
    gate = Cooldown(3600)
    assert gate.fresh(["all nodes down", "all nodes down", "cpu high"], 0) == ["all nodes down", "cpu high"]
    assert gate.fresh(["all nodes down"], 1800) == []
    assert gate.fresh(["all nodes down"], 3600) == ["all nodes down"]


def run_duties(tmp_path, stub, bot: Bot, budget: Budget | None, totals, clock: list[datetime], machine: Machine, audit: list,
               api: BotApi | None = None):  # fmt: skip
    """Duties as an agent runs them, over `clock`; with `api`, through that Bot API client (a month of agents
    that each start afresh need not each open their own)."""
    own = api is None
    api = BotApi(TOKEN, stub.url) if own else api
    keeper = BudgetKeeper(tmp_path, budget) if budget else None
    duties = Duties(api, [42], machine, bot, SeededHistory([], []), keeper, totals, lambda *row: audit.append(row))
    try:
        for now in clock:
            duties.tick(now)
    finally:
        if own:
            api.close()


def test_reports_and_alerts_go_to_the_chat_at_the_right_local_hours(tmp_path):
    stub = TelegramStub()
    machine = Machine()
    machine.alerts = ["conduit-2 has had no clients for 2 h"]
    bot = Bot(reports=Reports(every_hours=12, start_hour=9, timezone="Asia/Tehran", daily=True))
    start = datetime(2026, 3, 3, 8, 0, tzinfo=TEHRAN)
    clock = [start + timedelta(minutes=20 * i) for i in range(3 * 24)]  # one day, a tick every 20 minutes
    try:
        run_duties(tmp_path, stub, bot, None, dict, clock, machine, [])
        texts = [c["text"] for c in stub.calls("sendMessage")]
    finally:
        stub.close()
    alert = "[edge-1] conduit-2 has had no clients for 2 h"
    heads = [t.splitlines()[0] for t in texts]
    assert heads[0] == alert  # at once
    assert [h for h in heads if h != alert] == [
        "edge-1: 2/2 running, 6 clients (0 connecting), 0 B served",  # 09:00 Tehran
        "edge-1: daily summary",  # 09:00
        "edge-1: 2/2 running, 6 clients (0 connecting), 0 B served",  # 21:00
    ]
    assert heads.count(alert) == 24  # once an hour (the cooldown), over a day of ticks every 20 minutes
    assert heads[:4] == [alert, heads[1], "edge-1: daily summary", alert]  # 08:20 and 08:40 said nothing


def test_the_budget_stops_the_nodes_at_100_percent_and_starts_them_at_the_reset(tmp_path):
    stub = TelegramStub()
    machine = Machine()
    served = {"conduit-1": 0, "conduit-2": 0}
    start = datetime(2026, 3, 20, 12, 0, tzinfo=TEHRAN)
    audit: list = []

    def totals() -> dict:  # lifetime totals (up, down): they grow while a node runs, and never reset
        return {n: (b // 2, b - b // 2) for n, b in served.items()}

    bot = Bot(reports=Reports(timezone="Asia/Tehran"))
    budget = Budget(monthly_gb=100, resets_on_day=5)
    clock = [start + timedelta(hours=6 * i) for i in range(4 * 31)]  # a month, a tick every 6 hours
    stopped_at = started_at = None
    api = BotApi(TOKEN, stub.url)
    try:
        for now in clock:
            run_duties(tmp_path, stub, bot, budget, totals, [now], machine, audit, api)  # a new agent each time: the ledger is on disk
            if ("stop", "conduit-1") in machine.done and stopped_at is None:
                stopped_at = now
            if ("start", "conduit-1") in machine.done and started_at is None:
                started_at = now
            for node, up in machine.running.items():
                served[node] += 2 * GB if up else 0  # 4 GB every 6 hours while both run
        texts = [c["text"] for c in stub.calls("sendMessage")]
    finally:
        api.close()
        stub.close()
    assert stopped_at == start + timedelta(days=6, hours=6)  # 100 GB after 25 ticks
    assert started_at == datetime(2026, 4, 5, 0, 0, tzinfo=TEHRAN)  # the first tick of the new month
    assert sorted(machine.done[:2]) == [("stop", "conduit-1"), ("stop", "conduit-2")]
    assert [t.split(": ")[-1] for t in texts if "%" in t and "reached" in t][:2] == ["80 % reached", "100 % reached; the nodes stop until the reset"]
    assert any("a new month began" in t for t in texts)
    assert {row[0] for row in audit} == {"budget.stop", "budget.start"}
    assert period_start(datetime(2026, 4, 4, 23, tzinfo=TEHRAN), 5) == datetime(2026, 3, 5, tzinfo=TEHRAN)


def simulate_a_throttled_month(tmp_path, machine: Machine, failing_applies: int = 0):
    """A month of ticks every 6 hours with action: throttle; the first `failing_applies` applies
    fail. (the throttle time, the time the nodes were freed, the texts, the audit rows)."""
    stub = TelegramStub()
    served = {"conduit-1": 0, "conduit-2": 0}
    start = datetime(2026, 3, 20, 12, 0, tzinfo=TEHRAN)
    audit: list = []

    def totals() -> dict:
        return {n: (b // 2, b - b // 2) for n, b in served.items()}

    budget = Budget(monthly_gb=100, resets_on_day=5, action="throttle")
    clock = [start + timedelta(hours=6 * i) for i in range(4 * 31)]
    throttled_at = freed_at = None
    api = BotApi(TOKEN, stub.url)
    try:
        for now in clock:
            if now == start + timedelta(days=6, hours=6):  # the tick at which the budget reaches 100 %
                machine.failing_applies = failing_applies
            run_duties(tmp_path, stub, Bot(reports=Reports(timezone="Asia/Tehran")), budget, totals, [now], machine, audit, api)
            if machine.cpus and throttled_at is None:
                throttled_at = now
            if ("unthrottle", "conduit-1") in machine.done and freed_at is None:
                freed_at = now
            for node in served:  # a throttled node runs but serves next to nothing
                served[node] += 2 * GB if node not in machine.cpus else GB // 1000
        texts = [c["text"] for c in stub.calls("sendMessage")]
    finally:
        api.close()
        stub.close()
    return throttled_at, freed_at, texts, audit


def test_the_budget_throttles_the_nodes_at_100_percent_and_frees_them_at_the_reset(tmp_path):
    machine = Machine()
    throttled_at, freed_at, texts, audit = simulate_a_throttled_month(tmp_path, machine)
    start = datetime(2026, 3, 20, 12, 0, tzinfo=TEHRAN)
    assert throttled_at == start + timedelta(days=6, hours=6)
    assert freed_at == datetime(2026, 4, 5, 0, 0, tzinfo=TEHRAN)
    assert all(machine.running.values())  # never stopped: clients stay connected
    assert machine.applies == ["throttle", "unthrottle", "throttle"]  # one apply for all the nodes, each way (April reaches 100 % too)
    assert machine.done[:4] == [("throttle", "conduit-1"), ("throttle", "conduit-2"), ("unthrottle", "conduit-1"), ("unthrottle", "conduit-2")]
    assert [t.split(": ")[-1] for t in texts if "reached" in t][:2] == [
        "80 % reached", "100 % reached; the nodes are throttled to 0.05 CPU until the reset"]  # fmt: skip
    assert any("throttled run at full speed again" in t for t in texts)
    assert [(row[0], row[2]["nodes"], row[2]["status"]) for row in audit][:2] == [
        ("budget.throttle", ["conduit-1", "conduit-2"], "done"), ("budget.unthrottle", ["conduit-1", "conduit-2"], "done")]  # fmt: skip


def test_a_failed_throttle_apply_is_not_counted_done_and_is_tried_again_at_each_tick(tmp_path):
    machine = Machine()
    throttled_at, freed_at, texts, audit = simulate_a_throttled_month(tmp_path, machine, failing_applies=3)
    start = datetime(2026, 3, 20, 12, 0, tzinfo=TEHRAN)
    assert machine.applies == ["failed", "failed", "failed", "throttle", "unthrottle", "throttle"]
    assert throttled_at == start + timedelta(days=7, hours=0)  # the fourth tick from 100 %: the first that succeeded
    assert freed_at == datetime(2026, 4, 5, 0, 0, tzinfo=TEHRAN)
    failed = [t for t in texts if "failed" in t]
    assert failed == ["[edge-1] budget: throttle of conduit-1, conduit-2 failed: throttle: rolled_back "
                      "(conduit-2 did not become healthy); tried again at each check"]  # alerted once  # fmt: skip
    assert [row[2]["status"][:6] for row in audit] == ["failed", "done", "done", "done"]


def test_a_failed_unthrottle_apply_at_the_reset_is_tried_again(tmp_path):
    machine = Machine()
    keeper = BudgetKeeper(tmp_path, Budget(monthly_gb=1, resets_on_day=5, action="throttle"))
    march = datetime(2026, 3, 20, tzinfo=TEHRAN)
    keeper.check(march, {"conduit-1": (0, 0)}, ["conduit-1"])
    decision = keeper.check(march, {"conduit-1": (GB, GB)}, ["conduit-1"])
    assert decision.stop == ["conduit-1"]
    keeper.record("throttle", ["conduit-1"], ok=True)
    assert keeper.check(march, {"conduit-1": (GB, GB)}, ["conduit-1"]).stop == []  # held: not throttled twice
    april = datetime(2026, 4, 5, 1, tzinfo=TEHRAN)
    assert keeper.check(april, {"conduit-1": (GB, GB)}, ["conduit-1"]).start_again == ["conduit-1"]
    assert keeper.record("unthrottle", [], ok=False) is True  # alerted the first time
    assert keeper.check(april, {"conduit-1": (GB, GB)}, ["conduit-1"]).start_again == ["conduit-1"]
    assert keeper.record("unthrottle", [], ok=False) is False  # and not again
    keeper.record("unthrottle", ["conduit-1"], ok=True)
    assert keeper.check(april, {"conduit-1": (GB, GB)}, ["conduit-1"]).start_again == []
