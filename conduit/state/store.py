"""The tool's memory of a host: generations, the step journal and an audit log (SQLite).

One database per state directory. Writes are small transactions in WAL mode, so a
killed apply leaves every finished row in place and the next run can read them.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from conduit.drivers.files import private_file, private_tree
from conduit.facts.lifetime import ByteReading, delta

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY,
    spec_text TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    spec_path TEXT,
    git_commit TEXT,
    git_dirty INTEGER,
    started REAL NOT NULL,
    finished REAL,
    outcome TEXT NOT NULL,          -- applying | succeeded | failed | rolled_back | interrupted
    reason TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL REFERENCES generations(id),
    at REAL NOT NULL,
    phase TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,           -- started | done | failed
    detail TEXT
);
CREATE TABLE IF NOT EXISTS tracker_samples (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    source TEXT NOT NULL,           -- metrics | capture
    region TEXT NOT NULL,           -- ISO country code, or ZZ when unknown
    clients INTEGER NOT NULL,
    bytes_up INTEGER NOT NULL,
    bytes_down INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tracker_samples_at ON tracker_samples (at);
CREATE TABLE IF NOT EXISTS tracker_addresses (  -- only when the spec keeps raw addresses
    at REAL NOT NULL,
    address TEXT NOT NULL,
    region TEXT NOT NULL,
    bytes_up INTEGER NOT NULL,
    bytes_down INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sysctl_refused (  -- writes the kernel refused under on_refused: warn
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    answer TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_facts (  -- what an image answered when asked, by image ID
    image_id TEXT PRIMARY KEY,
    facts TEXT NOT NULL,            -- conduit.spec.image.ImageFacts as JSON
    probed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS node_bytes (  -- lifetime totals; the nodes' own counters restart at 0
    node TEXT PRIMARY KEY,
    at REAL NOT NULL,               -- the last reading
    last_up INTEGER NOT NULL,
    last_down INTEGER NOT NULL,
    last_uptime REAL,
    total_up INTEGER NOT NULL,
    total_down INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
"""


@dataclass(frozen=True)
class Generation:
    id: int
    spec_text: str
    spec_hash: str
    spec_path: str | None
    git_commit: str | None
    git_dirty: bool | None
    started: float
    finished: float | None
    outcome: str
    reason: str | None


class State:
    def __init__(self, state_dir: Path):
        self.dir = private_tree(Path(state_dir))
        self.path = private_file(self.dir / "state.db")
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _write(self, sql: str, args: tuple) -> int:
        with closing(self._connect()) as db:
            cursor = db.execute(sql, args)
            return cursor.lastrowid or 0

    # -------------------------------------------------------------- generations

    def begin(self, spec_text: str, spec_hash: str, spec_path: str | None, git: tuple[str | None, bool | None]) -> int:
        gen = self._write(
            "INSERT INTO generations (spec_text, spec_hash, spec_path, git_commit, git_dirty, started, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?, 'applying')",
            (spec_text, spec_hash, spec_path, git[0], None if git[1] is None else int(git[1]), time.time()),
        )
        self.audit("apply.begin", {"generation": gen, "spec_hash": spec_hash, "git_commit": git[0]})
        return gen

    def finish(self, gen: int, outcome: str, reason: str | None = None) -> None:
        self._write("UPDATE generations SET finished = ?, outcome = ?, reason = ? WHERE id = ?", (time.time(), outcome, reason, gen))
        self.audit(f"apply.{outcome}", {"generation": gen, "reason": reason})

    def generations(self) -> list[Generation]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT id, spec_text, spec_hash, spec_path, git_commit, git_dirty, started, finished, outcome, reason "
                "FROM generations ORDER BY id"
            ).fetchall()
        return [Generation(*row[:5], None if row[5] is None else bool(row[5]), *row[6:]) for row in rows]

    def generation(self, gen: int) -> Generation | None:
        return next((g for g in self.generations() if g.id == gen), None)

    def last_good(self) -> Generation | None:
        good = [g for g in self.generations() if g.outcome == "succeeded"]
        return good[-1] if good else None

    def interrupted(self) -> list[Generation]:
        """Applies that never finished: killed, or the machine went down."""
        return [g for g in self.generations() if g.outcome == "applying"]

    def mark_interrupted(self) -> None:
        for g in self.interrupted():
            self.finish(g.id, "interrupted", "the apply was killed before it finished")

    # -------------------------------------------------------------- journal and audit

    def step(self, gen: int, phase: str, kind: str, resource: str, action: str, status: str, detail: str | None = None) -> None:
        self._write(
            "INSERT INTO journal (generation, at, phase, kind, resource, action, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (gen, time.time(), phase, kind, resource, action, status, detail),
        )

    def journal(self, gen: int) -> list[tuple]:
        with closing(self._connect()) as db:
            return db.execute(
                "SELECT phase, kind, resource, action, status, detail FROM journal WHERE generation = ? ORDER BY id", (gen,)
            ).fetchall()

    def audit(self, event: str, detail: dict | None = None) -> None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        self._write("INSERT INTO audit (at, user, event, detail) VALUES (?, ?, ?, ?)", (time.time(), user, event, json.dumps(detail or {})))

    # -------------------------------------------------------------- tracker samples

    def add_samples(self, at: float, source: str, rows: dict[str, tuple[int, int, int]], retention_days: int) -> None:
        """One sample per region, and samples older than the retention dropped, in one transaction."""
        with closing(self._connect()) as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO tracker_samples (at, source, region, clients, bytes_up, bytes_down) VALUES (?, ?, ?, ?, ?, ?)",
                [(at, source, region, *figures) for region, figures in sorted(rows.items())],
            )
            db.execute("DELETE FROM tracker_samples WHERE at < ?", (at - retention_days * 86400,))
            db.execute("COMMIT")

    def latest_samples(self) -> dict[str, tuple[int, int, int]]:
        """The newest sample's figures per region."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT MAX(at) FROM tracker_samples").fetchone()
            if not row or row[0] is None:
                return {}
            rows = db.execute(
                "SELECT region, clients, bytes_up, bytes_down FROM tracker_samples WHERE at = ?", (row[0],)
            ).fetchall()
        return {region: (clients, up, down) for region, clients, up, down in rows}

    def add_addresses(self, at: float, rows: dict[str, tuple[str, int, int]], keep_hours: int) -> None:
        """Raw client addresses of one window, kept `keep_hours` and no longer."""
        with closing(self._connect()) as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO tracker_addresses (at, address, region, bytes_up, bytes_down) VALUES (?, ?, ?, ?, ?)",
                [(at, address, *figures) for address, figures in sorted(rows.items())],
            )
            db.execute("DELETE FROM tracker_addresses WHERE at < ?", (at - keep_hours * 3600,))
            db.execute("COMMIT")

    def addresses(self) -> list[tuple]:
        with closing(self._connect()) as db:
            return db.execute("SELECT at, address, region, bytes_up, bytes_down FROM tracker_addresses ORDER BY at").fetchall()

    # -------------------------------------------------------------- sysctl writes the kernel refused

    def refused_sysctl(self) -> dict[str, tuple[str, str]]:
        """{key: (value, the kernel's answer)} of the writes refused and not since accepted."""
        with closing(self._connect()) as db:
            return {key: (value, answer) for key, value, answer in db.execute("SELECT key, value, answer FROM sysctl_refused")}

    def record_sysctl(self, key: str, value: str, answer: str | None) -> None:
        """The kernel refused `value` for `key` with `answer`; None: it took it."""
        if answer is None:
            self._write("DELETE FROM sysctl_refused WHERE key = ?", (key,))
        else:
            self._write("INSERT OR REPLACE INTO sysctl_refused (key, value, answer, at) VALUES (?, ?, ?, ?)", (key, value, answer, time.time()))

    # -------------------------------------------------------------- image facts

    def image_facts(self, image_id: str) -> str | None:
        """The facts an image gave when it was asked (JSON), or None: an image ID never changes its answer."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT facts FROM image_facts WHERE image_id = ?", (image_id,)).fetchone()
        return row[0] if row else None

    def save_image_facts(self, image_id: str, facts: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO image_facts (image_id, facts, probed) VALUES (?, ?, ?)", (image_id, facts, time.time())
        )

    # -------------------------------------------------------------- lifetime byte totals

    def add_byte_readings(self, at: float, readings: dict[str, ByteReading]) -> dict[str, tuple[int, int]]:
        """Add each node's bytes since its last reading (a drop is a restart); {node: (up, down)} totals.

        One immediate transaction, so two readers at once do not count the same bytes twice.
        """
        totals: dict[str, tuple[int, int]] = {}
        with closing(self._connect()) as db:
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

    def byte_totals(self) -> dict[str, tuple[int, int]]:
        with closing(self._connect()) as db:
            return {node: (up, down) for node, up, down in db.execute("SELECT node, total_up, total_down FROM node_bytes")}
