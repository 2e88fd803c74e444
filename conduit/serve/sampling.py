"""What the observer saw, gathered a minute at a time and written to the state DB's timeline
(conduit.state.timeline) when the minute is over: the dashboard's history outlives the agent."""

from __future__ import annotations

from collections.abc import Callable

from conduit.log import logger
from conduit.state.db import StateError
from conduit.state.timeline import Minute, Timeline

log = logger("conduit.serve")


class _Node:
    __slots__ = ("n", "up", "clients", "connecting", "bytes_up", "bytes_down")

    def __init__(self):
        self.n = self.up = self.clients = self.connecting = self.bytes_up = self.bytes_down = 0


class Sampler:
    """Called with each observation; one row per node and minute, bytes counted from the lifetime
    totals (which survive the nodes' restarts) between one observation and the next."""

    def __init__(self, timeline: Callable[[], Timeline]):
        self.timeline = timeline
        self.minute: int | None = None
        self.nodes: dict[str, _Node] = {}
        self.countries: dict[str, int] = {}
        self.observations = 0
        self.last_bytes: dict[str, tuple[int, int]] = {}

    def __call__(self, data: dict, at: float) -> None:
        minute = int(at) - int(at) % 60
        if self.minute is not None and minute != self.minute:
            self.flush()
        self.minute = minute
        self.observations += 1
        for row in data["containers"]:
            self._add(row)
        for c in data.get("countries") or []:
            self.countries[c["region"]] = self.countries.get(c["region"], 0) + c["clients"]

    def _add(self, row: dict) -> None:
        node = self.nodes.setdefault(row["name"], _Node())
        node.n += 1
        node.up += 1 if row["up"] else 0
        node.clients += row["connected"]
        node.connecting += row["connecting"]
        now = (row.get("lifetime_bytes_up"), row.get("lifetime_bytes_down"))
        if now[0] is None or now[1] is None:
            return
        before = self.last_bytes.get(row["name"])
        if before is not None:
            node.bytes_up += max(0, now[0] - before[0])
            node.bytes_down += max(0, now[1] - before[1])
        self.last_bytes[row["name"]] = now

    def flush(self) -> None:
        """The minute gathered so far, written; a state DB that refuses loses this minute only."""
        if self.minute is None or not self.nodes:
            return
        minutes = {name: Minute(m.n, m.up, m.clients / m.n, m.connecting / m.n, m.bytes_up, m.bytes_down) for name, m in self.nodes.items()}
        countries = {region: clients / self.observations for region, clients in self.countries.items()}
        try:
            self.timeline().record(self.minute, minutes, countries)
        except StateError as exc:
            log.warning("serve.timeline", error=str(exc))
        self.nodes, self.countries, self.observations = {}, {}, 0
