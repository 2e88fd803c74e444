"""The Telegram bot and the budget beside `conduit serve`'s agent, as the spec the agent follows asks.

A spec that asks for them at start-up starts them before the agent listens; a refusal then stops
`serve` (exit 1). Otherwise they start once the spec the agent follows first asks for them: the
first apply of `serve --git URL` on a fresh host, a later commit, an edit of FILE. A refusal then is
one line on stderr and the agent serves on without them; they are tried again when the spec asks for
them with other settings. Once running they keep the settings they started with: a later spec that
changes or drops them is said in one line and taken up when the agent restarts. Nothing is stopped
under way: a budget dropped mid-month would leave the nodes it stopped held until its reset, with
no keeper to start them then."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from conduit.spec.spec import ClusterSpec

if TYPE_CHECKING:
    from conduit.serve.agent import Agent
    from conduit.serve.run import Stoppable

SPEC_LOOK = 2.0  # seconds between looks at the spec the agent follows (a stat of its file)


class NotStarted(Exception):
    """The bot or the budget refused to start; the message is one line that says what to do."""


def asked(spec: ClusterSpec | None) -> str | None:
    """What of the bot and the budget the spec asks the agent to run, in words; None for neither."""
    if spec is None:
        return None
    telegram = spec.spec.alerts.telegram
    wanted = (("the Telegram bot", telegram is not None and telegram.bot is not None and telegram.bot.poll),
              ("the budget", spec.spec.budget is not None))  # fmt: skip
    return " and ".join(what for what, on in wanted if on) or None


def _settings(spec: ClusterSpec | None) -> tuple | None:
    """What they are started from: a new spec that changes none of it changes nothing here."""
    return (spec.spec.alerts.telegram, spec.spec.budget) if asked(spec) else None


def _them(what: str) -> str:
    return "them" if " and " in what else "it"


def start(agent: Agent, spec: ClusterSpec) -> Stoppable:
    """conduit.bot.run.start under the host policy; NotStarted when it refuses. The bot's modules (and
    its library) are imported only here, for an agent whose spec asks for the bot or the budget."""
    from conduit.bot.api import BotApiError
    from conduit.bot.run import start as start_bot
    from conduit.errors import AlertError, PolicyError
    from conduit.spec.policy import load_policy

    telegram = spec.spec.alerts.telegram
    name = (telegram.server_label if telegram else None) or socket.gethostname()
    try:
        return start_bot(agent, spec, load_policy()[0].telegram, name)
    except (BotApiError, AlertError, PolicyError) as exc:
        raise NotStarted(str(exc)) from None


class Companion:
    """Owns what runs beside the agent (`running`) and the one thread that follows the spec for it.
    `latest()` is the spec the agent follows (None before there is one), `start(spec)` starts what it
    asks for; `first`, the spec at start-up, is started here (NotStarted: the caller refuses)."""

    def __init__(self, latest: Callable[[], ClusterSpec | None], start: Callable[[ClusterSpec], Stoppable],
                 first: ClusterSpec | None, look: float = SPEC_LOOK):  # fmt: skip
        self.latest, self.start, self.look = latest, start, look
        self.what = asked(first)  # what runs
        self.running = start(first) if self.what else None
        self.started_with = self.seen = _settings(first)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="companion", daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        while not self.stopping.wait(self.look):
            spec = self.latest()
            if spec is None or _settings(spec) == self.seen:
                continue
            self.seen = _settings(spec)
            if self.running is None:
                self._begin(spec)
            elif self.seen != self.started_with:
                change = f"changed the settings of {self.what}" if asked(spec) else f"no longer asks for {self.what}"
                runs = "it runs" if _them(self.what) == "it" else "they run"
                _say(f"the spec {change}: {runs} on as started; restart the agent to take the change up")

    def _begin(self, spec: ClusterSpec) -> None:
        what = asked(spec)
        if what is None:
            return
        try:
            self.running = self.start(spec)
        except Exception as exc:  # noqa: BLE001 - a thread of the agent: whatever stops the start is said in one line
            reason = str(exc) if isinstance(exc, NotStarted) else f"unexpected {type(exc).__name__}: {exc}"
            _say(f"error: {what} did not start: {reason}; the agent serves on without {_them(what)} "
                 "(tried again at the agent's restart, or when the spec's telegram or budget settings change)", err=True)  # fmt: skip
            return
        self.what, self.started_with = what, self.seen
        _say(f"{what} started, as the spec the agent follows now asks")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)  # a start under way ends first (its Bot API calls have timeouts)
        if self.running is not None:
            self.running.stop()


def _say(line: str, err: bool = False) -> None:
    click.echo(line, err=err)
    (sys.stderr if err else sys.stdout).flush()  # a service's log (journald, a pipe) gets it now
