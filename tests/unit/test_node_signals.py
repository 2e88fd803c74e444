"""Reading a node's own signals, from fixture files written from upstream at each tag.

Metrics: tests/fixtures/metrics/<profile>.txt, from Psiphon-Inc/conduit
cli/internal/metrics/metrics.go at release-cli-1.2.0, 1.5.0, 2.0.0 and ssmirr/conduit master.
Logs: tests/fixtures/logs/*.log as `docker logs --timestamps` gives them, the lines worded as
1.1.0 cli/cmd/start.go:136, 1.5.0 service.go:109,141,345, 2.0.0 service.go:113,145,431-432 and
scripts/monitor/main.go:273,318,349 print them.
conduit-monitor: cli/scripts/monitor/main.go at release-cli-2.0.0 (and 1.5.0: the same lines,
--max-clients for --max-common-clients at :320,322).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conduit.facts import metrics, nodelog
from conduit.facts.monitor import MonitorSettings, monitor_flags, monitor_settings, parse_traffic_state
from conduit.execute.nodehealth import Reading, Shape, judge, shape_of, throttled

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def samples(profile: str) -> dict:
    return metrics.parse((FIXTURES / "metrics" / f"{profile}.txt").read_text())


def log(name: str, started_at: str = "2026-01-02T10:00:00Z") -> list[str]:
    return nodelog.this_run((FIXTURES / "logs" / f"{name}.log").read_text(), started_at)


# ------------------------------------------------------------------ metrics


@pytest.mark.parametrize(
    "profile, max_clients, bandwidth, announced",
    [
        ("official-1.2.0", 50, 625000, True),  # conduit_max_clients
        ("official-1.5.0", 100, 0, True),  # 0 = unlimited
        ("official-2.0.0", 40, 250000, True),  # conduit_max_common_clients
        ("official-2.0.0-starting", 40, 250000, False),
        ("ssmirr-master", 200, 1250000, True),  # the community build keeps the 1.x name
    ],
)
def test_max_clients_by_whichever_name_the_endpoint_exposes(profile, max_clients, bandwidth, announced):
    found = samples(profile)
    assert metrics.max_clients(found) == max_clients
    assert metrics.bandwidth_limit(found) == bandwidth
    assert metrics.announced(found) is announced


def test_go_float_formatting_is_read():
    # strconv.FormatFloat(v, 'g', -1, 64): large gauges come out with an exponent
    assert metrics.value(samples("ssmirr-master"), "conduit_bytes_downloaded") == 987654321
    assert metrics.regions(samples("official-2.0.0"))["IR"] == {"connected": 5, "connecting": 2, "bytes_up": 524288, "bytes_down": 6500036}


# ------------------------------------------------------------------ logs


def test_start_line_of_each_version():
    assert nodelog.start_line(log("official-1.1.0")) == nodelog.StartLine(50, None, "5 Mbps")  # the last run's
    assert nodelog.start_line(log("official-1.5.0")) == nodelog.StartLine(100, None, "unlimited")
    assert nodelog.start_line(log("official-2.0.0-upgrade")) == nodelog.StartLine(40, 5, "2 Mbps")


def test_only_lines_of_the_current_run_count():
    assert nodelog.start_line(log("official-1.1.0", "2026-01-02T10:01:00.5Z")).max_clients == 50
    assert nodelog.start_line(log("official-1.1.0", "2026-01-02T10:01:00.500000001Z")) is None
    assert nodelog.instant("2026-01-02T13:30:00+03:30") == nodelog.instant("2026-01-02T10:00:00Z")
    assert nodelog.instant("2026-01-02T10:00:00.5Z") > nodelog.instant("2026-01-02T10:00:00.123456789Z")


def test_newer_version_warning():
    assert nodelog.upgrade_required(log("official-2.0.0-upgrade"))
    assert not nodelog.upgrade_required(log("official-1.5.0"))
    assert not nodelog.upgrade_required(log("official-2.0.0-upgrade", "2026-01-02T10:00:03Z"))  # a later run


def test_why_conduit_keeps_exiting_under_the_monitor():
    assert nodelog.last_error(log("monitor-2.0.0-crashloop")) == "[ERROR] Conduit exited with error: exit status 1"
    assert nodelog.last_error(log("monitor-2.0.0-crashloop")[:-1]) == "Error: unknown flag: --stats-file"


# ------------------------------------------------------------------ conduit-monitor


def test_monitor_settings_from_the_rendered_command():
    command = ["--traffic-limit", "500", "--traffic-period", "30", "--data-dir", "/home/conduit/data",
               "--metrics-addr", "127.0.0.1:9101", "--", "-m", "40", "-b", "2", "--min-connections", "99"]  # fmt: skip
    settings = monitor_settings(["conduit-monitor"], command)
    assert settings == MonitorSettings(min_connections=10, min_bandwidth_mbps=10.0, threshold_percent=80, data_dir="/home/conduit/data")
    assert settings.throttled_bandwidth == 1250000  # --bandwidth 10 -> 10*1000*1000/8
    assert monitor_settings(["conduit"], command) is None
    assert monitor_flags(["--min-connections=5", "-min-bandwidth", "2.6", "-d", "/data"]) == {"min-connections": "5", "min-bandwidth": "2.6", "data-dir": "/data"}
    assert monitor_settings(["/usr/bin/conduit-monitor"], ["--min-bandwidth", "2.6"]).throttled_bandwidth == 375000  # "%.0f" -> 3


def test_traffic_state():
    read = lambda name: parse_traffic_state((FIXTURES / "monitor" / f"traffic_state-{name}.json").read_bytes())  # noqa: E731
    assert read("throttled").throttled is True and read("throttled").bytes_used == 92341796864
    assert read("normal").throttled is False
    assert read("half-written") is None  # os.WriteFile in place: a reader can catch it half-written


# ------------------------------------------------------------------ the verdict

MONITORED = Shape(MonitorSettings(), True)
PLAIN = Shape(None, True)
running = dict(status="running", running=True, started_at="2026-01-02T10:00:00Z")


def test_shape_is_read_from_the_container_itself():
    assert shape_of({"Entrypoint": ["conduit"], "Cmd": ["start", "-m", "5", "--metrics-addr", "127.0.0.1:1"]}) == PLAIN
    assert shape_of({"Entrypoint": ["conduit"], "Cmd": ["start", "--max-clients", "5", "-d", "/data"]}) == Shape(None, False)
    assert shape_of({"Entrypoint": ["conduit-monitor"], "Cmd": ["--traffic-limit", "100", "--metrics-addr=:9090", "--"]}) == MONITORED


@pytest.mark.parametrize("profile", ["official-2.0.0-throttled", "official-1.5.0-throttled"])
def test_a_node_at_the_monitors_throttle_is_healthy(profile):
    found = samples(profile)
    traffic = parse_traffic_state((FIXTURES / "monitor/traffic_state-throttled.json").read_bytes())
    verdict = judge("n", 40, 9101, MONITORED, Reading(**running, samples=found, traffic=traffic))
    assert verdict.healthy and verdict.throttled
    # the monitor's state unreadable (a remote engine): the throttle's bandwidth says it
    assert judge("n", 40, 9101, MONITORED, Reading(**running, samples=found)).throttled
    # the monitor says it is not throttled: 10 is not what this node was told
    normal = parse_traffic_state((FIXTURES / "monitor/traffic_state-normal.json").read_bytes())
    assert judge("n", 40, 9101, MONITORED, Reading(**running, samples=found, traffic=normal)).reason.endswith("report max clients 10, not 40")
    # without a monitor, 10 is simply wrong
    assert not judge("n", 40, 9101, PLAIN, Reading(**running, samples=found)).healthy
    assert not throttled(None, found, traffic)


def test_a_monitored_container_without_a_conduit_is_dead():
    verdict = judge("n", 40, 9101, MONITORED, Reading(**running, restarts=0, log=log("monitor-2.0.0-crashloop")))
    assert not verdict.healthy and verdict.dead
    assert "runs conduit-monitor but no conduit" in verdict.reason and "exits every 5 s" in verdict.reason
    assert verdict.reason.endswith("last error: [ERROR] Conduit exited with error: exit status 1")
    plain = judge("n", 40, 9101, PLAIN, Reading(**running))
    assert not plain.dead and plain.reason == "container n metrics on 127.0.0.1:9101 do not answer"


def test_a_node_without_metrics_is_judged_by_its_start_line():
    shape = Shape(None, False)
    assert judge("n", 50, 0, shape, Reading(**running, log=log("official-1.1.0"))).healthy
    wrong = judge("n", 100, 0, shape, Reading(**running, log=log("official-1.1.0")))
    assert wrong.reason == "container n logged that it started with max clients 50, not 100"
    assert "has not logged its start line" in judge("n", 50, 0, shape, Reading(**running)).reason


def test_either_metric_name_passes_the_gate():
    for profile, want in (("official-1.5.0", 100), ("official-2.0.0", 40), ("ssmirr-master", 200)):
        assert judge("n", want, 1, PLAIN, Reading(**running, samples=samples(profile))).healthy


def test_a_stopped_container_fails_first():
    verdict = judge("n", 40, 1, PLAIN, Reading("exited", exit_code=3))
    assert verdict.reason == "container n is exited (exit code 3)"


def test_a_run_begins_where_the_previous_one_finished_not_at_started_at():
    """The engine stamps StartedAt after the process runs: a line printed at once can be older."""
    raw = (
        "2026-01-02T09:00:00.000000000Z Starting Psiphon Conduit (Max Clients: 10, Bandwidth: 5 Mbps)\n"
        "2026-01-02T09:59:59.000000000Z Stopped.\n"
        "2026-01-02T10:00:00.100000000Z Starting Psiphon Conduit (Max Clients: 37, Bandwidth: 5 Mbps)\n"
    )
    started, finished = "2026-01-02T10:00:00.200000000Z", "2026-01-02T09:59:59.500000000Z"
    assert nodelog.start_line(nodelog.this_run(raw, started)) is None  # the line predates StartedAt
    bound = nodelog.run_start(started, finished)
    assert nodelog.start_line(nodelog.this_run(raw, bound)).max_clients == 37
    assert nodelog.run_start(started, "0001-01-01T00:00:00Z") == ""  # a first run: the whole log
