"""One apply at a time per state directory and per cluster on the host: flocks that die with their holder.

A SIGKILLed holder leaves the lock files behind but not the locks, so no stale lock ever
blocks the next run. Each file names its holder for the message a second apply prints.

The cluster's lock lives in /run/conduit/<cluster>.lock, so two applies of one cluster with
different state directories still take turns. Under a --root other than "/" it lives in that
root's run/conduit; CONDUIT_LOCK_DIR moves it elsewhere for the real root.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

from conduit.drivers.files import private_dir, private_file, private_tree
from conduit.errors import Locked
from conduit.state.db import StateError, why_line, writable_hint

LOCK_DIR_ENV = "CONDUIT_LOCK_DIR"
RUN_DIR = "/run/conduit"


def cluster_lock_dir(root: str | Path = "/") -> Path:
    """Where the clusters' locks live: the root's run/conduit, or for "/" CONDUIT_LOCK_DIR or /run/conduit."""
    if Path(root).resolve() != Path("/"):
        return Path(root) / RUN_DIR.lstrip("/")
    return Path(os.environ.get(LOCK_DIR_ENV) or RUN_DIR)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another conduit process"
    return f"pid {info.get('pid')} ({info.get('command', 'conduit')}, since {time.strftime('%H:%M:%S', time.localtime(info.get('since', 0)))})"


@contextmanager
def _flock(path: Path, command: str, wait: bool, on_wait: Callable[[str], None] | None):
    try:
        fd = os.open(private_file(path), os.O_RDWR | os.O_NOFOLLOW)
    except OSError as exc:
        raise StateError(f"cannot open the lock {path}: {why_line(exc)}") from None
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


@contextmanager
def apply_lock(state_dir: Path, command: str, wait: bool = True, on_wait: Callable[[str], None] | None = None,
               cluster: str | None = None, root: str | Path = "/"):  # fmt: skip
    """The state directory's apply.lock, then (given `cluster`) the cluster's lock on the host;
    always in this order, so two applies never hold one each and wait for the other."""
    with ExitStack() as stack:
        try:
            folder = private_tree(Path(state_dir))
        except OSError as exc:
            raise StateError(f"state directory {state_dir} is not writable: {why_line(exc)}; {writable_hint(exc)}") from None
        stack.enter_context(_flock(folder / "apply.lock", command, wait, on_wait))
        if cluster is not None:
            base = cluster_lock_dir(root)
            try:
                private_dir(base)
            except OSError as exc:
                raise StateError(f"cannot make the lock directory {base}: {why_line(exc)}") from None
            stack.enter_context(_flock(base / f"{cluster}.lock", command, wait, on_wait))
        yield
