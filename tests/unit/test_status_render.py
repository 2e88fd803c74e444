"""How status words a node's signals: announced (not "live"), throttled, dead, upgrade, stale."""

from __future__ import annotations

from rich.console import Console

from conduit.facts import metrics
from conduit.views.status import limit_drift, node_state, render_prometheus
from conduit.views.status_table import render_text


def row(name: str, **over) -> dict:
    base = {
        "name": name, "index": 1, "state": "running", "up": True, "connected": 1, "connecting": 0, "max_clients": 40,
        "max_clients_seen": 40, "bytes_up": 10, "bytes_down": 20, "lifetime_bytes_up": 1 << 30, "lifetime_bytes_down": 3 << 30,
        "announced": True, "throttled": False, "dead": False, "upgrade_required": False, "stats_stale": False,
        "suspicious": False, "planted": None,
        "cpu": 0.1, "cpu_limit": 1.0, "memory": 1 << 20, "memory_limit": 1 << 30, "restarts": 0, "regions": {},
    }  # fmt: skip
    return base | over


DATA = {
    "cluster": "c",
    "containers": [
        row("c-1", version="official 2.0.0", digest="sha256:41bdc1cb5822aaaa", image_id="sha256:dc3e"),
        row("c-2", announced=False, image_id="sha256:dc3e41bc94ce77", suspicious=True,
            planted="node c-2 planted a link at traffic_state.json in its volume: it may be compromised; inspect the volume, then restore its key from a backup"),
        row("c-3", throttled=True, max_clients_seen=10),
        row("c-4", up=False, dead=True, max_clients_seen=None, lifetime_bytes_up=None, lifetime_bytes_down=None),
        row("c-5", upgrade_required=True),
        row("c-6", up=False, stats_stale=True),
        row("c-7", state="exited", up=False),
    ],
    "totals": {"containers": 7, "running": 6, "up": 4, "connected": 4, "connecting": 0, "bytes_up": 40, "bytes_down": 80,
               "lifetime_bytes_up": 5 << 30, "lifetime_bytes_down": 15 << 30},  # fmt: skip
    "front": None, "countries": [], "generation": None, "watch": None,
}


def test_one_word_per_node():
    assert [node_state(r) for r in DATA["containers"]] == ["announced", "starting", "throttled", "dead", "announced", "stale stats", "exited"]


def test_text_flags_what_needs_the_operator():
    console = Console(width=80, record=True, highlight=False)
    console.print(render_text(DATA))
    text = console.export_text()
    assert "UPGRADE REQUIRED: c-5" in text and "dead: c-4" in text and "throttled by conduit-monitor (data cap): c-3" in text
    assert "10/40" in text and "stale stats file (from an earlier run): c-6" in text
    assert "SUSPICIOUS: c-2 planted a link or a special file in the volume" in " ".join(text.split())
    assert "lifetime: up 5.0 GiB, down 15.0 GiB" in text and " live" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_running_limit_other_than_the_specs_reads_run_and_spec_in_yellow():
    rows = [row("c-1", cpu_limit_seen=1.0, memory_limit_seen=1 << 30),  # runs what the spec says
            row("c-2", cpu_limit_seen=2.0, memory_limit_seen=512 << 20),  # changed by hand
            row("c-3", cpu_limit_seen=0.0, memory_limit_seen=0, cpu=None)]  # no limit at all  # fmt: skip
    assert [(limit_drift(r, "cpu_limit"), limit_drift(r, "memory_limit")) for r in rows] == [(False, False), (True, True), (True, True)]
    console = Console(width=120, record=True, highlight=False)
    console.print(render_text(dict(DATA, containers=rows)))
    lines = {line.split()[1]: line for line in console.export_text().splitlines() if line.startswith("│ c-")}
    assert "0.10/1 " in lines["c-1"] and "1MiB/1GiB " in lines["c-1"] and "spec" not in lines["c-1"]
    assert "0.10/2 (spec 1)" in lines["c-2"] and "1MiB/512MiB (spec 1GiB)" in lines["c-2"]
    assert "-/none (spec 1)" in lines["c-3"] and "1MiB/none (spec 1GiB)" in lines["c-3"]
    console = Console(width=120, record=True, color_system="standard")
    console.print(render_text(dict(DATA, containers=rows[1:2])))
    assert "\x1b[33m0.10/2 (spec 1)" in console.export_text(styles=True)


def test_each_image_the_nodes_run_is_one_line_with_its_nodes():
    console = Console(width=80, record=True, highlight=False)
    console.print(render_text(DATA))
    images = [line.strip() for line in console.export_text().splitlines() if line.startswith("image ")]
    assert images == ["image official 2.0.0 41bdc1cb5822: c-1", "image dc3e41bc94ce: c-2"]


def test_prometheus_counts_lifetime_bytes_as_counters():
    scrape = render_prometheus(DATA)
    assert "# TYPE conduit_cluster_node_bytes_uploaded_total counter" in scrape
    assert "# TYPE conduit_cluster_bytes_uploaded gauge" in scrape  # the run's own figure restarts at 0
    parsed = metrics.parse(scrape)
    assert metrics.value(parsed, "conduit_cluster_node_bytes_downloaded_total", cluster="c", node="c-1") == 3 << 30
    assert metrics.value(parsed, "conduit_cluster_node_bytes_downloaded_total", cluster="c", node="c-4") is None
    assert metrics.value(parsed, "conduit_cluster_node_upgrade_required", cluster="c", node="c-5") == 1
    assert metrics.value(parsed, "conduit_cluster_node_throttled", cluster="c", node="c-3") == 1
    assert metrics.value(parsed, "conduit_cluster_node_dead", cluster="c", node="c-4") == 1
    assert metrics.value(parsed, "conduit_cluster_node_announced", cluster="c", node="c-2") == 0
    assert metrics.value(parsed, "conduit_cluster_node_suspicious", cluster="c", node="c-2") == 1
    assert metrics.value(parsed, "conduit_cluster_node_suspicious", cluster="c", node="c-1") == 0


def test_front_load_against_its_ceiling():
    front = [{"listener": "tcp", "port": "8443/tcp", "listening": True, "backends_up": 4, "backends": 4}]
    load = {"running": True, "connections": 8000, "ceiling": 9004, "sessions": 4000, "workers": 2}
    console = Console(width=120, record=True, highlight=False)
    console.print(render_text(dict(DATA, front=front, front_capacity=load)))
    text = console.export_text()
    assert "front nginx: 8000 of 9004 connections in 2 workers (sized for 4000 sessions, two connections each)" in text
    console = Console(width=120, record=True, highlight=False)
    console.print(render_text(dict(DATA, front=front, front_capacity=dict(load, running=False))))
    assert "front nginx: NOT running" in console.export_text()


def test_the_pending_changes_are_counted_in_words_that_agree():
    from conduit.views.status_table import _drift_lines

    assert [str(line) for line in _drift_lines({"pending": 1})] == ["1 change pending (conduit plan)"]
    assert [str(line) for line in _drift_lines({"pending": 3})] == ["3 changes pending (conduit plan)"]
    assert [str(line) for line in _drift_lines({"pending": 0})] == ["no drift"]


def test_after_a_failed_apply_status_leads_with_the_generation_the_host_runs():
    console = Console(width=200, record=True)
    failed = {"id": 5, "outcome": "rolled_back", "git_commit": None, "reason": "container c-1 is restarting (exit code 3)", "running": 4}
    console.print(render_text(dict(DATA, generation=failed)))
    assert "generation 4 running; 5 rolled_back: container c-1 is restarting (exit code 3)" in console.export_text()
    console = Console(width=200, record=True)
    console.print(render_text(dict(DATA, generation={"id": 4, "outcome": "succeeded", "git_commit": None, "reason": None, "running": 4})))
    assert "generation 4 succeeded" in console.export_text() and "running;" not in console.export_text()
