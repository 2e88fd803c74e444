"""The state directory's one SQLite file, which every store of conduit.state shares: opening it
(0600 in a 0700 directory, or read-only on a mount that cannot be written), its schema, and its
integrity. Writes are small transactions in WAL mode, so a killed apply leaves every finished row
in place and the next run can read them.

Every open checks the database (its header and `PRAGMA quick_check`); every finished
generation leaves a copy beside it (state.db.backup, made with SQLite's online backup).
A damaged state.db is moved aside and the copy takes its place, with one line saying so.
Whatever SQLite or the filesystem refuses reaches callers as one StateError line.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from contextlib import closing, contextmanager
from pathlib import Path

from conduit.log import logger
from conduit.drivers.files import PRIVATE_FILE, private_file, private_tree, remove

log = logger("conduit.state")

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


def guarded(doing: str):
    """A store's method whose sqlite3.Error or OSError reaches its caller as one StateError line."""

    def wrap(method):
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            with state_errors(self.db.dir, doing):
                return method(self, *args, **kwargs)

        return guarded

    return wrap


def write_probe(folder: Path, sync: bool = True) -> None:
    """Create, fsync (unless not `sync`) and remove a small file in `folder`: raises OSError when it cannot be written."""
    probe = folder / PROBE_NAME
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.write(fd, b"conduit\n")
        if sync:
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
    reason TEXT,
    cluster TEXT                    -- metadata.name of the spec; NULL (rows from before): every cluster's
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
CREATE TABLE IF NOT EXISTS timeline (  -- clients, bytes and uptime per node over time (timeline.py): three resolutions
    tier INTEGER NOT NULL,          -- the bucket's length in seconds: 60, 900 or 3600
    at INTEGER NOT NULL,            -- the bucket's start (Unix time, a multiple of tier)
    node TEXT NOT NULL,
    n INTEGER NOT NULL,             -- observations merged into the bucket
    up INTEGER NOT NULL,            -- of which the node was up
    clients REAL NOT NULL,          -- mean connected clients
    connecting REAL NOT NULL,       -- mean connecting clients
    bytes_up INTEGER NOT NULL,      -- moved during the bucket
    bytes_down INTEGER NOT NULL,
    PRIMARY KEY (tier, at, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timeline_countries (  -- mean clients per country, 15-minute and hourly buckets
    tier INTEGER NOT NULL,
    at INTEGER NOT NULL,
    region TEXT NOT NULL,
    n INTEGER NOT NULL,             -- minutes merged
    clients REAL NOT NULL,
    PRIMARY KEY (tier, at, region)
) WITHOUT ROWID;
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


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def upgrade(db: sqlite3.Connection) -> None:
    """Bring a database made by an older conduit to this schema (CREATE TABLE IF NOT EXISTS adds no column)."""
    if "cluster" not in columns(db, "generations"):
        db.execute("ALTER TABLE generations ADD COLUMN cluster TEXT")


class Database:
    """Open (and check) the database of `state_dir`. `readonly`: only read, repair nothing, write nothing
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
            with closing(self.connect()) as db, db:
                db.executescript(SCHEMA)
                upgrade(db)

    @classmethod
    def reader(cls, state_dir: Path) -> Database | None:
        """The database for a command that only reads: None when there is none yet; opened read-only
        (nothing repaired) when the directory cannot be written. StateError when it cannot be read."""
        folder = Path(state_dir)
        try:
            (folder / DB_NAME).lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"state directory {folder}: cannot read the state database: {why_line(exc)}") from None
        try:
            # Only whether it may repair: a file it can create says so, without waiting for a flush to disk.
            check_writable(folder, probe=lambda f: write_probe(f, sync=False))
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
        count = self._generation_count()
        self._say(f"{self.path} was {found}: moved it to {aside.name} and restored {count} generation{'s' if count != 1 else ''} from {BACKUP_NAME}")

    def _generation_count(self) -> int:
        with closing(self.connect()) as db:
            return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

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
            with closing(self.connect()) as src, closing(sqlite3.connect(tmp)) as dst:
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

    def connect(self, shared: bool = False) -> sqlite3.Connection:
        """A connection in autocommit mode; `shared`: usable from other threads (the caller serialises its use)."""
        if self.readonly:
            return sqlite3.connect(readonly_uri(self.path), uri=True, timeout=30, isolation_level=None, check_same_thread=not shared)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=not shared)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def write(self, sql: str, args: tuple) -> int:
        with closing(self.connect()) as db:
            cursor = db.execute(sql, args)
            return cursor.lastrowid or 0

    def free_space(self) -> None:
        """On a full disk, give back what the state can spare so that an outcome can be recorded:
        the backup copy (finish writes it again) and a copy left half written."""
        for path in (self.backup_path, self.dir / f".{BACKUP_NAME}.conduit-tmp"):
            try:
                path.unlink()
            except OSError:
                pass


class Store:
    """The tables of one purpose in the shared database."""

    def __init__(self, db: Database):
        self.db = db
