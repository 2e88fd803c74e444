"""A node's volume, never followed: every read and write the tool makes in a data volume goes here.

A node serves strangers and owns its volume's directory, so anything in it may have been
planted by a compromised node: a symbolic link to a host file, a FIFO that blocks a reader
for ever, a device, a directory where a file belongs, a file far too big, or a hard link.
The tool runs as root, so following any of them would make root read, copy, write or chown
a host file. Here the volume directory is opened once (O_DIRECTORY|O_NOFOLLOW) and every
entry is reached relative to that descriptor, never through a link; only regular files of
a sane size with one link are read; writes go to a new file (O_EXCL) that is renamed into
place, so no existing inode is ever written or chowned. Anything else is a HostileEntry.

Hard links: a node can hard-link only a file its uid may read and write (protected_hardlinks)
on the volume's filesystem, and never across the container's mounts; still, no node's own
file has a second link, so a read refuses one rather than copy whatever it points at. A
write never needs that check: the rename replaces the name, not the inode behind it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from conduit.errors import HostileEntry

IDENTITY_LIMIT = 64 * 1024  # a key or a compartment file is a few hundred bytes
STATE_LIMIT = 1024 * 1024  # stats.json, traffic_state.json: a few KiB
CHUNK = 64 * 1024


def _kind(mode: int) -> str | None:
    """What a planted entry is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def plain_name(name: str) -> str:
    """One entry right inside the volume; anything else is a bug of the caller, not the node's doing."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


class Volume:
    """An open volume directory. Use as a context manager; entries are plain names in it."""

    def __init__(self, path: Path, volume: str, node: str | None = None):
        self.path, self.volume, self.node = Path(path), volume, node
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self.hostile(self.path.name, "a link") from None
            raise

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)

    def hostile(self, name: str, what: str) -> HostileEntry:
        return HostileEntry(self.volume, name, what, self.node)

    def _lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(plain_name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _refuse_odd(self, name: str, info: os.stat_result | None) -> None:
        what = None if info is None else _kind(info.st_mode)
        if what:
            raise self.hostile(name, what)

    def read(self, name: str, limit: int) -> bytes | None:
        """A regular file's bytes, None when absent. HostileEntry for anything else, or more than `limit` bytes."""
        self._refuse_odd(name, self._lstat(name))
        try:
            # O_NONBLOCK: a FIFO swapped in after the lstat opens at once instead of waiting for a writer.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.hostile(name, "a link") from None
            raise
        try:
            return self._read_open(name, fd, limit)
        finally:
            os.close(fd)

    def _read_open(self, name: str, fd: int, limit: int) -> bytes:
        info = os.fstat(fd)
        self._refuse_odd(name, info)
        if info.st_nlink > 1:
            raise self.hostile(name, f"a hard link ({info.st_nlink} names for one file)")
        if info.st_size > limit:
            raise self.hostile(name, f"an oversized file ({info.st_size} bytes; at most {limit} expected)")
        chunks, total = [], 0
        while chunk := os.read(fd, min(CHUNK, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew after the fstat
                raise self.hostile(name, f"an oversized file (over {limit} bytes)")
        return b"".join(chunks)

    def write(self, name: str, data: bytes, temp_suffix: str = ".restore") -> None:
        """Replace `name` with `data`, owned by the volume directory's owner, mode 0600, whole or not at all.

        A link, FIFO, device or directory at `name` is refused, never replaced: it was planted."""
        self._refuse_odd(name, self._lstat(name))
        tmp = f".{name}{temp_suffix}"
        self._clear(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                owner = os.fstat(self.fd)  # the node's user owns its data dir
                os.fchown(fd, owner.st_uid, owner.st_gid)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self._remove(tmp)
            raise
        os.fsync(self.fd)

    def _clear(self, tmp: str) -> None:
        """A temporary file left by an earlier run goes; a directory there was planted."""
        info = self._lstat(tmp)
        if info is None:
            return
        if stat.S_ISDIR(info.st_mode):
            raise self.hostile(tmp, "a directory")
        self._remove(tmp)  # unlinking a link or a hard link removes that name only

    def _remove(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except (FileNotFoundError, IsADirectoryError):
            pass


def read_entry(folder: Path, volume: str, name: str, limit: int, node: str | None = None) -> bytes | None:
    """One file of a volume (None when absent); HostileEntry when it is not a plain, small, regular file."""
    with Volume(folder, volume, node) as vol:
        return vol.read(name, limit)
