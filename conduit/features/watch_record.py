"""The watcher's record in the state directory: what `conduit watch` last did, and whether the
process that wrote it still runs. Its own module: status and the agent read it without loading
the watcher (watchdog, the reconcile and the executor)."""

from __future__ import annotations

import json
from pathlib import Path

from conduit.facts import proc as procfacts

STATUS_FILE = "watch.json"


def read_watch_status(state_dir: Path) -> dict | None:
    """The watcher's own record: when it last reconciled, with what result, and its last error."""
    try:
        return json.loads((Path(state_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def watcher_running(status: dict, proc: Path = Path("/proc")) -> bool:
    """Whether the process that wrote the record runs still: its pid is alive and is a `conduit watch`
    (or `serve --watch`), not another process that took the pid since."""
    try:
        argv = procfacts.cmdline((proc / str(int(status.get("pid"))) / "cmdline").read_bytes())
    except (OSError, TypeError, ValueError):
        return False
    return any("conduit" in word for word in argv) and any(word in ("watch", "serve") for word in argv)
