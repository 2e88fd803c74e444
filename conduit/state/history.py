"""The host's history: one generation per apply that changed something, and the journal of its steps.

Clusters that share a state directory share one history: each generation names its cluster, and the
reads that choose a spec (last good, rollback) take the cluster they are for. Generation ids are global.

A generation is `applying` until it is finished; one still `applying` when the next apply takes the
lock was killed (or the machine went down) and is marked interrupted. Every finished generation
leaves a backup of the database beside it.

The journal rows of a run go through one connection (`journal_open`), shared by the threads that run
its steps side by side and used by one at a time. A row is written through (synchronous=FULL) before
its step goes on; rows that arrive while another is being written wait and go together in the next
transaction (a group commit), so 40 nodes started side by side cost a few fsyncs, not 80.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

from conduit.log import logger
from conduit.state.audit import Audit
from conduit.state.db import Database, Store, columns, guarded, state_errors, why_line

log = logger("conduit.state")


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
    cluster: str | None = None  # None: recorded before generations named their cluster, so every cluster's


class _Rows:
    """Journal rows waiting for one transaction, and how their writing ended."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.written = False
        self.error: BaseException | None = None


ROLLBACK = "rollback to generation "  # a rollback's generation's reason begins so


def rollback_reason(generation: int) -> str:
    return f"{ROLLBACK}{generation}"


def is_rollback(gen: Generation) -> bool:
    return (gen.reason or "").startswith(ROLLBACK)


def running(generations: list[Generation]) -> Generation | None:
    """Of one cluster's generations, oldest first, the one the host runs: the last that succeeded,
    unless a destroy came after it."""
    for g in reversed(generations):
        if g.outcome == "destroyed":
            return None
        if g.outcome == "succeeded":
            return g
    return None


class History(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.audit = Audit(db)
        self._journal: sqlite3.Connection | None = None
        self._journal_lock = threading.Lock()  # one writer at a time: SQLite's own wait for its lock sleeps in steps of milliseconds
        self._queue_lock = threading.Lock()  # guards _queued
        self._queued = _Rows()

    @guarded("record a new generation")
    def begin(self, spec_text: str, spec_hash: str, spec_path: str | None, git: tuple[str | None, bool | None], cluster: str) -> int:
        gen = self.db.write(
            "INSERT INTO generations (spec_text, spec_hash, spec_path, git_commit, git_dirty, started, outcome, cluster) "
            "VALUES (?, ?, ?, ?, ?, ?, 'applying', ?)",
            (spec_text, spec_hash, spec_path, git[0], None if git[1] is None else int(git[1]), time.time(), cluster),
        )
        self.audit.record("apply.begin", {"generation": gen, "cluster": cluster, "spec_hash": spec_hash, "git_commit": git[0]})
        return gen

    @guarded("record the end of a generation")
    def finish(self, gen: int, outcome: str, reason: str | None = None) -> None:
        self.db.write("UPDATE generations SET finished = ?, outcome = ?, reason = ? WHERE id = ?", (time.time(), outcome, reason, gen))
        self.audit.record(f"apply.{outcome}", {"generation": gen, "reason": reason})
        try:
            self.db.back_up()
        except (sqlite3.Error, OSError) as exc:  # the generation is recorded; the last copy stays as it was
            log.warning("state.backup_failed", state_dir=str(self.db.dir), error=why_line(exc))

    @guarded("drop a generation that changed nothing")
    def discard(self, gen: int, reason: str) -> None:
        """An apply that stopped before its first change is no generation (as a no-op is none); the audit log keeps why."""
        with closing(self.db.connect()) as db:
            db.execute("DELETE FROM journal WHERE generation = ?", (gen,))
            db.execute("DELETE FROM generations WHERE id = ?", (gen,))
        self.audit.record("apply.nothing_changed", {"generation": gen, "reason": reason})

    @guarded("read the generations")
    def generations(self, cluster: str | None = None) -> list[Generation]:
        """Every generation, oldest first; given a cluster, those of that cluster (and those from before
        generations named their cluster)."""
        with closing(self.db.connect()) as db:
            # A database opened read-only may predate the column (nothing upgrades it): its rows name no cluster.
            named = "cluster" if "cluster" in columns(db, "generations") else "NULL"
            rows = db.execute(
                "SELECT id, spec_text, spec_hash, spec_path, git_commit, git_dirty, started, finished, outcome, reason, "
                f"{named} FROM generations ORDER BY id"
            ).fetchall()
        gens = [Generation(*row[:5], None if row[5] is None else bool(row[5]), *row[6:]) for row in rows]
        return gens if cluster is None else [g for g in gens if g.cluster in (None, cluster)]

    def clusters(self) -> list[str]:
        """The clusters the history names, sorted."""
        return sorted({g.cluster for g in self.generations() if g.cluster is not None})

    def generation(self, gen: int) -> Generation | None:
        return next((g for g in self.generations() if g.id == gen), None)

    def last_good(self, cluster: str | None = None) -> Generation | None:
        """The last generation of `cluster` that succeeded (None: of any cluster, for a single-cluster host),
        unless a destroy came after it: the host runs none of it, so a failed apply puts back the empty
        host, not the cluster that was destroyed."""
        return running(self.generations(cluster))

    def good_before_current(self, cluster: str | None = None) -> Generation | None:
        """What `rollback` goes to by default: the last good generation of `cluster` before the one it
        runs now (its last good one), or after a destroy the last one it ran; None when there is none."""
        gens = self.generations(cluster)
        good = [g for g in gens if g.outcome == "succeeded"]
        if running(gens) is None:
            return good[-1] if good else None
        return good[-2] if len(good) > 1 else None

    def interrupted(self) -> list[Generation]:
        """Applies that never finished: killed, or the machine went down."""
        return [g for g in self.generations() if g.outcome == "applying"]

    def mark_interrupted(self) -> None:
        for g in self.interrupted():
            self.finish(g.id, "interrupted", "the apply was killed before it finished")

    @contextmanager
    def journal_open(self) -> Iterator[None]:
        """Within it, `step` writes through one connection (opened here, closed at its end); nested, the outer one's."""
        if self._journal is not None:
            yield
            return
        with state_errors(self.db.dir, "open the journal"):
            self._journal = self.db.connect(shared=True)
        try:
            yield
        finally:
            with self._journal_lock:
                journal, self._journal = self._journal, None
                journal.close()

    @guarded("record a step in the journal")
    def step(self, gen: int, phase: str, kind: str, resource: str, action: str, status: str, detail: str | None = None) -> None:
        row = (gen, time.time(), phase, kind, resource, action, status, detail)
        with self._queue_lock:
            mine = self._queued
            mine.rows.append(row)
        with self._journal_lock:
            if not mine.written:  # else a writer before us took our row along
                with self._queue_lock:
                    self._queued = _Rows()
                mine.written = True
                try:
                    self._write_rows(mine.rows)
                except BaseException as exc:
                    mine.error = exc
        if mine.error is not None:
            raise mine.error

    def _write_rows(self, rows: list[tuple]) -> None:
        """One transaction for the rows (the caller holds the journal lock)."""
        sql = "INSERT INTO journal (generation, at, phase, kind, resource, action, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        if self._journal is None:
            for row in rows:
                self.db.write(sql, row)
            return
        self._journal.execute("BEGIN IMMEDIATE")
        try:
            self._journal.executemany(sql, rows)
            self._journal.execute("COMMIT")
        except BaseException:
            if self._journal.in_transaction:
                self._journal.execute("ROLLBACK")
            raise

    @guarded("read the journal")
    def journal(self, gen: int) -> list[tuple]:
        with closing(self.db.connect()) as db:
            return db.execute(
                "SELECT phase, kind, resource, action, status, detail FROM journal WHERE generation = ? ORDER BY id", (gen,)
            ).fetchall()
