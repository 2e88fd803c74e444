"""docs/grafana-dashboard.json asks only for series that /metrics serves."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conduit.views.status import render_prometheus
from tests.helpers import ROOT
from tests.unit.test_serve import observation

NAME = re.compile(r"\bconduit_[a-zA-Z0-9_:]+")


def _exprs(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs + [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


@pytest.mark.parametrize("board", ["grafana-dashboard.json", "grafana-fleet-dashboard.json"])
def test_every_metric_the_dashboard_uses_is_in_the_scrape(board):
    dashboard = json.loads((ROOT / "docs" / board).read_text())
    served = {line.split()[2] for line in render_prometheus(observation()).splitlines() if line.startswith("# TYPE ")}
    used = {name for expr in _exprs(dashboard) for name in NAME.findall(expr)}
    assert used and used <= served, sorted(used - served)
    assert {"conduit_cluster_connected_clients", "conduit_cluster_node_up", "conduit_cluster_total_connected_clients"} <= used


def test_the_scrape_config_sends_the_token_from_a_file():
    job = yaml.safe_load((ROOT / "docs" / "prometheus-scrape.yml").read_text())["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["credentials_file"]


def test_the_fleet_board_selects_hosts_by_the_labels_the_targets_carry():
    dashboard = json.loads((ROOT / "docs" / "grafana-fleet-dashboard.json").read_text())
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"host", "ring"}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs and all('host=~"$host"' in e for e in exprs if "conduit_" in e)
    fleet = yaml.safe_load((ROOT / "docs" / "prometheus-scrape.yml").read_text())["scrape_configs"][1]
    assert fleet["http_sd_configs"][0]["url"].endswith("/api/v1/fleet/targets")
