"""conduit's structured events: structlog loads with the first event and without rich or colorama,
tracebacks are plain, rich still imports."""

from __future__ import annotations

import subprocess
import sys

from helpers import cli_env

CODE = """
import sys
from conduit import log
print("rich" in sys.modules, "colorama" in sys.modules)
log.configure("console", "debug")
print("structlog" in sys.modules)
try:
    {}["missing"]
except KeyError:
    log.logger().error("apply.error", exc_info=True)
print("structlog" in sys.modules)
import rich.text
print(rich.text.Text.from_markup("[bold]plain[/bold]").plain)
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)


def test_structlog_loads_with_the_first_event_without_rich_or_colorama_and_renders_plain_tracebacks():
    done = _run(CODE)
    # rich and colorama were hidden while structlog loaded, and only then; structlog waited for the first event
    assert done.stdout.split() == ["False", "False", "False", "True", "plain"]
    assert "[error    ] apply.error" in done.stderr
    assert "Traceback (most recent call last):" in done.stderr and "KeyError: 'missing'" in done.stderr
    assert "│" not in done.stderr  # no rich traceback box


LOADED_FIRST = """
import sys
import rich.text
from conduit import log
log.configure("json", "info")
log.logger("conduit.test").info("status.seen", nodes=2)
print(sorted(m for m in ("rich.traceback", "rich.pretty", "pygments") if m in sys.modules))
print(rich.text.Text.from_markup("[bold]plain[/bold]").plain)
"""


def test_rich_loaded_before_structlog_stays_as_it_was_and_structlog_takes_the_configuration():
    done = _run(LOADED_FIRST)
    assert done.stdout.split() == ["[]", "plain"]  # structlog did not pull in rich's tracebacks
    assert '"event": "status.seen"' in done.stderr and '"nodes": 2' in done.stderr and '"level": "info"' in done.stderr


RACE = """
import threading
from conduit import log
log.configure("json", "info")
ready, failed = threading.Barrier(16), []
def first_event():
    ready.wait()
    try:
        log.logger("conduit.race").info("race.event")
    except Exception as exc:
        failed.append(repr(exc))
threads = [threading.Thread(target=first_event) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(failed)
"""


def test_threads_that_send_their_first_events_at_once_each_get_a_loaded_structlog():
    done = _run(RACE)
    assert done.stdout.strip() == "[]"
    assert done.stderr.count('"event": "race.event"') == 16


BELOW_THE_LEVEL = """
import sys
from conduit import log
log.configure("console", "warning")
log.logger("conduit.apply").info("step.done", id="node-1")
log.logger("conduit.apply").debug("step.done", id="node-1")
print("structlog" in sys.modules)
log.logger("conduit.apply").warning("restore.waiting_for_docker", node="node-1")
print("structlog" in sys.modules)
"""


def test_an_event_below_the_chosen_level_is_dropped_without_loading_structlog():
    done = _run(BELOW_THE_LEVEL)
    assert done.stdout.split() == ["False", "True"]
    assert "step.done" not in done.stderr and "restore.waiting_for_docker" in done.stderr and "node=node-1" in done.stderr


CAPTURED = """
import structlog.testing
from conduit import log
log.configure("console", "warning")
with structlog.testing.capture_logs() as seen:
    log.logger("conduit.alerts").warning("alert.failed", channel="telegram")
print([event["event"] for event in seen])
"""


def test_a_configuration_in_place_when_structlog_loads_is_kept():
    done = _run(CAPTURED)
    assert done.stdout.strip() == "['alert.failed']" and "alert.failed" not in done.stderr


THREADED = """
import sys, threading
from conduit import log
log.configure("console", "warning")
busy = threading.Event()
threading.Thread(target=busy.wait, daemon=True).start()  # another thread, which might import rich meanwhile
log.logger("conduit.watch").warning("watch.failed")
import structlog.dev
print(structlog.dev.rich is not None)
busy.set()
"""


def test_structlog_first_loaded_beside_another_thread_hides_nothing_from_it():
    done = _run(THREADED)
    assert done.stdout.strip() == "True" and "watch.failed" in done.stderr
