"""The dashboard in a real browser (Debian's headless chromium): it shows the nodes the API
serves, a node's change arrives over the event stream and is drawn without a reload, it fits a
phone, and a refused token is asked for again. Screenshots of the page go to the test artifacts
(CONDUIT_TEST_ARTIFACTS, else test-artifacts/ at the repository root)."""

from __future__ import annotations

import struct
import threading

import pytest
import uvicorn

from harness import free_port_block, unavailable, wait_for
from harness.browser import Browser, BrowserError
from conduit.serve.app import create_app
from tests.helpers import artifact
from tests.unit.test_serve import Setup, observation

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path):
    """The agent over a fake observation, on a free loopback port, in a thread of this process."""
    setup = Setup(tmp_path)
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
    assert page.evaluate("document.querySelectorAll('#chart-clients polyline').length") == 2

    setup.fake.data = observation(connected=9, state="exited")
    setup.observer.refresh()
    took = page.wait(f"{STATE_OF} === 'exited'", timeout=5)
    assert took < 2, f"the page showed the change after {took:.1f} s"
    assert "conduit-2: exited, 1 connected" in page.evaluate("document.getElementById('events').textContent")
    assert page.evaluate("document.getElementById('alerts').textContent").startswith("not running: conduit-2")

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
