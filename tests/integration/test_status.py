"""conduit status against a real 10-node cluster of stand-ins."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from harness import free_port_block
from conduit.facts import metrics
from tests.helpers import cli_env
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup):
    return Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("st"), free_port_block(12))


def test_status_sums_clients_and_marks_a_stopped_node_down(cluster):
    cluster.write(count=10, env={"STANDIN_REGIONS": "IR=3:1000:2000,CN=2:10:20"})
    result = cluster.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    cluster.engine.client.containers.get(f"{cluster.prefix}-4").stop(timeout=5)

    data = json.loads(cluster.run("status", "--json", str(cluster.spec)).stdout)
    rows = {r["name"]: r for r in data["containers"]}
    assert len(rows) == 10
    assert rows[f"{cluster.prefix}-4"]["state"] == "exited" and rows[f"{cluster.prefix}-4"]["up"] is False
    assert all(r["up"] and r["connected"] == 5 for name, r in rows.items() if name != f"{cluster.prefix}-4")
    assert data["totals"] == {
        "containers": 10, "running": 9, "up": 9, "connected": 45, "connecting": 0,
        "bytes_up": 9 * 1010, "bytes_down": 9 * 2020,
        "lifetime_bytes_up": 9 * 1010, "lifetime_bytes_down": 9 * 2020,
    }  # fmt: skip
    assert all(r["announced"] and not r["throttled"] and not r["dead"] for r in rows.values() if r["up"])
    assert all(r["memory"] and r["memory_limit"] == 96 << 20 for r in rows.values() if r["up"])
    assert data["drift"] == [f"container {cluster.prefix}-4"]
    assert data["generation"]["outcome"] == "succeeded"

    text = cluster.run("status", "--no-drift", str(cluster.spec))
    assert text.returncode == 0 and f"{cluster.prefix}: 9/10 running, 45 clients connected" in text.stdout
    assert "announced" in text.stdout and " live" not in text.stdout
    assert max(len(line) for line in text.stdout.splitlines()) <= 80  # rich lays it out for 80 columns off a terminal

    scrape = metrics.parse(cluster.run("status", "--prometheus", "--no-drift", str(cluster.spec)).stdout)
    assert metrics.value(scrape, "conduit_cluster_total_connected_clients", cluster=cluster.prefix) == 45
    assert metrics.value(scrape, "conduit_cluster_node_up", cluster=cluster.prefix, node=f"{cluster.prefix}-4") == 0


def test_a_1x_node_without_metrics_is_read_from_its_stats_file(tmp_path, docker_engine, standin_image_v1, docker_cleanup):
    """A 1.x node whose metrics are off (STANDIN_NO_METRICS) still shows its clients via stats.json."""
    cluster = Cluster(tmp_path, docker_engine, standin_image_v1, docker_cleanup.name("st1"), free_port_block(4))
    cluster.write(count=1, env={"STANDIN_NO_METRICS": "1", "STANDIN_REGIONS": "IR=2:10:20"})
    spec = cluster.spec.read_text().replace("  conduit:\n", "  conduit:\n    cli_version: 1.x\n")
    cluster.spec.write_text(spec)
    # Applying would fail its metrics gate; make the node by hand as a 1.x manager would have.
    from tests.integration.test_plan_host import converge
    from conduit.drivers.observe import HostAccess

    converge(HostAccess(cluster.root, cluster.state, docker_engine.host), cluster.spec.read_text())
    from harness import wait_for

    def connected():
        data = json.loads(cluster.run("status", "--json", "--no-drift", str(cluster.spec)).stdout)
        return data["totals"]["connected"] or None

    assert wait_for(connected, timeout=20, message="stats.json read") == 2


def test_a_nodes_own_geo_list_is_merged_into_the_countries(tmp_path, docker_engine, standin_image_community, docker_cleanup):
    """A 1.x node of the community build (--geo) lists clients per country in its stats file."""
    cluster = Cluster(tmp_path, docker_engine, standin_image_community, docker_cleanup.name("st2"), free_port_block(4))
    cluster.write(count=1, env={"STANDIN_NO_METRICS": "1", "STANDIN_REGIONS": "IR=3:100:200,DE=1:5:6"})
    spec = cluster.spec.read_text().replace("  conduit:\n", "  conduit:\n    cli_version: 1.x\n    extra_args: [--geo]\n")
    cluster.spec.write_text(spec)
    from tests.integration.test_plan_host import converge
    from conduit.drivers.observe import HostAccess
    from harness import wait_for

    converge(HostAccess(cluster.root, cluster.state, docker_engine.host), cluster.spec.read_text())

    def countries():
        data = json.loads(cluster.run("status", "--json", "--no-drift", str(cluster.spec)).stdout)
        return data["countries"] or None

    assert wait_for(countries, timeout=20, message="the geo list read") == [
        {"region": "IR", "clients": 3, "bytes_up": 100, "bytes_down": 200},
        {"region": "DE", "clients": 1, "bytes_up": 5, "bytes_down": 6},
    ]


def test_lifetime_bytes_survive_a_restart(cluster):
    """bytes_uploaded/downloaded restart at 0 with the node; status keeps the sum in the state DB."""
    cluster.write(count=2, env={"STANDIN_REGIONS": "IR=1:1000:3000"})
    assert cluster.apply().returncode == 0
    first = json.loads(cluster.run("status", "--json", "--no-drift", str(cluster.spec)).stdout)
    assert [(r["lifetime_bytes_up"], r["lifetime_bytes_down"]) for r in first["containers"]] == [(1000, 3000), (1000, 3000)]
    again = json.loads(cluster.run("status", "--json", "--no-drift", str(cluster.spec)).stdout)
    assert again["totals"]["lifetime_bytes_up"] == 2000  # the same run read twice counts once

    cluster.engine.client.containers.get(f"{cluster.prefix}-1").restart(timeout=5)
    from harness import wait_for

    def restarted():
        data = json.loads(cluster.run("status", "--json", "--no-drift", str(cluster.spec)).stdout)
        node = data["containers"][0]
        return data if node["up"] and node["bytes_up"] else None  # back, and its new run has counted

    data = wait_for(restarted, timeout=20, message="node 1 back")
    rows = {r["name"]: r for r in data["containers"]}
    assert rows[f"{cluster.prefix}-1"]["bytes_up"] == 1000 and rows[f"{cluster.prefix}-1"]["lifetime_bytes_up"] == 2000
    assert rows[f"{cluster.prefix}-2"]["lifetime_bytes_up"] == 1000
    scrape = metrics.parse(cluster.run("status", "--prometheus", "--no-drift", str(cluster.spec)).stdout)
    assert metrics.value(scrape, "conduit_cluster_node_bytes_downloaded_total", cluster=cluster.prefix, node=f"{cluster.prefix}-1") == 6000



def test_a_broken_spec_still_shows_the_nodes_and_a_stopped_watchers_old_error(cluster):
    import subprocess
    import time

    cluster.write(count=2)
    assert cluster.apply().returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs: the watcher that wrote the record stopped
    record = {"pid": gone.pid, "last_reconcile": time.time() - 60, "last_result": "failed",
              "last_error": "an old failure", "last_error_at": time.time() - 60}  # fmt: skip
    (cluster.state / "watch.json").write_text(json.dumps(record))
    cluster.spec.write_text(cluster.spec.read_text().replace("count: 2", "count: many"))

    result = cluster.run("status", "--no-drift", str(cluster.spec))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{cluster.prefix}-1" in result.stdout and f"{cluster.prefix}-2" in result.stdout
    assert "2/2 running" in result.stdout
    text = " ".join(result.stdout.split())  # rich wraps at 80 columns
    assert f"watch: NOT running (pid {gone.pid} is gone" in text and "its last error, from " in text and "an old failure" in text
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith(f"error: {cluster.spec}:") and "containers.count" in error
    assert error.endswith(f"; shown as generation 1 of {cluster.prefix} describes the cluster; fix the spec file")

    data = json.loads(cluster.run("status", "--json", "--no-drift", str(cluster.spec)).stdout)
    assert len(data["containers"]) == 2 and data["watch"]["running"] is False and "containers.count" in data["spec_error"]

    other = cluster.spec.with_name("other.yaml")  # another cluster's broken spec: its own error, not this cluster's nodes
    other.write_text(cluster.spec.read_text().replace(f"name: {cluster.prefix}", "name: other"))
    result = cluster.run("status", "--no-drift", str(other))
    assert (result.returncode, result.stdout) == (2, ""), result.stdout
    assert result.stderr.startswith(f"{other}:") and "containers.count" in result.stderr


def _first_frame(argv: list[str], until: bytes = b"running") -> tuple[str, int, str]:
    """Run `status --watch` on a terminal (like top, it draws there), read until its output shows
    `until`, then Ctrl-C it: what it drew, its exit code, and what it wrote after the Ctrl-C."""
    main, side = pty.openpty()
    process = subprocess.Popen(argv, stdout=side, stderr=side, stdin=subprocess.DEVNULL, env=cli_env())
    os.close(side)
    seen, after, deadline = b"", b"", time.monotonic() + 60
    try:
        while until not in seen and select.select([main], [], [], max(0.0, deadline - time.monotonic()))[0]:
            seen += os.read(main, 65536)
        process.send_signal(signal.SIGINT)
        while select.select([main], [], [], 30)[0]:
            piece = os.read(main, 65536)
            if not piece:
                break
            after += piece
    except OSError:  # the process ended and the terminal closed
        pass
    code = process.wait(timeout=30)
    os.close(main)
    return seen.decode(errors="replace"), code, after.decode(errors="replace")


SHOW_CURSOR = "\x1b[?25h"


@pytest.mark.parametrize("args", [("--watch", "{spec}"), ("{spec}", "--watch"), ("--watch", "0.2", "{spec}")], ids=["watch-file", "file-watch", "seconds"])
def test_status_watch_takes_the_file_on_either_side_and_stops_on_ctrl_c(cluster, args):
    """`status --watch FILE` reads FILE as the spec, as `status FILE --watch` does, not as seconds."""
    cluster.write(count=1)
    assert cluster.apply().returncode == 0
    drawn, code, after = _first_frame(cluster.argv("status", "--no-drift", *(a.format(spec=cluster.spec) for a in args)))
    assert f"{cluster.prefix}: 1/1 running" in drawn, drawn
    assert code == 0, drawn + after
    assert SHOW_CURSOR in after, after


def test_status_watch_stopped_while_drawing_its_first_frame_ends_cleanly(cluster):
    """A Ctrl-C that lands while the first frame is still being written ends the watch with exit 0
    and gives the terminal its cursor back, instead of aborting mid-frame."""
    cluster.write(count=1)
    assert cluster.apply().returncode == 0
    drawn, code, after = _first_frame(cluster.argv("status", "--no-drift", "--watch", "0.2", str(cluster.spec)), until=b"\x1b[?25l")
    assert code == 0, drawn + after
    assert SHOW_CURSOR in after, drawn + after


def test_status_watch_of_no_number_beside_a_file_is_one_line(cluster):
    cluster.write(count=1)
    result = cluster.run("status", str(cluster.spec), "--watch", "soon")
    assert (result.returncode, result.stderr) == (2, "error: --watch takes seconds, not 'soon': `conduit status FILE --watch [SECONDS]`\n")
