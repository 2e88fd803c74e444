"""The state DB's timeline: minutes merged into coarser buckets, each resolution pruned to its keep,
ranges and byte totals read back; the agent's sampler; the claim and update-check actions."""

from __future__ import annotations

import time
from contextlib import closing

from conduit.bot.history import AgentHistory
from conduit.bot.reports import summary
from conduit.facts.keyfile import claim_url
from conduit.serve.sampling import Sampler
from conduit.state.stores import open_state
from conduit.state.timeline import TIERS, Minute
from tests.unit.test_keyfile import key_file
from tests.unit.test_serve import Setup, observation
from tests.unit.test_status_render import row

T0 = 1_700_000_000 - 1_700_000_000 % 3600  # an hour's start


def test_minutes_merge_into_quarter_hours_and_hours(tmp_path):
    timeline = open_state(tmp_path).timeline
    timeline.record(T0, {"a": Minute(30, 30, 10, 1, 100, 1000)}, {"IR": 8})
    timeline.record(T0 + 60, {"a": Minute(30, 0, 20, 3, 50, 500)}, {"IR": 4})
    with closing(timeline.db.connect()) as db:
        rows = db.execute("SELECT tier, at, n, up, clients, connecting, bytes_up, bytes_down FROM timeline ORDER BY tier, at").fetchall()
    assert rows == [(60, T0, 30, 30, 10, 1, 100, 1000), (60, T0 + 60, 30, 0, 20, 3, 50, 500),
                    (900, T0, 60, 30, 15, 2, 150, 1500), (3600, T0, 60, 30, 15, 2, 150, 1500)]  # fmt: skip
    hour = timeline.series("1h", T0 + 120)
    assert [p["clients"] for p in hour["points"]] == [10, 20] and hour["nodes"][0]["uptime"] == 0.5
    assert hour["countries"]["series"] == [{"region": "IR", "points": [[T0, 6.0]]}]


def test_each_resolution_keeps_only_its_span(tmp_path):
    timeline = open_state(tmp_path).timeline
    for at in range(T0, T0 + 40 * 86400, 3600):
        timeline.record(at, {"a": Minute(1, 1, 1, 0, 1, 1)}, {})
    end = T0 + 40 * 86400 - 3600
    with closing(timeline.db.connect()) as db:
        oldest = dict(db.execute("SELECT tier, MIN(at) FROM timeline GROUP BY tier").fetchall())
    for tier, keep in TIERS:
        assert end - keep <= oldest[tier] < end - keep + tier + 3600


def test_today_and_this_month_come_from_the_finest_resolution_that_holds_them(tmp_path):
    timeline = open_state(tmp_path).timeline
    for at in range(T0, T0 + 20 * 86400, 3600):
        timeline.record(at, {"a": Minute(1, 1, 1, 0, 2, 3)}, {})
    end = T0 + 20 * 86400
    assert timeline.bytes_since(end - 86400) == (48, 72)  # the last 24 hours from the 15-minute buckets
    assert timeline.bytes_since(end - 15 * 86400) == (720, 1080)  # past 8 days: the hourly ones


def test_the_sampler_writes_a_minute_when_it_is_over_and_counts_bytes_across_restarts(tmp_path):
    timeline = open_state(tmp_path).timeline
    sampler = Sampler(lambda: timeline)

    def seen(at, up, lifetime, connected):
        data = observation()
        data["containers"] = [row("n", up=up, connected=connected, lifetime_bytes_up=lifetime, lifetime_bytes_down=2 * lifetime)]
        sampler(data, at)

    seen(T0 + 1, True, 1000, 4)
    seen(T0 + 30, False, 1500, 0)
    assert timeline.series("1h", T0 + 59)["points"] == []  # the minute is not over
    seen(T0 + 61, True, 1700, 2)
    minute = timeline.series("1h", T0 + 61)
    assert minute["points"] == [{"at": T0, "clients": 2.0, "connecting": 0.0, "bytes_up": 500, "bytes_down": 1000}]
    assert minute["nodes"][0]["uptime"] == 0.5
    sampler.flush()
    assert timeline.series("1h", T0 + 120)["points"][1]["bytes_up"] == 200


def test_the_claim_code_needs_an_operator_and_is_never_cached(tmp_path):
    setup = Setup(tmp_path)
    setup.agent.key_reader = lambda volume, node: key_file()
    assert setup.client.post("/api/v1/nodes/conduit-1/claim", headers=setup.auth("ann")).status_code == 403
    answer = setup.client.post("/api/v1/nodes/conduit-1/claim", headers=setup.auth("olu"))
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["url"] == claim_url(key_file(), "conduit-1") and set("".join(body["modules"])) == {"0", "1"}
    assert len(body["modules"]) == len(body["modules"][0]) >= 21  # a QR code is square, version 1 at least
    assert ("olu", "api.claim") in {(r["user"], r["event"]) for r in setup.state.audit.recent(5)}
    setup.agent.key_reader = lambda volume, node: None
    assert setup.client.post("/api/v1/nodes/conduit-1/claim", headers=setup.auth("olu")).status_code == 409


def test_a_check_for_updates_asks_without_taking(tmp_path):
    from tests.helpers import offline_plan as plan_offline

    setup = Setup(tmp_path)
    asked = []

    def planner(intent, doc, _host):
        asked.append(intent)
        return plan_offline(doc), None

    setup.agent.check_planner = planner
    answer = setup.client.post("/api/v1/updates/check", headers=setup.auth("olu"))
    assert answer.status_code == 200 and answer.json()["update"] is None and "run what it means now" in answer.json()["text"]
    assert asked[0].take is False and asked[0].registry == "now"
    assert setup.client.post("/api/v1/updates/check", headers=setup.auth("ann")).status_code == 403


def test_the_daily_summary_reads_the_agents_timeline(tmp_path):
    """The bot's reports from the state DB (conduit.bot.history): a day of two nodes, a country seen
    ten days ago, a restart and an apply; the same history a restarted agent would read."""
    setup = Setup(tmp_path)
    now = time.time()
    day = now - 86400
    timeline = setup.state.timeline
    timeline.record(day - 10 * 86400, {"a": Minute(60, 60, 1, 0, 0, 0)}, {"IR": 1})
    for hour in range(24):
        at = day + hour * 3600 + 60
        nodes = {"a": Minute(60, 60, hour, 0, 5 * 10**8, 5 * 10**8), "b": Minute(60, 60 if hour % 2 == 0 else 0, 2, 0, 0, 0)}
        timeline.record(at, nodes, {"IR": hour, "DE": 1} | ({"CN": 2} if hour > 20 else {}))
    setup.state.audit.record("api.restart", {"node": "a"})
    setup.state.history.finish(setup.state.history.begin("spec", "hash", None, (None, None), "edge-1"), "succeeded")
    text = summary("edge-1: daily summary", AgentHistory(setup.agent), day, now + 1)
    assert text.splitlines() == [
        "edge-1: daily summary",
        "clients: peak 25, average 13.5",  # 23 + 2 at the last hour; (0..23 mean 11.5) + 2
        "served: 24.0 GB",
        "uptime: 75.0 %",
        "top countries: IR 23, CN 2, DE 1",
        "new countries: CN, DE",  # IR was seen ten days ago
        "restarts 1, applies 1, rollbacks 0",
    ]
    week = summary("edge-1: weekly summary", AgentHistory(setup.agent), now - 7 * 86400, now + 1)
    assert "served: 24.0 GB" in week and "top countries: IR 23, CN 2, DE 1" in week  # the 15-minute buckets
