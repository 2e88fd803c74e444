"""A Conduit node's Prometheus metrics, parsed: the way to observe what a node does (asked by conduit.drivers.node)."""

from __future__ import annotations

import re

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> dict[Sample, float]:
    """Prometheus text format into {(name, sorted labels): value}; comments and junk are skipped."""
    out: dict[Sample, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        out[(name, tuple(sorted(_LABEL.findall(labels or ""))))] = number
    return out


def value(samples: dict[Sample, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


# The broker names a client's country (a two-letter code); a node that names thousands, or long
# ones, must not grow the tracker's samples and the state DB without end: the busiest are kept.
MAX_REGIONS = 300
_REGION = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


def regions(samples: dict[Sample, float]) -> dict[str, dict[str, float]]:
    """Per-country figures of a 2.x node: {"IR": {"connected": 3, "bytes_up": .., "bytes_down": ..}};
    at most MAX_REGIONS of them (the most bytes first), each a short plain name."""
    fields = {
        "conduit_region_connected_clients": "connected",
        "conduit_region_connecting_clients": "connecting",
        "conduit_region_bytes_uploaded": "bytes_up",
        "conduit_region_bytes_downloaded": "bytes_down",
    }
    out: dict[str, dict[str, float]] = {}
    for (name, labels), number in samples.items():
        if name in fields:
            region = dict(labels).get("region")
            if region and _REGION.match(region):
                entry = out.setdefault(region, {"connected": 0, "connecting": 0, "bytes_up": 0, "bytes_down": 0})
                entry[fields[name]] += number
    if len(out) <= MAX_REGIONS:
        return out
    busiest = sorted(out, key=lambda r: (-(out[r]["bytes_up"] + out[r]["bytes_down"]), -out[r]["connected"], r))[:MAX_REGIONS]
    return {region: out[region] for region in busiest}


# ------------------------------------------------------------------ what the names mean, per version

# 1.2-1.5 and the community build (ssmirr) expose conduit_max_clients; 2.0 renamed it
# conduit_max_common_clients and added conduit_max_personal_clients (Psiphon-Inc/conduit
# cli/internal/metrics/metrics.go:87-91 at release-cli-1.2.0, :114-129 at release-cli-2.0.0).
MAX_CLIENTS_NAMES = ("conduit_max_common_clients", "conduit_max_clients")


def max_clients(samples: dict[Sample, float]) -> int | None:
    """The (common) max clients the node runs with, by whichever name its endpoint exposes."""
    for name in MAX_CLIENTS_NAMES:
        found = value(samples, name)
        if found is not None:
            return int(found)
    return None


def bandwidth_limit(samples: dict[Sample, float]) -> int | None:
    """Bytes per second per client the node applies; 0 means unlimited."""
    found = value(samples, "conduit_bandwidth_limit_bytes_per_second")
    return None if found is None else int(found)


def announced(samples: dict[Sample, float]) -> bool:
    """conduit_is_live: 0 until the node first announces (or has a client), then 1 for the run.

    It never returns to 0 (service.go:353-354 at release-cli-2.0.0; 1.4 :326-327), so it says
    "has announced since it started", not "is connected now".
    """
    return bool(value(samples, "conduit_is_live"))
