"""conduit status against a real 10-node cluster of stand-ins."""

from __future__ import annotations

import json

import pytest

from conduit.reconciler import metrics
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup):
    return Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("st"), 19700)


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
    }  # fmt: skip
    assert all(r["memory"] and r["memory_limit"] == 96 << 20 for r in rows.values() if r["up"])
    assert data["drift"] == [f"container {cluster.prefix}-4"]
    assert data["generation"]["outcome"] == "succeeded"

    text = cluster.run("status", "--no-drift", str(cluster.spec))
    assert text.returncode == 0 and f"{cluster.prefix}: 9/10 running, 45 clients connected" in text.stdout
    assert max(len(line) for line in text.stdout.splitlines()) <= 80  # rich lays it out for 80 columns off a terminal

    scrape = metrics.parse(cluster.run("status", "--prometheus", "--no-drift", str(cluster.spec)).stdout)
    assert metrics.value(scrape, "conduit_cluster_connected_clients_total", cluster=cluster.prefix) == 45
    assert metrics.value(scrape, "conduit_cluster_node_up", cluster=cluster.prefix, node=f"{cluster.prefix}-4") == 0
