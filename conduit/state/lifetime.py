"""Each node's lifetime byte totals: the nodes' own counters restart at 0, these do not."""

from __future__ import annotations

from contextlib import closing

from conduit.facts.lifetime import ByteReading, delta
from conduit.state.db import Store, guarded


class LifetimeBytes(Store):
    @guarded("record lifetime byte totals")
    def add_readings(self, at: float, readings: dict[str, ByteReading]) -> dict[str, tuple[int, int]]:
        """Add each node's bytes since its last reading (a drop is a restart); {node: (up, down)} totals.

        One immediate transaction, so two readers at once do not count the same bytes twice.
        """
        totals: dict[str, tuple[int, int]] = {}
        with closing(self.db.connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            for node, now in sorted(readings.items()):
                row = db.execute("SELECT last_up, last_down, last_uptime, total_up, total_down FROM node_bytes WHERE node = ?", (node,)).fetchone()
                last = ByteReading(*row[:3]) if row else None
                up, down = delta(last, now)
                totals[node] = ((row[3] if row else 0) + up, (row[4] if row else 0) + down)
                db.execute(
                    "INSERT OR REPLACE INTO node_bytes (node, at, last_up, last_down, last_uptime, total_up, total_down) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (node, at, now.up, now.down, now.uptime, *totals[node]),
                )
            db.execute("COMMIT")
        return totals

    @guarded("read the lifetime byte totals")
    def totals(self) -> dict[str, tuple[int, int]]:
        with closing(self.db.connect()) as db:
            return {node: (up, down) for node, up, down in db.execute("SELECT node, total_up, total_down FROM node_bytes")}
