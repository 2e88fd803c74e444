"""Writing the files the tool owns: whole or not at all, and private unless they are host configuration."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
HOST_CONFIG = 0o644  # files other programs read: sysctl.d, nginx, systemd units

_tightened: set[str] = set()  # trees already walked whole by this process


def atomic_write(path: Path, text: str | bytes, mode: int = PRIVATE_FILE) -> None:
    """Write beside the target, fsync, then rename over it: a reader or a crash sees old or new, never half.

    The file gets exactly `mode`, whatever the umask. The temporary file is this writer's own
    (O_EXCL, a random name): two processes saving one file at once each rename a whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.conduit-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, text if isinstance(text, bytes) else text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (0700), made with any missing parents (0700 too)."""
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass
    _tighten(path, PRIVATE_DIR)
    return path


def private_tree(path: Path) -> Path:
    """The tool's state directory, private whatever was there before: the directory and every
    directory in it 0700, every file 0600 (a database's -wal, -shm and -journal files too).

    The entries right inside are checked on every call; the whole tree once per process."""
    path = private_dir(path)
    key = str(path.resolve())
    if key in _tightened:
        _tighten_entries(path)
        return path
    for folder, dirs, files in os.walk(path):
        _tighten_entries(Path(folder), [*dirs, *files])
    _tightened.add(key)
    return path


def _tighten_entries(folder: Path, names: list[str] | None = None) -> None:
    for name in os.listdir(folder) if names is None else names:
        entry = folder / name
        try:
            info = entry.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            _tighten(entry, PRIVATE_DIR, info)
        elif stat.S_ISREG(info.st_mode):
            _tighten(entry, PRIVATE_FILE, info)
        # symbolic links are left alone: chmod would change what they point at


def _tighten(path: Path, mode: int, info: os.stat_result | None = None) -> None:
    """Take away every bit beyond `mode`; what the tool does not own it cannot change, and leaves."""
    info = info or path.stat()
    if stat.S_IMODE(info.st_mode) == mode:
        return
    try:
        os.chmod(path, mode)
    except PermissionError:
        pass


def private_file(path: Path) -> Path:
    """`path` as a file only its owner can read, made empty when missing (a new SQLite database
    may be an empty file; its -wal and -shm files take the database's mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            _tighten(path, PRIVATE_FILE, info)
        return path
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND | os.O_CREAT) -> BinaryIO:
    """A file opened for writing (appending by default) that is 0600 whatever existed before."""
    fd = os.open(path, flags | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab" if flags & os.O_APPEND else "wb")


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_or_none(path: Path) -> str | None:
    """A small kernel or host file's text, stripped; None when it is not there or not readable."""
    try:
        return path.read_text().strip()
    except OSError:
        return None
