"""What the bot does on its own clock, once a tick: the reports that fell due, the alerts (each
once per cooldown) and the host's traffic budget (stop at 100 %, start again at the reset)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from conduit.bot import views
from conduit.bot.api import BotApiError
from conduit.bot.hosts import Host, Unavailable
from conduit.bot.reports import Cooldown, History, due, summary
from conduit.features.budget import THROTTLE_CPUS, BudgetKeeper
from conduit.spec.spec import Bot

log = structlog.get_logger("conduit.bot")


class Duties:
    def __init__(self, api, chats: list[int], host: Host, bot: Bot, history: History,
                 budget: BudgetKeeper | None = None, totals: Callable[[], dict] = dict,
                 audit: Callable[[str, str, dict], None] | None = None):  # fmt: skip
        self.api, self.chats, self.host, self.bot, self.history = api, chats, host, bot, history
        self.budget, self.totals, self.audit = budget, totals, audit
        self.cooldown = Cooldown(bot.alert_cooldown_minutes * 60)
        self.last: datetime | None = None

    def say(self, text: str) -> None:
        for chat in self.chats:
            try:
                self.api.send(chat, text)
            except BotApiError as exc:
                log.warning("bot.send_failed", error=str(exc))

    def tick(self, now: datetime) -> None:
        """`now`: an aware time (a fake clock in tests)."""
        if self.last is not None:
            for kind in due(self.bot.reports, self.last, now):
                self.say(self.report(kind, now))
        self.last = now
        try:
            data = self.host.status()
        except Unavailable as exc:
            data = {"alerts": [str(exc)], "containers": []}
        self.keep_budget(now, data)
        for line in self.cooldown.fresh(data.get("alerts") or [], now.timestamp()):
            self.say(f"[{self.host.name}] {line}")

    def report(self, kind: str, now: datetime) -> str:
        if kind == "status":
            try:
                return views.status(self.host.name, self.host.status())
            except Unavailable as exc:
                return f"{self.host.name}: {exc}"
        days = 1 if kind == "daily" else 7
        until = now.timestamp()
        return summary(f"{self.host.name}: {kind} summary", self.history, until - days * 86400, until)

    def keep_budget(self, now: datetime, data: dict) -> None:
        if self.budget is None:
            return
        running = [r["name"] for r in data["containers"] if r["state"] == "running"]
        decision = self.budget.check(now.astimezone(ZoneInfo(self.bot.reports.timezone)), self.totals(), running)
        throttle = self.budget.budget.action == "throttle"
        for name in decision.stop:
            self._act("throttle" if throttle else "stop", name, decision.line(), decision.resets)
        for name in decision.start_again:
            self._act("unthrottle" if throttle else "start", name, decision.line())
        for line in decision.alerts:
            self.say(f"[{self.host.name}] {line}")

    def _act(self, action: str, name: str, why: str, until: datetime | None = None) -> None:
        try:
            if action == "stop":  # held stopped until the reset, should the agent be down then
                self.host.stop(name, "budget", why="by the budget", until=until)
            elif action == "throttle":  # held so too: the watcher keeps the cap until the reset
                self.host.throttle(name, "budget", THROTTLE_CPUS, why="by the budget", until=until)
            elif action == "unthrottle":
                self.host.unthrottle(name, "budget")
            else:
                self.host.start(name, "budget")
            status = "done"
        except Unavailable as exc:
            status = f"failed: {exc}"
            log.warning("budget.action_failed", node=name, error=str(exc))
        if self.audit is not None:
            self.audit(f"budget.{action}", "budget", {"node": name, "status": status, "reason": why})

