"""The 1.x stats file (`--stats-file`, stats.json in the data dir), trusted only when it is fresh.

Psiphon-Inc/conduit cli/internal/conduit/service.go at release-cli-1.5.0: the file is written
from the [STATS] print (:445-458), which runs when the client counts change (:335, :393), not
at start; it is written in place with os.WriteFile (:512-526, not atomically) and stamped
with time.Now().Format(time.RFC3339) (:454). So a file left by an earlier run says nothing
about the node now: only a timestamp at or after the container's start counts. The
community build (ssmirr) adds a `geo` list of clients per country.
"""

from __future__ import annotations

import json

from conduit.facts.nodelog import instant

STATS_FILE = "stats.json"
_FIELDS = {
    "conduit_connected_clients": "connectedClients",
    "conduit_connecting_clients": "connectingClients",
    "conduit_bytes_uploaded": "totalBytesUp",
    "conduit_bytes_downloaded": "totalBytesDown",
    "conduit_is_live": "isLive",
    "conduit_uptime_seconds": "uptimeSeconds",
}


def parse_stats(data: bytes) -> dict | None:
    """The file's fields, or None when it is half-written or not a stats file."""
    try:
        stats = json.loads(data)
    except ValueError:
        return None
    return stats if isinstance(stats, dict) and "timestamp" in stats else None


def fresh(stats: dict, started_at: str) -> bool:
    """Written by the current run: its (whole-second) timestamp is not before the start's second."""
    written, started = instant(str(stats.get("timestamp") or "")), instant(started_at)
    return written is not None and started is not None and written[0] >= started[0]


def as_samples(stats: dict) -> dict:
    """The file in the shape of scraped metrics, the --geo list as region gauges."""
    samples = {(metric, ()): float(stats.get(key) or 0) for metric, key in _FIELDS.items()}
    for entry in stats.get("geo") or []:
        if not isinstance(entry, dict):
            continue
        code = str(entry.get("code") or "ZZ")
        labels = (("region", "ZZ" if code == "RELAY" else code), ("scope", "common"))  # RELAY: a TURN relay, place unknown
        for metric, key in (
            ("conduit_region_connected_clients", "count"),
            ("conduit_region_bytes_uploaded", "bytes_up"),
            ("conduit_region_bytes_downloaded", "bytes_down"),
        ):
            samples[(metric, labels)] = samples.get((metric, labels), 0.0) + float(entry.get(key) or 0)
    return samples
