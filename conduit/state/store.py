"""The tool's memory of a host: generations, the step journal and an audit log (SQLite).

One database per state directory. Writes are small transactions in WAL mode, so a
killed apply leaves every finished row in place and the next run can read them.

Every open checks the database (its header and `PRAGMA quick_check`); every finished
generation leaves a copy beside it (state.db.backup, made with SQLite's online backup).
A damaged state.db is moved aside and the copy takes its place, with one line saying so.
Whatever SQLite or the filesystem refuses reaches callers as one StateError line.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import getpass
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from conduit.drivers.files import PRIVATE_FILE, private_file, private_tree, remove
from conduit.facts.lifetime import ByteReading, delta
from conduit.spec.image import ImageFacts

log = structlog.get_logger("conduit.state")

DB_NAME = "state.db"
BACKUP_NAME = "state.db.backup"
PROBE_NAME = ".conduit-write-probe"
MIN_FREE_BYTES = 1 << 20  # below this a write may stop halfway: refuse before any change
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class StateError(Exception):
    """The state directory cannot be read or written; the message is one line naming it and why."""


def writable_hint(exc: BaseException) -> str:
    """What to do about a state directory that refused a write."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space on its filesystem, then run the command again"
    return "make it a writable directory or give another --state-dir"


def why_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextmanager
def state_errors(folder: Path, doing: str):
    """sqlite3.Error and OSError as one StateError line: which directory, what, and why."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StateError(f"state directory {folder}: cannot {doing}: {why_line(exc)}") from None


def _guarded(doing: str):
    def wrap(method):
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            with state_errors(self.dir, doing):
                return method(self, *args, **kwargs)

        return guarded

    return wrap


def write_probe(folder: Path) -> None:
    """Create, fsync and remove a small file in `folder`: raises OSError when it cannot be written."""
    probe = folder / PROBE_NAME
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.write(fd, b"conduit\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        remove(probe)


def check_writable(state_dir: Path, probe: Callable[[Path], None] | None = None) -> None:
    """Refuse before any change when the state directory cannot take a write: StateError when it
    cannot be made, a probe file cannot be written and fsynced, or less than 1 MiB is free."""
    folder = Path(state_dir)
    try:
        private_tree(folder)
        (probe or write_probe)(folder)
        fs = os.statvfs(folder)
    except OSError as exc:
        raise StateError(f"state directory {folder} is not writable: {why_line(exc)}; {writable_hint(exc)}") from None
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES:
        raise StateError(f"state directory {folder} is full: {free} bytes free, at least {MIN_FREE_BYTES} needed; free space there, then run the command again")


_report_recovery: list[Callable[[str], None]] = []


def report_recoveries(report: Callable[[str], None]) -> None:
    """Send each restore or fresh start of a damaged state database to `report` (the command line)."""
    _report_recovery[:] = [report]


def readonly_uri(path: Path) -> str:
    """The database opened only to read. In a directory that cannot be written (a read-only
    mount) SQLite cannot make the WAL index it reads through, so the file is read as it stands
    (immutable): writes a killed writer left in state.db-wal are not seen until it can be written."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return uri if os.access(path.parent, os.W_OK) else uri + "&immutable=1"


def damage(path: Path, readonly: bool = True) -> str | None:
    """What is wrong with the database at `path` (None: intact). An error other than damage,
    such as a permission or I/O error, is raised as it is: nothing that might be fine is moved.
    `readonly` false: opened for writing, so a log left by a killed writer is replayed first."""
    info = path.lstat()
    if stat.S_ISDIR(info.st_mode):
        return "a directory"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "empty"
    try:
        target = readonly_uri(path) if readonly else path
        with closing(sqlite3.connect(target, uri=readonly, timeout=30)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", None) in _DAMAGED:
            return f"damaged ({why_line(exc)})"
        raise
    if rows != [("ok",)]:
        return f"damaged ({rows[0][0] if rows else 'no answer to quick_check'})"
    return None


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
CREATE TABLE IF NOT EXISTS node_images (  -- the image each node ran when a generation succeeded
    generation INTEGER NOT NULL,
    node TEXT NOT NULL,
    image TEXT NOT NULL,            -- as the spec names it
    image_id TEXT NOT NULL,         -- what the node was created from: a rollback returns to it
    digest TEXT,                    -- the registry's digest of that image, when it came from one
    version TEXT,                   -- the CLI version the image said it was
    since REAL NOT NULL,            -- when this node first ran this image ID
    PRIMARY KEY (generation, node)
);
CREATE TABLE IF NOT EXISTS image_checks (  -- the registry's answer for an image name, when last asked
    image TEXT PRIMARY KEY,         -- a tag; or "repository range" (updates.versions), answered by a tag
    checked REAL NOT NULL,
    digest TEXT
);
CREATE TABLE IF NOT EXISTS image_refused (  -- new images whose canary failed: never taken again by themselves
    image_id TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    generation INTEGER,
    reason TEXT NOT NULL,
    at REAL NOT NULL
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
CREATE TABLE IF NOT EXISTS api_tokens (  -- who may use the agent's API (conduit serve)
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,             -- viewer | operator
    digest TEXT NOT NULL UNIQUE,    -- sha256 of the token; the token itself is never stored
    created REAL NOT NULL
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


@dataclass(frozen=True)
class NodeImage:
    image: str
    image_id: str
    digest: str | None
    version: str | None
    since: float = 0.0


class State:
    """Open (and check) the state of `state_dir`. `readonly`: only read, repair nothing, write nothing
    (a directory that cannot be written); `recovered` is the line said when a damaged database was
    moved aside, else None."""

    def __init__(self, state_dir: Path, readonly: bool = False):
        self.dir = Path(state_dir)
        self.path = self.dir / DB_NAME
        self.backup_path = self.dir / BACKUP_NAME
        self.readonly = readonly
        self.recovered: str | None = None
        if readonly:
            self._open_readonly()
            return
        with state_errors(self.dir, "open the state database"):
            private_tree(self.dir)
            self._recover()
            private_file(self.path)
            with closing(self._connect()) as db, db:
                db.executescript(SCHEMA)

    @classmethod
    def reader(cls, state_dir: Path) -> State | None:
        """The state for a command that only reads: None when there is none yet; opened read-only
        (nothing repaired) when the directory cannot be written. StateError when it cannot be read."""
        folder = Path(state_dir)
        try:
            (folder / DB_NAME).lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"state directory {folder}: cannot read the state database: {why_line(exc)}") from None
        try:
            check_writable(folder)
        except StateError:
            return cls(folder, readonly=True)
        return cls(folder)

    def _open_readonly(self) -> None:
        with state_errors(self.dir, "read the state database"):
            found = damage(self.path)
        if found:
            raise StateError(f"state directory {self.dir}: {DB_NAME} is {found} and the directory cannot be written to restore it")

    # -------------------------------------------------------------- integrity and backup

    def _recover(self) -> None:
        """A damaged state.db (or an empty one when a backup exists) is moved aside and the backup
        restored; without a usable backup a fresh history starts. Either is said in one line."""
        if self._damage() is None:
            return
        with self._recovering():
            self._repair(self._damage())

    def _damage(self) -> str | None:
        try:
            return damage(self.path, readonly=False)
        except FileNotFoundError:
            return None  # no database yet, or a damaged one moved aside by another process

    @contextmanager
    def _recovering(self):
        """One repair at a time: a second process finds the first one's result intact."""
        fd = os.open(private_file(self.dir / ".recover.lock"), os.O_RDWR | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _repair(self, found: str | None) -> None:
        if found is None:
            return
        usable = self._usable_backup()
        if found == "empty" and usable is None:
            self._say(f"{self.path} was empty and there is no backup: starting a fresh history")
            return
        aside = self._move_aside()
        if usable is None:
            self._say(f"{self.path} was {found} and there is no usable backup: moved it to {aside.name}; starting a fresh history")
            return
        self._restore()
        count = len(self.generations())
        self._say(f"{self.path} was {found}: moved it to {aside.name} and restored {count} generation{'s' if count != 1 else ''} from {BACKUP_NAME}")

    def _say(self, message: str) -> None:
        self.recovered = message
        log.info("state.recovered", state_dir=str(self.dir), message=message)
        for report in _report_recovery:
            report(message)

    def _usable_backup(self) -> Path | None:
        try:
            return None if damage(self.backup_path) else self.backup_path
        except (OSError, sqlite3.Error):
            return None

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{DB_NAME}.corrupt-{stamp}")
        n = 1
        while os.path.lexists(aside):
            n += 1
            aside = self.path.with_name(f"{DB_NAME}.corrupt-{stamp}-{n}")
        os.rename(self.path, aside)
        for suffix in ("-wal", "-shm"):  # a log of the damaged file must never be replayed into the restored one
            if os.path.lexists(f"{self.path}{suffix}"):
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
        return aside

    def _restore(self) -> None:
        private_file(self.path)
        with closing(sqlite3.connect(f"{self.backup_path.resolve().as_uri()}?mode=ro", uri=True)) as src:
            with closing(sqlite3.connect(self.path)) as dst:
                src.backup(dst)

    def back_up(self) -> None:
        """Copy the database to state.db.backup with SQLite's online backup: written beside it,
        fsynced, then renamed over the old copy, so a copy is always whole."""
        tmp = self.dir / f".{BACKUP_NAME}.conduit-tmp"
        remove(tmp)
        private_file(tmp)
        try:
            with closing(self._connect()) as src, closing(sqlite3.connect(tmp)) as dst:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one file: a copy needs no -wal beside it
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.backup_path)
        finally:
            remove(tmp)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return sqlite3.connect(readonly_uri(self.path), uri=True, timeout=30, isolation_level=None)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _write(self, sql: str, args: tuple) -> int:
        with closing(self._connect()) as db:
            cursor = db.execute(sql, args)
            return cursor.lastrowid or 0

    # -------------------------------------------------------------- generations

    @_guarded("record a new generation")
    def begin(self, spec_text: str, spec_hash: str, spec_path: str | None, git: tuple[str | None, bool | None]) -> int:
        gen = self._write(
            "INSERT INTO generations (spec_text, spec_hash, spec_path, git_commit, git_dirty, started, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?, 'applying')",
            (spec_text, spec_hash, spec_path, git[0], None if git[1] is None else int(git[1]), time.time()),
        )
        self.audit("apply.begin", {"generation": gen, "spec_hash": spec_hash, "git_commit": git[0]})
        return gen

    @_guarded("record the end of a generation")
    def finish(self, gen: int, outcome: str, reason: str | None = None) -> None:
        self._write("UPDATE generations SET finished = ?, outcome = ?, reason = ? WHERE id = ?", (time.time(), outcome, reason, gen))
        self.audit(f"apply.{outcome}", {"generation": gen, "reason": reason})
        try:
            self.back_up()
        except (sqlite3.Error, OSError) as exc:  # the generation is recorded; the last copy stays as it was
            log.warning("state.backup_failed", state_dir=str(self.dir), error=why_line(exc))

    def free_space(self) -> None:
        """On a full disk, give back what the state can spare so that an outcome can be recorded:
        the backup copy (finish writes it again) and a copy left half written."""
        for path in (self.backup_path, self.dir / f".{BACKUP_NAME}.conduit-tmp"):
            try:
                path.unlink()
            except OSError:
                pass

    @_guarded("drop a generation that changed nothing")
    def discard(self, gen: int, reason: str) -> None:
        """An apply that stopped before its first change is no generation (as a no-op is none); the audit log keeps why."""
        with closing(self._connect()) as db:
            db.execute("DELETE FROM journal WHERE generation = ?", (gen,))
            db.execute("DELETE FROM generations WHERE id = ?", (gen,))
        self.audit("apply.nothing_changed", {"generation": gen, "reason": reason})

    @_guarded("read the generations")
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

    def good_before_current(self) -> Generation | None:
        """What `rollback` goes to by default: the last good generation before the one the host runs now
        (the last good one); None when there is no such generation."""
        good = [g for g in self.generations() if g.outcome == "succeeded"]
        return good[-2] if len(good) > 1 else None

    def interrupted(self) -> list[Generation]:
        """Applies that never finished: killed, or the machine went down."""
        return [g for g in self.generations() if g.outcome == "applying"]

    def mark_interrupted(self) -> None:
        for g in self.interrupted():
            self.finish(g.id, "interrupted", "the apply was killed before it finished")

    # -------------------------------------------------------------- journal and audit

    @_guarded("record a step in the journal")
    def step(self, gen: int, phase: str, kind: str, resource: str, action: str, status: str, detail: str | None = None) -> None:
        self._write(
            "INSERT INTO journal (generation, at, phase, kind, resource, action, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (gen, time.time(), phase, kind, resource, action, status, detail),
        )

    @_guarded("read the journal")
    def journal(self, gen: int) -> list[tuple]:
        with closing(self._connect()) as db:
            return db.execute(
                "SELECT phase, kind, resource, action, status, detail FROM journal WHERE generation = ? ORDER BY id", (gen,)
            ).fetchall()

    @_guarded("write the audit log")
    def audit(self, event: str, detail: dict | None = None, user: str | None = None) -> None:
        """One audit row; `user` defaults to the account running this process (the API names its token)."""
        if user is None:
            try:
                user = getpass.getuser()
            except (KeyError, OSError):
                user = str(os.getuid())
        self._write("INSERT INTO audit (at, user, event, detail) VALUES (?, ?, ?, ?)", (time.time(), user, event, json.dumps(detail or {})))

    # -------------------------------------------------------------- tracker samples

    @_guarded("record tracker samples")
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

    @_guarded("read the tracker samples")
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

    @_guarded("record tracker addresses")
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

    @_guarded("read the tracker addresses")
    def addresses(self) -> list[tuple]:
        with closing(self._connect()) as db:
            return db.execute("SELECT at, address, region, bytes_up, bytes_down FROM tracker_addresses ORDER BY at").fetchall()

    # -------------------------------------------------------------- sysctl writes the kernel refused

    @_guarded("read the refused sysctl writes")
    def refused_sysctl(self) -> dict[str, tuple[str, str]]:
        """{key: (value, the kernel's answer)} of the writes refused and not since accepted."""
        with closing(self._connect()) as db:
            return {key: (value, answer) for key, value, answer in db.execute("SELECT key, value, answer FROM sysctl_refused")}

    @_guarded("record a sysctl write")
    def record_sysctl(self, key: str, value: str, answer: str | None) -> None:
        """The kernel refused `value` for `key` with `answer`; None: it took it."""
        if answer is None:
            self._write("DELETE FROM sysctl_refused WHERE key = ?", (key,))
        else:
            self._write("INSERT OR REPLACE INTO sysctl_refused (key, value, answer, at) VALUES (?, ?, ?, ?)", (key, value, answer, time.time()))

    # -------------------------------------------------------------- image facts

    @_guarded("read the image facts")
    def image_facts(self, image_id: str) -> ImageFacts | None:
        """The facts an image gave when it was asked, or None (never asked, or a record this version
        cannot read): an image ID never changes its answer."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT facts FROM image_facts WHERE image_id = ?", (image_id,)).fetchone()
        try:
            return ImageFacts.from_json(row[0]) if row else None
        except (ValueError, TypeError, KeyError):
            return None

    @_guarded("record image facts")
    def save_image_facts(self, image_id: str, facts: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO image_facts (image_id, facts, probed) VALUES (?, ?, ?)", (image_id, facts, time.time())
        )

    # -------------------------------------------------------------- images the nodes run

    @_guarded("record the nodes' images")
    def record_node_images(self, gen: int, rows: dict[str, NodeImage]) -> None:
        """What each node runs now that `gen` succeeded; `since` carries over while the image ID stays."""
        before = self.node_images()
        now = time.time()
        with closing(self._connect()) as db:
            for node, row in rows.items():
                old = before.get(node)
                since = old.since if old is not None and old.image_id == row.image_id else now
                db.execute(
                    "INSERT OR REPLACE INTO node_images (generation, node, image, image_id, digest, version, since) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (gen, node, row.image, row.image_id, row.digest, row.version, since),
                )

    @_guarded("read the nodes' images")
    def node_images(self, gen: int | None = None) -> dict[str, NodeImage]:
        """{node: NodeImage} as generation `gen` left them (default: the latest generation that recorded any)."""
        with closing(self._connect()) as db:
            if gen is None:
                row = db.execute("SELECT MAX(generation) FROM node_images").fetchone()
                gen = row[0] if row else None
            rows = db.execute(
                "SELECT node, image, image_id, digest, version, since FROM node_images WHERE generation = ?", (gen,)
            ).fetchall()
        return {r[0]: NodeImage(*r[1:]) for r in rows}

    @_guarded("read when the registry was asked")
    def last_image_check(self, image: str) -> tuple[float, str | None] | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT checked, digest FROM image_checks WHERE image = ?", (image,)).fetchone()
        return (row[0], row[1]) if row else None

    @_guarded("read which tags the registry gave a digest for")
    def checked_names(self, digest: str) -> list[str]:
        """The image names the registry last answered with this digest, the most recent first."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT image FROM image_checks WHERE digest = ? ORDER BY checked DESC", (digest,)).fetchall()
        return [r[0] for r in rows]

    @_guarded("record the registry's answer")
    def record_image_check(self, image: str, digest: str | None) -> None:
        self._write("INSERT OR REPLACE INTO image_checks (image, checked, digest) VALUES (?, ?, ?)", (image, time.time(), digest))

    @_guarded("record a refused image")
    def refuse_image(self, image_id: str, image: str, gen: int | None, reason: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO image_refused (image_id, image, generation, reason, at) VALUES (?, ?, ?, ?, ?)",
            (image_id, image, gen, reason, time.time()),
        )

    @_guarded("read the refused images")
    def refused_images(self) -> dict[str, tuple[int | None, str]]:
        """{image ID: (generation, why)} of updates whose canary failed."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT image_id, generation, reason FROM image_refused").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    # -------------------------------------------------------------- lifetime byte totals

    @_guarded("record lifetime byte totals")
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

    @_guarded("read the lifetime byte totals")
    def byte_totals(self) -> dict[str, tuple[int, int]]:
        with closing(self._connect()) as db:
            return {node: (up, down) for node, up, down in db.execute("SELECT node, total_up, total_down FROM node_bytes")}

    # -------------------------------------------------------------- the audit log, read back

    @_guarded("read the audit log")
    def audit_log(self, limit: int = 100) -> list[dict]:
        """The newest `limit` audit rows, newest first."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT id, at, user, event, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": i, "at": at, "user": user, "event": event, "detail": json.loads(detail or "{}")} for i, at, user, event, detail in rows]

    # -------------------------------------------------------------- API tokens (kept as digests)

    @_guarded("record an API token")
    def add_token(self, name: str, role: str, digest: str) -> bool:
        """False when a token of that name exists already."""
        with closing(self._connect()) as db:
            if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                return False
            db.execute("INSERT INTO api_tokens (name, role, digest, created) VALUES (?, ?, ?, ?)", (name, role, digest, time.time()))
        self.audit("token.create", {"name": name, "role": role})
        return True

    @_guarded("read the API tokens")
    def tokens(self) -> list[tuple[str, str, float]]:
        """(name, role, created) of every token, by name."""
        with closing(self._connect()) as db:
            return db.execute("SELECT name, role, created FROM api_tokens ORDER BY name").fetchall()

    @_guarded("read the API tokens")
    def token_by_digest(self, digest: str) -> tuple[str, str] | None:
        """(name, role) of the token with this digest, or None."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT name, role FROM api_tokens WHERE digest = ?", (digest,)).fetchone()
        return (row[0], row[1]) if row else None

    @_guarded("revoke an API token")
    def revoke_token(self, name: str) -> bool:
        """False when there is no token of that name."""
        with closing(self._connect()) as db:
            gone = db.execute("DELETE FROM api_tokens WHERE name = ?", (name,)).rowcount
        if gone:
            self.audit("token.revoke", {"name": name})
        return bool(gone)
