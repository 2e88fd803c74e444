"""Nodes held stopped: a stop the operator (from Telegram) or the traffic budget asked for, which
planning keeps (the node is planned `state: stopped`, not repaired) until the node is started
again or, for the budget's, until its reset date. A hold with `cpus` is a throttle instead: the
node runs, planned with that CPU limit in place of the spec's. One small 0600 JSON file in the
state directory."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from conduit.drivers.files import atomic_write

FILE = "holds.json"
_WRITING = threading.Lock()  # the bot and the budget both hold and release, from their threads


@dataclass(frozen=True)
class Hold:
    why: str  # "by the budget" or "from Telegram by NAME": status shows "stopped <why>"
    until: str | None = None  # an ISO time with its offset; past it the hold is gone
    cpus: float | None = None  # a throttle: the node runs with this CPU limit; None: held stopped

    def line(self) -> str:
        what = "stopped" if self.cpus is None else f"throttled to {self.cpus:g} CPU"
        return f"{what} {self.why}" + (f" until {self.until[:10]}" if self.until else "")


class Holds:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / FILE

    def _read(self) -> dict[str, Hold]:
        try:
            raw = json.loads(self.path.read_text())
            return {node: Hold(**value) for node, value in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}  # none yet, or unreadable: no node is held, so the watcher repairs as before

    def _write(self, holds: dict[str, Hold]) -> None:
        atomic_write(self.path, json.dumps({node: asdict(h) for node, h in sorted(holds.items())}))

    def current(self, now: datetime | None = None) -> dict[str, Hold]:
        """The holds in force at `now` (default: now)."""
        now = now or datetime.now().astimezone()
        return {node: h for node, h in self._read().items() if h.until is None or datetime.fromisoformat(h.until) > now}

    def hold(self, node: str, why: str, until: datetime | None = None, cpus: float | None = None) -> None:
        with _WRITING:
            holds = self._read()
            holds[node] = Hold(why, until.isoformat() if until else None, cpus)
            self._write(holds)

    def release(self, node: str) -> None:
        with _WRITING:
            holds = self._read()
            if holds.pop(node, None) is not None:
                self._write(holds)
