"""The bot and the budget in a running agent: the poller (when alerts.telegram.bot.poll is set) and
the duties loop (a tick every 30 s: reports, alerts, the budget), each in a thread of its own that
ends when the agent stops. python-telegram-bot is imported only when the bot polls."""

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

from conduit.log import logger
from conduit.bot.api import BotApiError
from conduit.bot.commands import Dispatcher
from conduit.bot.duties import Duties
from conduit.bot.fleet import fleet_hosts
from conduit.bot.hosts import LocalHost, RemoteHost, Unavailable
from conduit.bot.poller import Poller
from conduit.bot.history import AgentHistory
from conduit.features.alerts import bot_token
from conduit.features.budget import BudgetKeeper
from conduit.serve.agent import Agent
from conduit.serve.auth import Limiter
from conduit.spec.policy import TelegramPolicy
from conduit.spec.spec import Bot, ClusterSpec

log = logger("conduit.bot")
TICK_SECONDS = 30


def enabled(spec: ClusterSpec) -> bool:
    telegram = spec.spec.alerts.telegram
    return telegram is not None and telegram.bot is not None and telegram.bot.poll


class RateLimitedAudit:
    """The bot's refusal rows, per Telegram user: ten at once, then one a minute (the agent's Limiter),
    so a stranger flooding the bot does not flood the audit log. Other rows pass as they are."""

    def __init__(self, agent: Agent, limiter: Limiter | None = None):
        self.agent = agent
        self.limiter = limiter or Limiter(1 / 60, 10)

    def __call__(self, event: str, user: str, detail: dict) -> None:
        if event != "bot.refused" and detail.get("status") != "refused":
            return self.agent.audit(event, user, detail)
        allowed, first = self.limiter.take(user)
        if allowed:
            self.agent.audit(event, user, detail)
        elif first:
            self.agent.audit(event, user, detail | {"reason": f"{detail.get('reason')}; more refusals of {user} are not written for now"})


class Running:
    """What `conduit serve` started here, and how it stops."""

    def __init__(self):
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.api = None
        self.clients: list = []  # the other agents' HTTP clients

    def stop(self) -> None:
        self.stop_event.set()
        if self.api is not None:
            self.api.interrupt()  # the long poll ends now, not at its timeout
        for thread in self.threads:
            thread.join(timeout=45)
        if self.api is not None:
            self.api.close()
        for client in self.clients:
            client.close()


def _duties_loop(duties: Duties, zone: ZoneInfo, stop: threading.Event) -> None:
    seen = False  # no tick before the agent's first observation: "not observed yet" is no alert
    while not stop.is_set():
        if not seen:
            try:
                duties.host.status()
                seen = True
            except Unavailable:
                stop.wait(1)
                continue
        try:
            duties.tick(datetime.now(zone))
        except Exception as exc:  # noqa: BLE001 - one failed tick must not end the loop
            log.warning("bot.tick_failed", error=f"{type(exc).__name__}: {exc}")
        stop.wait(TICK_SECONDS)


def _totals(agent: Agent) -> dict:
    return agent.state().lifetime.totals()


def start(agent: Agent, spec: ClusterSpec, policy: TelegramPolicy, name: str) -> Running:
    """Start the poller (when the bot polls) and the duties loop. With a fleet (`serve --fleet`) the bot
    answers for each of its hosts (conduit.bot.fleet); the duties are this host's. Raises, before any
    thread starts: BotApiError when another process polls the token or the API refuses; PolicyError
    when the fleet or its tokens file cannot be used."""
    running = Running()
    telegram = spec.spec.alerts.telegram
    bot = telegram.bot if telegram is not None and telegram.bot is not None else Bot()
    host = LocalHost(agent.fleet.host if agent.fleet else name, agent)
    audit = RateLimitedAudit(agent)
    if enabled(spec):
        from conduit.bot.api import BotApi

        hosts = fleet_hosts(agent.fleet, agent) if agent.fleet else [host]
        running.clients = [h.client for h in hosts if isinstance(h, RemoteHost)]
        running.api = BotApi(bot_token(telegram.bot_token), telegram.api_url)
        poller = Poller(running.api, Dispatcher(running.api, hosts, policy, audit).handle)
        if not poller.claim():
            running.stop()
            raise BotApiError(poller.refused.removeprefix("error: "))
        running.threads.append(threading.Thread(target=poller.run, args=(running.stop_event,), name="conduit-bot", daemon=True))
    budget = BudgetKeeper(agent.host.state_dir, spec.spec.budget) if spec.spec.budget is not None else None
    duties = Duties(running.api, list(policy.chats) if running.api else [], host, bot, AgentHistory(agent), budget, lambda: _totals(agent), audit)
    zone = ZoneInfo(bot.reports.timezone)
    running.threads.append(threading.Thread(target=_duties_loop, args=(duties, zone, running.stop_event), name="conduit-duties", daemon=True))
    for thread in running.threads:
        thread.start()
    return running
