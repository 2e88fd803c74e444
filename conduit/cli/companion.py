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
from typing import TYPE_CHECKING, Protocol

import click

from conduit.spec.spec import ClusterSpec

if TYPE_CHECKING:
    from conduit.serve.agent import Agent

SPEC_LOOK = 2.0  # seconds between looks at the spec the agent follows (a stat of its file)


class Stoppable(Protocol):
    def stop(self) -> None: ...


class NotStarted(Exception):
    """The bot or the budget refused to start; the message is one line that says what to do."""


BOT, BUDGET = "the Telegram bot", "the budget"


def _settings(spec: ClusterSpec | None) -> dict[str, object]:
    """What each is started from (None: not asked): a new spec that changes none of it changes nothing
    here. The bot takes the whole telegram section; the budget only its own."""
    if spec is None:
        return {BOT: None, BUDGET: None}
    telegram = spec.spec.alerts.telegram
    polls = telegram is not None and telegram.bot is not None and telegram.bot.poll
    return {BOT: telegram if polls else None, BUDGET: spec.spec.budget}


def asked(spec: ClusterSpec | None) -> str | None:
    """What of the bot and the budget the spec asks the agent to run, in words; None for neither."""
    return " and ".join(part for part, settings in _settings(spec).items() if settings is not None) or None


def changes(started: dict[str, object], now: dict[str, object]) -> list[str]:
    """What a later spec changes of what runs, one line each, naming the part it changes."""
    lines = []
    for part in (BOT, BUDGET):
        before, after = started[part], now[part]
        if before == after:
            continue
        if before is None:
            lines.append(f"the spec now asks for {part} too: it starts when the agent restarts")
        elif after is None:
            lines.append(f"the spec no longer asks for {part}: it runs on as started; restart the agent to stop it")
        else:
            lines.append(f"the spec changed the settings of {part}: it runs on with those it started with; restart the agent to take them up")
    return lines


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
        self.running = start(first) if asked(first) else None
        self.started_with = self.seen = _settings(first)
        self.trouble: str | None = None  # the last look's failure, said once
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="companion", daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        while not self.stopping.wait(self.look):
            try:
                self._look()
                self.trouble = None
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a spec it cannot read now
                if _one_line(exc) != self.trouble:
                    self.trouble = _one_line(exc)
                    _say(f"warning: could not look at the spec the agent follows: {self.trouble}; it keeps looking every {self.look:g} s", err=True)

    def _look(self) -> None:
        spec = self.latest()
        now = _settings(spec)
        if spec is None or now == self.seen:
            return
        before, self.seen = self.seen, now
        if self.running is None:
            self._begin(spec)
            return
        said = set(changes(self.started_with, before))  # what an earlier look said already
        for line in changes(self.started_with, self.seen):
            if line not in said:
                _say(line)

    def _begin(self, spec: ClusterSpec) -> None:
        what = asked(spec)
        if what is None:
            return
        try:
            self.running = self.start(spec)
        except Exception as exc:  # noqa: BLE001 - a thread of the agent: whatever stops the start is said in one line
            reason = _one_line(exc) if isinstance(exc, NotStarted) else f"unexpected {type(exc).__name__}: {_one_line(exc)}"
            _say(f"error: {what} did not start: {reason}; the agent serves on without {_them(what)} "
                 "(tried again at the agent's restart, or when the spec's telegram or budget settings change)", err=True)  # fmt: skip
            return
        self.started_with = self.seen
        _say(f"{what} started, as the spec the agent follows now asks")

    def stop(self) -> None:
        self.stopping.set()
        # A start under way ends first (its Bot API calls have timeouts); one still going after that is
        # left to the process's exit: its threads are daemons.
        self.thread.join(timeout=60)
        if self.running is not None:
            self.running.stop()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _say(line: str, err: bool = False) -> None:
    click.echo(line, err=err)
    (sys.stderr if err else sys.stdout).flush()  # a service's log (journald, a pipe) gets it now
