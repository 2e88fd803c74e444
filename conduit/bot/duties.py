"""What the bot does on its own clock, once a tick: the reports that fell due, the alerts (each
once per cooldown) and the host's traffic budget (stop at 100 %, start again at the reset)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from conduit.log import logger
from conduit.bot import views
from conduit.bot.api import BotApiError
from conduit.bot.hosts import Host, Unavailable
from conduit.bot.reports import Cooldown, History, due, summary
from conduit.features.budget import THROTTLE_CPUS, BudgetKeeper
from conduit.spec.spec import Bot

log = logger("conduit.bot")


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
        if decision.stop:
            self._act("throttle" if throttle else "stop", decision.stop, decision.line(), decision.resets)
        if decision.start_again:
            self._act("unthrottle" if throttle else "start", decision.start_again, decision.line())
        for line in decision.alerts:
            self.say(f"[{self.host.name}] {line}")

    def _act(self, action: str, names: list[str], why: str, until: datetime | None = None) -> None:
        """A throttle (or its end) is one apply for all the nodes; stop and start go node by node.
        Only what succeeded counts as done: the rest is tried again at the next tick."""
        done, failures = self._run(action, names, until)
        first_failure = self.budget.record(action, done, ok=not failures)
        if failures:
            log.warning("budget.action_failed", action=action, nodes=names, error="; ".join(failures))
            if first_failure:
                self.say(f"[{self.host.name}] budget: {action} of {', '.join(names)} failed: {'; '.join(failures)}; tried again at each check")
        if self.audit is not None and (not failures or first_failure):
            status = f"failed: {'; '.join(failures)}" if failures else "done"
            self.audit(f"budget.{action}", "budget", {"nodes": names, "status": status, "reason": why})

    def _run(self, action: str, names: list[str], until: datetime | None) -> tuple[list[str], list[str]]:
        """(the nodes done, the failures)."""
        if action in ("throttle", "unthrottle"):
            try:
                if action == "throttle":  # held so: planning and the watcher keep the cap until the reset
                    self.host.throttle(names, "budget", THROTTLE_CPUS, why="by the budget", until=until)
                else:
                    self.host.unthrottle(names, "budget")
            except Unavailable as exc:
                return [], [str(exc)]
            return list(names), []
        done, failures = [], []
        for name in names:
            try:
                if action == "stop":  # held stopped until the reset, should the agent be down then
                    self.host.stop(name, "budget", why="by the budget", until=until)
                else:
                    self.host.start(name, "budget")
                done.append(name)
            except Unavailable as exc:
                failures.append(str(exc))
        return done, failures
