"""Kernel settings as text: a key's file under /proc/sys, the value read there, the owner of a sysctl.d file.

Pure functions (conduit.drivers.sysctl reads the files; conduit.render.sysctl writes the header).
"""

from __future__ import annotations

from conduit.spec.profiles import normalise_sysctl

# The file's first line; the driver recognises a file as ours (and whose) by it.
HEADER_PREFIX = "# Managed by conduit for cluster "
# The header is on the first line we write; a few lines leave room for an editor's modeline.
HEADER_LINES = 3


def key_path(key: str) -> str:
    """The key's file, relative to /proc/sys: net.core.somaxconn is net/core/somaxconn."""
    return key.replace(".", "/")


def value(text: str) -> str:
    """A /proc/sys file's text as a value: words joined by one space (multi-number values are tab-separated)."""
    return normalise_sysctl(text)


def owner(text: str) -> str | None:
    """Cluster named by our header in the file's first lines, or None when there is none."""
    for line in text.splitlines()[:HEADER_LINES]:
        if line.startswith(HEADER_PREFIX):
            return line[len(HEADER_PREFIX) :].rstrip().removesuffix(".")
    return None
