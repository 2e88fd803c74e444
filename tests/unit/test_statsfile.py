"""The 1.x stats file is trusted only when the current run wrote it.

Psiphon-Inc/conduit release-cli-1.5.0 cli/internal/conduit/service.go: written from the
[STATS] print when client counts change (:335, :393, :445-458), not at start, in place
(os.WriteFile, :512-526), stamped time.Now().Format(time.RFC3339) (:454) in local time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conduit.facts import metrics
from conduit.drivers.node import read_stats
from conduit.facts.statsfile import fresh, parse_stats

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "stats" / "official-1.5.0.json"


def test_fresh_only_when_written_since_the_container_started():
    stats = parse_stats(FIXTURE.read_bytes())  # 2026-01-02T13:31:05+03:30 = 10:01:05Z
    assert fresh(stats, "2026-01-02T10:00:00.5Z")
    assert fresh(stats, "2026-01-02T10:01:05.900000000Z")  # RFC3339 has whole seconds: same second counts
    assert not fresh(stats, "2026-01-02T10:01:06Z")
    assert not fresh({"timestamp": "yesterday"}, "2026-01-02T10:00:00Z")


def test_read_stats_from_a_volume(tmp_path):
    shutil.copy(FIXTURE, tmp_path / "stats.json")
    samples, stale = read_stats(tmp_path, "2026-01-02T10:00:00Z")
    assert not stale and metrics.value(samples, "conduit_connected_clients") == 2
    assert metrics.value(samples, "conduit_bytes_downloaded") == 4096 and metrics.announced(samples)
    assert read_stats(tmp_path, "2026-01-03T00:00:00Z") == ({}, True)
    (tmp_path / "stats.json").write_text('{\n  "announcing": 1,\n  "connecting')  # caught mid-write
    assert read_stats(tmp_path, "2026-01-02T10:00:00Z") == ({}, False)
    assert read_stats(tmp_path / "none", "2026-01-02T10:00:00Z") == ({}, False)


def test_the_community_geo_list_becomes_region_gauges(tmp_path):
    import json

    stats = json.loads(FIXTURE.read_text()) | {"geo": [{"code": "IR", "count": 3, "bytes_up": 10, "bytes_down": 20}, {"code": "RELAY", "count": 1}]}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    samples, _ = read_stats(tmp_path, "2026-01-02T10:00:00Z")
    assert metrics.regions(samples)["IR"]["connected"] == 3 and metrics.regions(samples)["ZZ"]["connected"] == 1

