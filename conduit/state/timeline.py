"""The nodes over time: clients, connecting clients, bytes moved and uptime, per node, and clients
per country, as the agent observed them (conduit serve), for the dashboard's charts and totals.

Each minute the agent writes one point per node; the same point is merged at once into its
15-minute and its hourly bucket (means weighted by observations, bytes added), so there is no
separate downsampling pass and every range reads finished figures. What each resolution keeps:

- 1 minute for 48 hours: the last hour in full detail, yesterday at this time to compare with;
- 15 minutes for 8 days: "today" whatever the time zone, and a week with a day to spare;
- 1 hour for 35 days: 30 days and "this month" (a month started up to 31 days ago).

For 40 nodes that is at most 40 x (2880 + 768 + 840) rows: bench/history_size.py prints the size.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

from conduit.state.db import Store, guarded

# (bucket seconds, seconds kept)
TIERS = ((60, 48 * 3600), (900, 8 * 86400), (3600, 35 * 86400))
COUNTRY_TIERS = TIERS[1:]  # per minute, a hundred countries would be most of the database
# A range the page asks for: which resolution it reads and the step of its points.
RANGES = {"1h": (3600, 60, 60), "24h": (86400, 60, 600), "7d": (7 * 86400, 900, 3600), "30d": (30 * 86400, 3600, 10800)}


@dataclass(frozen=True)
class Minute:
    """One node in one minute: `n` observations, `up` of them up; mean clients; bytes moved."""

    n: int
    up: int
    clients: float
    connecting: float
    bytes_up: int
    bytes_down: int


_MERGE = """INSERT INTO timeline (tier, at, node, n, up, clients, connecting, bytes_up, bytes_down)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tier, at, node) DO UPDATE SET
    clients = (clients * n + excluded.clients * excluded.n) / (n + excluded.n),
    connecting = (connecting * n + excluded.connecting * excluded.n) / (n + excluded.n),
    n = n + excluded.n, up = up + excluded.up,
    bytes_up = bytes_up + excluded.bytes_up, bytes_down = bytes_down + excluded.bytes_down"""

_MERGE_COUNTRY = """INSERT INTO timeline_countries (tier, at, region, n, clients) VALUES (?, ?, ?, 1, ?)
ON CONFLICT (tier, at, region) DO UPDATE SET clients = (clients * n + excluded.clients) / (n + 1), n = n + 1"""


class Timeline(Store):
    @guarded("record the timeline")
    def record(self, at: float, nodes: dict[str, Minute], countries: dict[str, float]) -> None:
        """The minute starting at `at` merged into every resolution, and what is past each one's keep dropped."""
        minute = int(at) - int(at) % 60
        with closing(self.db.connect()) as db:
            db.execute("BEGIN")
            for tier, keep in TIERS:
                bucket = minute - minute % tier
                db.executemany(_MERGE, [(tier, bucket, node, m.n, m.up, m.clients, m.connecting, m.bytes_up, m.bytes_down)
                                        for node, m in sorted(nodes.items())])  # fmt: skip
                db.execute("DELETE FROM timeline WHERE tier = ? AND at < ?", (tier, minute - keep))
            for tier, keep in COUNTRY_TIERS:
                bucket = minute - minute % tier
                db.executemany(_MERGE_COUNTRY, [(tier, bucket, region, clients) for region, clients in sorted(countries.items())])
                db.execute("DELETE FROM timeline_countries WHERE tier = ? AND at < ?", (tier, minute - keep))
            db.execute("COMMIT")

    @guarded("read the timeline")
    def series(self, span: str, now: float) -> dict:
        """The range `span` (a key of RANGES): points of the cluster's totals, each node's clients and
        uptime, and the countries' clients; one point per step, only where something was observed."""
        seconds, tier, step = RANGES[span]
        since = int(now) - seconds
        with closing(self.db.connect()) as db:
            rows = db.execute(
                "SELECT at / ? * ? AS b, node, SUM(n), SUM(up), SUM(clients * n) / SUM(n), SUM(connecting * n) / SUM(n), "
                "SUM(bytes_up), SUM(bytes_down) FROM timeline WHERE tier = ? AND at >= ? GROUP BY b, node ORDER BY b, node",
                (step, step, tier, since),
            ).fetchall()
            ctier = max(tier, COUNTRY_TIERS[0][0])
            cstep = max(step, ctier)
            regions = db.execute(
                "SELECT at / ? * ? AS b, region, SUM(clients * n) / SUM(n) FROM timeline_countries "
                "WHERE tier = ? AND at >= ? GROUP BY b, region ORDER BY b, region",
                (cstep, cstep, ctier, since),
            ).fetchall()
        return {"range": span, "step": step, "since": since, **_shape(rows), "countries": _countries(regions, cstep)}

    @guarded("read the timeline")
    def buckets(self, since: float, until: float) -> list[tuple[int, str, Minute]]:
        """Each node's buckets wholly inside [since, until], from the finest resolution that keeps that span
        (a bucket across `since` would count in two adjacent ranges)."""
        tier = _finest(TIERS, until - since)
        with closing(self.db.connect()) as db:
            rows = db.execute("SELECT at, node, n, up, clients, connecting, bytes_up, bytes_down FROM timeline "
                              "WHERE tier = ? AND at >= ? AND at + ? <= ? ORDER BY at, node", (tier, since, tier, until)).fetchall()  # fmt: skip
        return [(at, node, Minute(*rest)) for at, node, *rest in rows]

    @guarded("read the timeline")
    def country_peaks(self, since: float, until: float) -> dict[str, float]:
        """Each country's most clients (a bucket's mean) in the buckets wholly inside [since, until]."""
        tier = _finest(COUNTRY_TIERS, until - since)
        with closing(self.db.connect()) as db:
            rows = db.execute("SELECT region, MAX(clients) FROM timeline_countries WHERE tier = ? AND at >= ? AND at + ? <= ? "
                              "GROUP BY region", (tier, since, tier, until)).fetchall()  # fmt: skip
        return dict(rows)

    @guarded("read the byte totals")
    def bytes_since(self, start: float) -> tuple[int, int]:
        """Bytes up and down moved since `start` (a day's or a month's start), from the finest resolution that still holds it."""
        with closing(self.db.connect()) as db:
            for tier, _keep in TIERS[1:]:
                oldest = db.execute("SELECT MIN(at) FROM timeline WHERE tier = ?", (tier,)).fetchone()[0]
                if oldest is not None and (oldest <= start or tier == TIERS[-1][0]):
                    up, down = db.execute("SELECT COALESCE(SUM(bytes_up), 0), COALESCE(SUM(bytes_down), 0) FROM timeline "
                                          "WHERE tier = ? AND at >= ?", (tier, int(start) - int(start) % tier)).fetchone()  # fmt: skip
                    return up, down
        return 0, 0


def _finest(tiers: tuple[tuple[int, int], ...], span: float) -> int:
    """The finest resolution that keeps `span` seconds back (the coarsest when none does)."""
    return next((tier for tier, keep in tiers if keep >= span), tiers[-1][0])


def _shape(rows: list[tuple]) -> dict:
    points: dict[int, dict] = {}
    per_node: dict[str, dict] = {}
    for b, node, n, up, clients, connecting, b_up, b_down in rows:
        p = points.setdefault(b, {"at": b, "clients": 0.0, "connecting": 0.0, "bytes_up": 0, "bytes_down": 0})
        p["clients"] += clients
        p["connecting"] += connecting
        p["bytes_up"] += b_up
        p["bytes_down"] += b_down
        mine = per_node.setdefault(node, {"name": node, "n": 0, "up": 0, "clients": []})
        mine["n"] += n
        mine["up"] += up
        mine["clients"].append([b, round(clients, 2)])
    for p in points.values():
        p["clients"], p["connecting"] = round(p["clients"], 2), round(p["connecting"], 2)
    nodes = [{"name": m["name"], "uptime": m["up"] / m["n"], "clients": m["clients"]} for m in per_node.values()]
    return {"points": list(points.values()), "nodes": nodes}


def _countries(rows: list[tuple], step: int) -> dict:
    """The five countries with the most clients over the range, each a series of its mean clients."""
    series: dict[str, list] = {}
    for b, region, clients in rows:
        series.setdefault(region, []).append([b, round(clients, 2)])
    top = sorted(series, key=lambda r: -sum(c for _b, c in series[r]))[:5]
    return {"step": step, "series": [{"region": r, "points": series[r]} for r in top]}
