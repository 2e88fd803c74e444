"""The reports' history from the agent's state DB: clients, bytes, uptime and countries from its
timeline (conduit.state.timeline, sampled each minute by the agent, kept across restarts), and
the events from its own records: generations (applies, rollbacks) and audited restarts."""

from __future__ import annotations

from conduit.bot.reports import Point
from conduit.serve.agent import Agent
from conduit.state.history import is_rollback


class AgentHistory:
    def __init__(self, agent: Agent):
        self.agent = agent

    def points(self, since: float, until: float) -> list[Point]:
        return [Point(at, node, m.clients, m.bytes_up + m.bytes_down, m.n, m.up)
                for at, node, m in self.agent.state().timeline.buckets(since, until)]  # fmt: skip

    def countries(self, since: float, until: float) -> dict[str, float]:
        return self.agent.state().timeline.country_peaks(since, until)

    def events(self, since: float, until: float) -> list[tuple[float, str]]:
        state = self.agent.state()
        found = [(g.started, "rollback" if is_rollback(g) else "apply")
                 for g in self.agent.generations() if since <= g.started < until]  # fmt: skip
        found += [(row["at"], "restart") for row in state.audit.recent(1000)
                  if row["event"] in ("api.restart", "bot.restart") and since <= row["at"] < until]  # fmt: skip
        return sorted(found)
