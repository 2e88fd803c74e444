"""The tracker's samples: clients and bytes per country at each interval (bounded retention), and,
only when the spec keeps them, raw client addresses for a few hours."""

from __future__ import annotations

from contextlib import closing

from conduit.state.db import Store, guarded


class TrackerSamples(Store):
    @guarded("record tracker samples")
    def add(self, at: float, source: str, rows: dict[str, tuple[int, int, int]], retention_days: int) -> None:
        """One sample per region, and samples older than the retention dropped, in one transaction."""
        with closing(self.db.connect()) as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO tracker_samples (at, source, region, clients, bytes_up, bytes_down) VALUES (?, ?, ?, ?, ?, ?)",
                [(at, source, region, *figures) for region, figures in sorted(rows.items())],
            )
            db.execute("DELETE FROM tracker_samples WHERE at < ?", (at - retention_days * 86400,))
            db.execute("COMMIT")

    @guarded("read the tracker samples")
    def latest(self) -> dict[str, tuple[int, int, int]]:
        """The newest sample's figures per region."""
        with closing(self.db.connect()) as db:
            row = db.execute("SELECT MAX(at) FROM tracker_samples").fetchone()
            if not row or row[0] is None:
                return {}
            rows = db.execute(
                "SELECT region, clients, bytes_up, bytes_down FROM tracker_samples WHERE at = ?", (row[0],)
            ).fetchall()
        return {region: (clients, up, down) for region, clients, up, down in rows}

    @guarded("record tracker addresses")
    def add_addresses(self, at: float, rows: dict[str, tuple[str, int, int]], keep_hours: int) -> None:
        """Raw client addresses of one window, kept `keep_hours` and no longer."""
        with closing(self.db.connect()) as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO tracker_addresses (at, address, region, bytes_up, bytes_down) VALUES (?, ?, ?, ?, ?)",
                [(at, address, *figures) for address, figures in sorted(rows.items())],
            )
            db.execute("DELETE FROM tracker_addresses WHERE at < ?", (at - keep_hours * 3600,))
            db.execute("COMMIT")

    @guarded("read the tracker addresses")
    def addresses(self) -> list[tuple]:
        with closing(self.db.connect()) as db:
            return db.execute("SELECT at, address, region, bytes_up, bytes_down FROM tracker_addresses ORDER BY at").fetchall()
