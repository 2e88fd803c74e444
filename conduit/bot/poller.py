"""Long polling of the bot's updates by this agent alone. Telegram gives a token's updates to one
poller at a time and ends the others' requests with 409 Conflict. A poller that starts claims the
token first: should another one already poll it, that one's next request ends the newcomer's
within the claim, and the newcomer refuses with one line. One that already holds the token waits
a moment after a 409 and polls again, which is what ends a newcomer's claim."""

from __future__ import annotations

import threading

from conduit.log import logger
from conduit.bot.api import BotApiError, Interrupted, PollConflict

log = logger("conduit.bot")
CLAIM_SECONDS = 5  # longer than a holder's pause after a 409
PAUSE_SECONDS = 1


class Poller:
    def __init__(self, api, handle, claim_seconds: int = CLAIM_SECONDS):
        self.api, self.handle, self.claim_seconds = api, handle, claim_seconds
        self.offset: int | None = None
        self.holding = False
        self.refused: str | None = None

    def step(self, timeout: int | None = None) -> None:
        """One getUpdates, and each update handled once (the offset moves past it first)."""
        for inc in self.api.updates(self.offset, timeout):
            self.offset = inc.update_id + 1
            try:
                self.handle(inc)
            except BotApiError as exc:
                log.warning("bot.answer_failed", error=str(exc))

    def claim(self) -> bool:
        """False, with `refused` set, when another process polls the token."""
        try:
            self.step(timeout=self.claim_seconds)
        except PollConflict as exc:
            self.refused = f"error: {exc}"
            log.error("bot.refused_to_poll", error=self.refused)
            return False
        self.holding = True
        return True

    def run(self, stop: threading.Event) -> None:
        if not self.holding and not self.claim():  # start() claims before the agent can stop it
            return
        while not stop.is_set():
            try:
                self.step()
            except Interrupted:  # the agent stops
                return
            except PollConflict:
                log.warning("bot.poll_conflict", error="another process asked for this token's updates; it will be refused")
                stop.wait(PAUSE_SECONDS)
            except BotApiError as exc:
                log.warning("bot.poll_failed", error=str(exc))
                stop.wait(5)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="conduit-bot", daemon=True)
        thread.start()
        return thread


