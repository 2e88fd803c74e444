"""The agent's live picture: one observation of the host, refreshed by a background thread, and
the events it and the applies publish (node changes, apply steps) for the event stream."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from conduit.log import logger
from conduit.views.status import node_state

log = logger("conduit.serve")


class Hub:
    """Numbered events, the newest `keep` of them; a reader asks for those after the last it saw."""

    def __init__(self, keep: int = 1000):
        self._events: deque[tuple[int, str, dict]] = deque(maxlen=keep)
        # Numbers go on from the clock's milliseconds, so after an agent restart a page's last id is below
        # every new one: it is sent what the new agent published, not told to wait for an old number.
        self._seq = int(time.time() * 1000)
        self._lock = threading.Lock()
        self.closed = threading.Event()  # the agent is stopping: every event stream ends (the page reconnects)

    def publish(self, kind: str, data: dict) -> int:
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, kind, data))
            return self._seq

    def since(self, seq: int) -> list[tuple[int, str, dict]]:
        with self._lock:
            return [e for e in self._events if e[0] > seq]

    @property
    def last(self) -> int:
        with self._lock:
            return self._seq


def node_signature(row: dict) -> tuple:
    """What, when it changes, is worth an event: the node's one-word state and its clients."""
    return node_state(row), row["connected"], row["connecting"]


def node_event(row: dict) -> dict:
    return {"name": row["name"], "state": node_state(row), "up": row["up"], "connected": row["connected"], "connecting": row["connecting"]}


class Observer:
    """Calls `collect` every `interval` seconds in a thread of its own; requests read its latest
    answer, so a hundred requests cost no more Docker calls than one."""

    def __init__(self, collect: Callable[[], dict], hub: Hub, interval: float = 2.0, sample: Callable[[dict, float], None] | None = None):
        self.collect = collect
        self.hub = hub
        self.sample = sample  # each observation, for the state DB's timeline
        self.interval = interval
        self.data: dict | None = None
        self.error: str | None = None
        self.observed_at: float | None = None
        self._signatures: dict[str, tuple] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="conduit-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        flush = getattr(self.sample, "flush", None)
        if flush is not None:  # the minute under way is written, not lost
            flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.refresh()
            self._stop.wait(max(0.05, self.interval - (time.monotonic() - began)))

    def refresh(self) -> None:
        """One observation; a failure keeps the last good one and says why."""
        try:
            data = self.collect()
        except Exception as exc:  # noqa: BLE001 - the agent outlives a stopped Docker daemon or a busy state DB
            if self.error != str(exc):  # once per new error, not every few seconds
                log.warning("serve.observe_failed", error=str(exc))
                self.hub.publish("error", {"error": str(exc)})
            self.error = str(exc)
            return
        now = time.time()
        with self._lock:
            self.data, self.error, self.observed_at = data, None, now
        self._publish_changes(data["containers"])
        if self.sample is not None:
            self.sample(data, now)

    def _publish_changes(self, rows: list[dict]) -> None:
        fresh = {r["name"]: node_signature(r) for r in rows}
        changed = [node_event(r) for r in rows if self._signatures.get(r["name"]) != fresh[r["name"]]]
        gone = sorted(set(self._signatures) - set(fresh))
        first = not self._signatures
        self._signatures = fresh
        if (changed or gone) and not first:
            self.hub.publish("nodes", {"changed": changed, "gone": gone})

    def latest(self) -> dict | None:
        with self._lock:
            return self.data

    def wait_first(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while self.latest() is None and self.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.latest()
