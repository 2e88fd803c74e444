"""Writing the files the tool owns: whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write beside the target, fsync, then rename over it: a reader or a crash sees old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.conduit-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text if isinstance(text, bytes) else text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
