"""How a spec or a base file is read: a regular file only, no more of it than a spec may be, as UTF-8."""

from __future__ import annotations

import os
import stat


class Unreadable(Exception):
    """Why a file was not read, in a few words."""


def read_text_file(path: str | os.PathLike, max_bytes: int) -> str:
    """The file's text. O_NONBLOCK: a FIFO opens at once, to be refused, instead of waiting for a
    writer; the type is checked on the file opened, so nothing swapped in after a check is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Unreadable("is not a regular file")
            handle = os.fdopen(fd, "rb")  # closes fd from here on
        except BaseException:
            os.close(fd)
            raise
        with handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise Unreadable(f"file is larger than {max_bytes // 1024} KiB; not a spec")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text (byte {exc.start})") from None
