"""One apply at a time per state directory: an flock that dies with its holder.

A SIGKILLed holder leaves the lock file behind but not the lock, so no stale lock ever
blocks the next run. The file names the holder for the message a second apply prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from conduit.drivers.files import private_file, private_tree


class Locked(Exception):
    """Another apply holds the lock."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another conduit process"
    return f"pid {info.get('pid')} ({info.get('command', 'conduit')}, since {time.strftime('%H:%M:%S', time.localtime(info.get('since', 0)))})"


@contextmanager
def apply_lock(state_dir: Path, command: str, wait: bool = True, on_wait: Callable[[str], None] | None = None):
    path = private_file(private_tree(state_dir) / "apply.lock")
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise Locked(f"another apply is running: {holder}") from None
            if on_wait:
                on_wait(f"waiting for the apply of {holder} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
