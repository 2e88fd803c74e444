"""The dashboard in a real browser (Debian's headless chromium): it shows the nodes the API
serves, a node's change arrives over the event stream and is drawn without a reload, it fits a
phone, and a refused token is asked for again. Screenshots of the page go to the test artifacts
(CONDUIT_TEST_ARTIFACTS, else test-artifacts/ at the repository root)."""

from __future__ import annotations

import math
import struct
import threading
import time

import pytest
import uvicorn

from harness import free_port_block, unavailable, wait_for
from harness.browser import Browser, BrowserError
import conduit.serve.agent as agent_module
from tests.helpers import offline_plan as plan_offline
from conduit.engine.settle import NOT_PULLED
from conduit.facts.lifetime import ByteReading
from conduit.serve.app import create_app
from conduit.state.timeline import Minute
from tests.helpers import EXAMPLE, artifact
from tests.unit.test_serve import Setup, observation
from tests.unit.test_status_render import row

pytestmark = pytest.mark.integration


UPDATE = {"image": "ghcr.io/psiphon-inc/conduit/cli:latest", "old_id": "sha256:aa11", "old_digest": "sha256:41bdc1cb5822aaaa",
          "new_id": "ghcr.io/psiphon-inc/conduit/cli@sha256:9f3e77c0d4a1bbbb", "new_digest": "sha256:9f3e77c0d4a1bbbb",
          "taken": True, "why_not": None, "old_version": "2.0.0", "new_version": None, "pulled": False}  # fmt: skip
FAILURE = "Error response from daemon: " + "driver failed programming external connectivity on endpoint conduit-3 " * 6


def seed(setup: Setup, days: int = 30) -> None:
    """What the agent would have written over `days`: one record an hour (60 observations each) for both
    nodes; their lifetime totals hold those bytes and as much again from before the range (older than 30 days)."""
    now = int(time.time())
    moved = {"conduit-1": [0, 0], "conduit-2": [0, 0]}
    for at in [*range(now - days * 86400, now - 3600, 3600), now - 180, now - 120, now - 60]:
        wave = 1 + math.sin(at / 86400 * 2 * math.pi)
        minutes = {"conduit-1": Minute(60, 60, 30 * wave, 3, int(4e8 * wave), int(16e8 * wave)),
                   "conduit-2": Minute(60, 45, 20 * wave, 2, int(3e8 * wave), int(12e8 * wave))}  # fmt: skip
        setup.state.timeline.record(at, minutes, {"IR": 40 * wave, "RU": 12 * wave, "CN": 5 * wave})
        for name, m in minutes.items():
            moved[name][0] += m.bytes_up
            moved[name][1] += m.bytes_down
    setup.state.lifetime.add_readings(now, {name: ByteReading(2 * up, 2 * down, days * 86400.0) for name, (up, down) in moved.items()})


def history(setup: Setup) -> None:
    """Three generations: a good one, a failed one with Docker's long error, the current good one."""
    text = EXAMPLE.read_text()
    for outcome, reason in (("succeeded", None), ("rolled_back", FAILURE), ("succeeded", None)):
        gen = setup.state.history.begin(text, "h", str(EXAMPLE), (None, None), "edge-1")
        setup.state.history.finish(gen, outcome, reason)


def drifted(connected: int = 1, state: str = "running") -> dict:
    """conduit-1 runs with 250 clients and 2 GiB where the spec now says 200 and 1 GiB, conduit-2 with
    2 CPUs where it says 1; both nodes report their image and use 301 MiB."""
    data = observation(connected, state)
    image = {"version": "2.0.0", "digest": "sha256:41bdc1cb5822aaaa", "image_id": "sha256:aa11", "memory": 301 << 20}
    data["containers"] = [row("conduit-1", connected=connected, max_clients=200, max_clients_seen=250, cpu_limit_seen=1.0, memory_limit_seen=2 << 30, **image),
                          row("conduit-2", state=state, up=state == "running", max_clients=200, max_clients_seen=200,
                              cpu_limit_seen=2.0, memory_limit_seen=1 << 30, **image)]  # fmt: skip
    return data


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The agent over a fake observation, on a free loopback port, in a thread of this process; its
    plan is the spec's against an empty host, with an image update behind the tag."""

    def planned(_intent, doc, _host):
        plan = plan_offline(doc)
        plan.update = UPDATE
        return plan, None

    monkeypatch.setattr(agent_module, "plan_on_host", planned)
    setup = Setup(tmp_path)
    setup.fake.data = drifted()
    setup.observer.refresh()
    seed(setup)
    history(setup)
    port = free_port_block(1)
    server = uvicorn.Server(uvicorn.Config(create_app(setup.agent), host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, message="the agent listening")
    yield setup, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    opened = []

    def open_page(url: str, width: int = 1280, height: int = 900) -> Browser:
        try:
            opened.append(Browser(url, width, height))
        except BrowserError as exc:
            unavailable(str(exc))
        return opened[-1]

    yield open_page
    for b in opened:
        b.close()


def png_size(png: bytes) -> tuple[int, int]:
    """The width and height a PNG declares; AssertionError when the bytes are not a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", png[16:24])


DISPLAY_OF = "(id => getComputedStyle(document.getElementById(id)).display)"
STATE_OF = "document.querySelector('[data-node=\"conduit-2\"]')?.dataset.state"


def test_the_dashboard_draws_the_nodes_and_follows_their_changes(served, browser):
    setup, base = served
    streaming = threading.Event()
    since = setup.hub.since

    def watched(seq):  # only the event stream asks the hub for events
        streaming.set()
        return since(seq)

    setup.hub.since = watched
    page = browser(f"{base}/#token={setup.tokens['ann']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    assert streaming.wait(timeout=10), "the page never opened the event stream"
    assert page.evaluate("location.hash") == "" and page.evaluate("sessionStorage.getItem('conduit-token')") == setup.tokens["ann"]
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate(f"{DISPLAY_OF}('login')") == "none"  # the token prompt goes once the token works
    page.wait("document.querySelectorAll('#chart-clients polyline').length === 2", timeout=5)

    setup.fake.data = drifted(connected=9, state="exited")
    setup.observer.refresh()
    page.wait(f"{STATE_OF} === 'exited'", timeout=15)
    page.wait(f"{TEXT_OF}('#events').includes('conduit-2: exited, 1 connected')", timeout=15)
    # the alerts come with the summary, a request of their own after the nodes'
    page.wait("document.getElementById('alerts').textContent.startsWith('not running: conduit-2')", timeout=5)
    assert page.evaluate("document.getElementById('nodes-title').textContent").startswith("Nodes: 1/2 running")

    png = page.screenshot(artifact("dashboard.png"))
    assert artifact("dashboard.png").read_bytes() == png
    assert png_size(png) == (1280, 900)
    assert len(png) > 20_000, f"a {len(png)}-byte screenshot is too small to hold the drawn dashboard"


def test_the_dashboard_fits_a_phone(served, browser):
    setup, base = served
    page = browser(f"{base}/#token={setup.tokens['ann']}", width=390, height=844)
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling of the page
    assert page.evaluate("getComputedStyle(document.querySelector('main')).gridTemplateColumns.split(' ').length") == 1
    png = page.screenshot(artifact("dashboard-phone.png"))
    assert png_size(png) == (390, 844) and len(png) > 10_000


def test_a_refused_token_asks_again(served, browser):
    _setup, base = served
    page = browser(f"{base}/#token=cdt_wrong")
    page.wait("document.getElementById('login')?.hidden === false", timeout=15)
    assert page.evaluate("sessionStorage.getItem('conduit-token')") is None
    assert page.evaluate(f"{DISPLAY_OF}('board')") == "none" and page.evaluate(f"{DISPLAY_OF}('login')") != "none"


TEXT_OF = "(sel => document.querySelector(sel)?.textContent || '')"
EVENTS = "[...document.querySelectorAll('#events li')].map(li => li.textContent)"  # the event log's lines, newest first


def confirm(page: Browser) -> None:
    """Say yes to the dialog an action opens."""
    page.wait("document.getElementById('confirm').open", timeout=5)
    page.evaluate("document.getElementById('confirm-ok').click()")


def test_the_page_shows_drift_the_plan_an_image_update_and_the_generations(served, browser):
    setup, base = served
    page = browser(f"{base}/#token={setup.tokens['ann']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait(f"{TEXT_OF}('#changes').length > 0", timeout=10)
    drift = page.evaluate("[...document.querySelectorAll('#nodes td.drift')].map(td => [td.parentElement.dataset.node, td.textContent, td.title])")
    assert drift == [  # run/spec, as `conduit status` prints it, for what differs only
        ["conduit-1", "250/200", "runs 250, the spec says 200: apply to change it"],
        ["conduit-1", "2 GiB/1 GiB", "runs 2 GiB, the spec says 1 GiB: apply to change it"],
        ["conduit-2", "2/1", "runs 2, the spec says 1: apply to change it"],
    ]
    cells = page.evaluate("[...document.querySelectorAll('[data-node=\"conduit-2\"] td')].map(td => td.textContent)")
    assert cells[3:8] == ["200", "0.10", "2/1", "301 MiB", "1 GiB"]  # max, cpu, its limit, memory, its limit: human units
    assert page.evaluate("getComputedStyle(document.querySelector('#nodes td.drift')).color") != page.evaluate("getComputedStyle(document.querySelector('#nodes td')).color")
    assert page.evaluate(f"{TEXT_OF}('[data-node=\"conduit-1\"]')").count("41bdc1cb5822") == 1
    changes = page.evaluate("[...document.querySelectorAll('#changes li')].map(li => li.textContent)")
    assert any(c.startswith("create container conduit-1") for c in changes) and "create sysctl fs.file-max (not on the host)" in changes
    assert f"{len(changes)} changes pending" in page.evaluate(f"{TEXT_OF}('#drift')")
    # the update in the plan text's own lines, shown below it (the new image not pulled yet: said so)
    update = page.evaluate(f"{TEXT_OF}('#image-update')").splitlines()
    plan_text = page.evaluate(f"{TEXT_OF}('#plan-text')").splitlines()
    first = next(i for i, line in enumerate(plan_text) if line.startswith("Image update:"))
    assert update == plan_text[first : first + 2]
    assert f"41bdc1cb5822 (2.0.0) -> sha256:9f3e77c0d4a1 ({NOT_PULLED})" in update[0] and update[1].startswith("  taken: the canaries first")
    gens = page.evaluate("[...document.querySelectorAll('#generations li')].map(li => [li.dataset.generation, li.className])")
    assert gens == [["3", "current"], ["2", ""], ["1", ""]]  # the newest first, the one the host runs marked
    widths = page.evaluate("(() => { const r = document.querySelector('[data-generation=\"2\"] .reason summary'); "
                           "return [r.scrollWidth > r.clientWidth, r.getBoundingClientRect().right <= r.closest('section').getBoundingClientRect().right, r.title.length]; })()")
    assert widths == [True, True, len(FAILURE)]  # cut to the panel's width; the whole error on hover
    page.evaluate("document.querySelector('[data-generation=\"2\"] .reason summary').click()")  # and opened (a phone has no hover)
    assert page.evaluate("document.querySelector('[data-generation=\"2\"] .reason p').getBoundingClientRect().height") > 30
    assert page.evaluate(f"{TEXT_OF}('[data-generation=\"2\"] .reason p')") == FAILURE
    page.screenshot(artifact("dashboard-plan.png"))


def test_a_viewer_sees_no_action(served, browser):
    setup, base = served
    page = browser(f"{base}/#token={setup.tokens['ann']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait(f"{TEXT_OF}('#who').includes('viewer')", timeout=5)
    page.wait(f"{TEXT_OF}('#generations').includes('#3')", timeout=5)
    assert page.evaluate("document.querySelectorAll('.act, #apply, #check-updates, #nodes button, #generations button').length") == 0
    assert page.evaluate("[...document.querySelectorAll('button')].map(b => b.textContent).filter(t => !/^\\d+ [hd]$/.test(t) && t !== 'forget token' && t !== 'open')") \
        == ["cancel", "confirm", "close (forgets the code)"]  # only the dialogs' own, which a viewer never opens


def test_an_operator_restarts_a_node_and_sees_it_come_back(served, browser):
    setup, base = served
    exited_seen = threading.Event()

    def restart(name: str) -> None:  # what Docker does: the node stops, then runs again
        setup.restarted.append(name)
        setup.fake.data = drifted(state="exited")
        setup.observer.refresh()

        def back():  # once the page has shown the stop: a slow browser would miss a state that lasts a fixed second
            exited_seen.wait(timeout=60)
            setup.fake.data = drifted()
            setup.observer.refresh()

        threading.Thread(target=back, daemon=True).start()

    setup.agent.restarter = restart
    page = browser(f"{base}/#token={setup.tokens['olu']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait("document.querySelector('[data-node=\"conduit-2\"] td.act button') !== null", timeout=5)
    backlog = page.evaluate(f"{TEXT_OF}('#events')")
    assert "conduit-1" in backlog or backlog == "" or "restart" not in backlog
    page.evaluate("document.querySelector('[data-node=\"conduit-2\"] td.act button').click()")
    page.wait("document.getElementById('confirm').open", timeout=5)
    assert "Restart conduit-2?" in page.evaluate(f"{TEXT_OF}('#confirm-text')")
    assert setup.restarted == []  # nothing before the confirmation
    page.evaluate("document.getElementById('confirm-ok').click()")
    try:
        page.wait(f"{STATE_OF} === 'exited'", timeout=15)
    finally:
        exited_seen.set()
    page.wait(f"{TEXT_OF}('#events').includes('restart of conduit-2 by olu')", timeout=15)
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    # The event's line may come a poll of the stream after the table: the page may have asked for the nodes meanwhile.
    page.wait(f"{TEXT_OF}('#events').includes('conduit-2: announced')", timeout=15)
    events = page.evaluate(EVENTS)
    assert any("conduit-2: exited" in e for e in events) and any("conduit-2: announced" in e for e in events), events
    assert setup.restarted == ["conduit-2"]
    rows = [(r["user"], r["event"], r["detail"].get("node")) for r in setup.state.audit.recent(20)]
    assert ("olu", "api.restart", "conduit-2") in rows
    page.screenshot(artifact("dashboard-operator.png"))


def test_the_event_backlog_is_there_on_open(served, browser):
    setup, base = served
    setup.hub.publish("apply", {"line": "create container conduit-9: done", "by": "olu"})
    page = browser(f"{base}/#token={setup.tokens['ann']}")
    page.wait(f"{TEXT_OF}('#events').includes('create container conduit-9: done')", timeout=15)


def test_a_30_day_chart_from_the_state_db(served, browser):
    setup, base = served
    setup.fake.data = setup.fake.data | {"budget": {"used_gb": 101.5, "monthly_gb": 100, "percent": 101.5, "resets": "2026-04-05",
                                                    "action": "throttle", "counting": True, "stopped": ["conduit-1", "conduit-2"]}}  # fmt: skip
    setup.observer.refresh()
    page = browser(f"{base}/#token={setup.tokens['ann']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.evaluate("document.querySelector('#ranges [data-range=\"30d\"]').click()")
    page.wait(f"{TEXT_OF}('#uptime-head') === 'uptime 30d'", timeout=5)
    points = page.evaluate("document.querySelector('#chart-clients polyline').getAttribute('points').split(' ').length")
    assert points >= 230  # 30 days in 3-hour steps
    labels = page.evaluate("[...document.querySelectorAll('#chart-bytes text.axis')].map(t => t.textContent)")
    assert any(label.endswith("/s") for label in labels) and len(labels) >= 6  # a scale and dates
    assert page.evaluate(f"{TEXT_OF}('[data-node=\"conduit-2\"] td.uptime')") == "75.0%"
    totals = page.evaluate(f"{TEXT_OF}('#totals')")
    assert "today" in totals and "this month" in totals and "lifetime" in totals and "GiB" in totals
    sums = page.evaluate("['today', 'month', 'lifetime'].map(k => timeline.totals[k].bytes_up + timeline.totals[k].bytes_down)")
    assert 0 < sums[0] <= sums[1] <= sums[2], sums  # a lifetime holds the month, the month today
    assert "0 B" not in page.evaluate("[...document.querySelectorAll('#totals dd')].at(-1).textContent")
    page.wait(f"{TEXT_OF}('#totals').includes('budget')", timeout=5)
    assert "101.5 of 100 GB (101.5 %), resets 2026-04-05; 2 node(s) throttled until the reset" in page.evaluate(f"{TEXT_OF}('#totals')")
    assert page.evaluate("document.querySelectorAll('#chart-countries polyline').length") == 3
    png = page.screenshot(artifact("dashboard-30d.png"))
    assert png_size(png) == (1280, 900)
    phone = browser(f"{base}/#token={setup.tokens['olu']}", width=360, height=1400)
    phone.wait(f"{STATE_OF} === 'announced'", timeout=15)
    phone.evaluate("document.querySelector('#ranges [data-range=\"30d\"]').click()")
    phone.wait(f"{TEXT_OF}('#uptime-head') === 'uptime 30d'", timeout=5)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    phone.screenshot(artifact("dashboard-phone-360.png"))


# A timeline made in the page, relative to its own clock: a finished 10-minute step that moved 600 MiB
# up, then one begun 30 s ago that moved 300 MiB so far; a country point 60 s old in 15-minute steps.
UNFINISHED = """(() => {
  const now = Date.now() / 1000, M = 2 ** 20;
  timeline = {range: "1h", step: 600, since: now - 3600, nodes: [],
    points: [{at: now - 630, clients: 4, connecting: 1, bytes_up: 600 * M, bytes_down: 0},
             {at: now - 30, clients: 5, connecting: 1, bytes_up: 300 * M, bytes_down: 0}],
    countries: {step: 900, series: [{region: "IR", points: [[now - 960, 2], [now - 60, 3]]}]}};
  drawCharts();
  return document.getElementById('bytes-now').textContent;
})()"""
# Each chart's plot width (its viewBox less the 10-pixel right margin) and the x of its rightmost point.
RIGHTMOST = ("[...document.querySelectorAll('.chart polyline')].map(l => [l.ownerSVGElement.viewBox.baseVal.width - 10, "
             "Math.max(...l.getAttribute('points').split(' ').map(p => +p.split(',')[0]))])")


def test_the_charts_end_at_now_and_rate_the_unfinished_step_by_its_passed_part(served, browser):
    setup, base = served
    page = browser(f"{base}/#token={setup.tokens['ann']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait("document.querySelectorAll('#chart-countries polyline').length === 3", timeout=5)
    seeded = page.evaluate(RIGHTMOST)  # the seeded hour, countries in 15-minute buckets
    assert len(seeded) == 7 and all(x <= edge + 0.05 for edge, x in seeded), seeded
    # 300 MiB over the 30 s that passed is 10 MiB/s (over the whole step it would read 512 KiB/s).
    assert page.evaluate(UNFINISHED).endswith("last step: 10.0 MiB/s and 0 B/s")
    made = page.evaluate(RIGHTMOST)
    assert len(made) == 5 and all(x <= edge + 0.05 for edge, x in made), made
    page.screenshot(artifact("dashboard-1h.png"))


def test_an_apply_from_the_page_shows_its_steps_as_they_run(served, browser):
    setup, base = served
    step_seen = threading.Event()

    def reconcile(request):  # the first step, then nothing more until the page has shown it
        request.report("create container conduit-1: started")
        assert step_seen.wait(timeout=20), "the page never showed the step"
        request.report("create container conduit-1: done")
        return setup.outcome

    setup.agent.reconcile = reconcile
    page = browser(f"{base}/#token={setup.tokens['olu']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait("document.getElementById('apply').disabled === false", timeout=10)
    page.evaluate("document.getElementById('apply').click()")
    confirm(page)
    page.wait(f"{TEXT_OF}('#events').includes('create container conduit-1: started')", timeout=10)
    assert "apply: no-op" not in page.evaluate(f"{TEXT_OF}('#events')")  # the apply runs still: no result yet
    step_seen.set()
    page.wait(f"{TEXT_OF}('#events').includes('apply: no-op')", timeout=10)
    page.wait(f"{TEXT_OF}('#events').includes('create container conduit-1: done')", timeout=10)
    lines = page.evaluate(EVENTS)[::-1]
    started, step, result = (next(i for i, line in enumerate(lines) if line.endswith(" " + end)) for end in ("apply …", "create container conduit-1: started", "apply: no-op"))
    assert started < step < result, lines  # oldest first: the confirmation's line, the step, the result


def test_a_change_between_the_pages_load_and_its_event_stream_is_shown(served, browser):
    """The page loads the nodes, then opens the event stream: a node that stopped in between is an event
    of the stream's backlog, listed but not replayed, so the page asks for the nodes as they are then."""
    setup, base = served
    hub = setup.hub

    class StopsAsTheStreamOpens(type(hub)):
        @property
        def last(self) -> int:  # read as the stream opens, for its hello: the node stops just before
            if setup.fake.data["containers"][1]["state"] == "running":
                setup.fake.data = drifted(state="exited")
                setup.observer.refresh()
            return super().last

    hub.__class__ = StopsAsTheStreamOpens
    page = browser(f"{base}/#token={setup.tokens['ann']}")
    page.wait(f"{TEXT_OF}('#events').includes('conduit-2: exited')", timeout=15)
    page.wait(f"{STATE_OF} === 'exited'", timeout=15)


def test_a_rollback_from_the_page_says_what_will_undo_it(served, browser):
    setup, base = served
    page = browser(f"{base}/#token={setup.tokens['olu']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait("document.querySelector('[data-generation=\"1\"] button') !== null", timeout=10)
    page.evaluate("document.querySelector('[data-generation=\"1\"] button').click()")
    confirm(page)
    page.wait(f"{TEXT_OF}('#events').includes('warning: the spec file')", timeout=15)
    (said,) = [e for e in page.evaluate(EVENTS) if "warning:" in e]
    assert f"apply by olu: no-op; warning: the spec file {EXAMPLE} (and its watch, if one runs) will undo this rollback" in said
    assert "`conduit history --spec 1`" in said and [r.intent.generation for r in setup.requests] == [1]


# What a volunteer must not meet: a panel whose content is wider than the panel (the nodes table scrolls
# on purpose), text cut without a way to read it whole, a page wider than the screen.
OVERFLOWS = """[...document.querySelectorAll('main > section')].flatMap(card => [...card.querySelectorAll('*')]
  .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().width > 0
          && e.getBoundingClientRect().right > card.getBoundingClientRect().right + 0.5)
  .map(e => card.querySelector('h2').textContent + ': ' + e.tagName + ' ' + (e.id || e.className)))"""
CUT = """[...document.querySelectorAll('main *')].filter(e => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0
  && getComputedStyle(e).overflowX === 'hidden' && !e.title).map(e => e.tagName + ' ' + (e.id || e.className))"""


@pytest.mark.parametrize("width", [1280, 360])
def test_every_panel_reads_whole_at_desktop_and_phone_width(served, browser, width):
    setup, base = served
    setup.hub.publish("apply", {"line": "replace container conduit-1 (drift: memory 2 GiB -> 1 GiB): " + FAILURE, "by": "olu"})
    page = browser(f"{base}/#token={setup.tokens['olu']}", width=width, height=800)
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait(f"{TEXT_OF}('#changes').length > 0 && {TEXT_OF}('#generations').includes('#3') && {TEXT_OF}('#events').includes('replace')", timeout=10)
    page.evaluate("document.querySelector('#plan-card details').open = true")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate(OVERFLOWS) == []
    # The nodes table fits its panel: at 1280 its heads wrap, on a phone each node is a card.
    assert page.evaluate("(s => s.scrollWidth <= s.clientWidth)(document.querySelector('#nodes').parentElement)")
    cells = page.evaluate("[...document.querySelectorAll('[data-node=\"conduit-1\"] td')].filter(td => td.offsetParent !== null).map(td => td.dataset.label)")
    assert {"memory limit", "cpu limit", "max run/spec", "actions"} <= set(cells), cells  # drift is seen at either width
    assert page.evaluate(CUT) == []
    png = page.screenshot(artifact(f"dashboard-full-{width}.png"), full=True)
    shown, height = png_size(png), page.evaluate("document.documentElement.scrollHeight")
    assert shown[0] == width and shown[1] >= height > 800, (shown, height)  # the whole page, below the window too
    for i, top in enumerate(range(0, height, 1000)):  # and in parts, each readable at full size
        assert png_size(page.screenshot(artifact(f"dashboard-full-{width}-{i + 1}.png"), band=(top, 1000)))[0] == width


def test_every_action_is_reached_by_tab_with_a_focus_ring(served, browser):
    setup, base = served
    page = browser(f"{base}/#token={setup.tokens['olu']}")
    page.wait(f"{STATE_OF} === 'announced'", timeout=15)
    page.wait(f"{TEXT_OF}('#generations').includes('#3') && document.getElementById('apply').disabled === false", timeout=10)
    wanted = page.evaluate("[...document.querySelectorAll('button, summary')].filter(b => b.offsetParent !== null && !b.disabled)"
                           ".map(b => b.getAttribute('aria-label') || b.textContent)")
    assert len(wanted) >= 12  # forget, 4 ranges, apply, check, 2 nodes x 2, a rollback, the plan text
    reached, rings = [], set()
    for _ in range(len(wanted) + 5):
        page.press("Tab", 9)
        focused = page.evaluate("(e => e !== document.body && [e.getAttribute('aria-label') || e.textContent, getComputedStyle(e).outlineStyle, "
                                "getComputedStyle(e).outlineWidth])(document.activeElement)")
        if not focused:  # past the last one, the focus leaves the page once
            continue
        reached.append(focused[0])
        rings.add((focused[0], *focused[1:]))
    assert set(wanted) <= set(reached), set(wanted) - set(reached)
    assert {ring[1:] for ring in rings} == {("solid", "3px")}, rings  # every one drawn with the focus ring
