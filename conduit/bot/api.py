"""The Bot API as the bot uses it, through python-telegram-bot's typed `Bot` pointed at the
spec's `api_url` (a self-hosted Bot API server or a stand-in works the same).

python-telegram-bot, not aiogram: it is maintained, typed, maps each Bot API error to its own
class (a 409 is `Conflict`) and takes a `base_url`; aiogram pins pydantic below the version the
spec language uses. Its asyncio calls run on one private event loop in a thread of its own, so
the bot's own loops stay plain threads like the rest of the agent, and the duties can send while
the poller waits in a long poll. Every error text passes through the Scrubber: the token never
reaches a log."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass

from conduit.features.alerts import Scrubber

CONFLICT_LINE = ("another process polls this bot token (Telegram answered 409 Conflict); "
                 "let exactly one agent poll it (alerts.telegram.bot.poll on one host)")  # fmt: skip


class BotApiError(Exception):
    """A Bot API call failed; the message never holds the token."""


class PollConflict(BotApiError):
    """Telegram gives a token's updates to one poller at a time, and another one asked."""


class Interrupted(BotApiError):
    """The agent is stopping: the long poll in progress was ended."""


@dataclass(frozen=True)
class Incoming:
    """One update, reduced to what the bot reads: a message or a button press."""

    update_id: int
    chat: int | None
    user: int | None
    chat_type: str | None  # private, group, supergroup, channel
    text: str | None = None
    callback: str | None = None  # the callback query's id
    data: str | None = None  # the pressed button's data
    message_id: int | None = None  # the message the button sits on
    name: str | None = None  # the user's @username, else first name: who a hold names


def _incoming(update) -> Incoming:
    query = update.callback_query
    if query is not None:
        message = query.message
        return Incoming(update.update_id, message.chat.id if message else None, query.from_user.id,
                        message.chat.type if message else None, callback=query.id, data=query.data,
                        message_id=message.message_id if message else None, name=_name(query.from_user))  # fmt: skip
    message = update.effective_message
    user = update.effective_user
    return Incoming(update.update_id, message.chat.id if message else None, user.id if user else None,
                    message.chat.type if message else None, text=message.text if message else None, name=_name(user))  # fmt: skip


def _name(user) -> str | None:
    return None if user is None else (f"@{user.username}" if user.username else user.first_name)


def _markup(buttons: list[list[tuple[str, str]]] | None):
    if not buttons:
        return None
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in buttons])


async def _shut_down(requests) -> None:
    await asyncio.gather(*(request.shutdown() for request in requests))


class BotApi:
    def __init__(self, token: str, api_url: str, poll_seconds: int = 30):
        import telegram
        from telegram.request import HTTPXRequest

        self._error = telegram.error
        self.poll_seconds = poll_seconds
        self.scrub = Scrubber(token)
        base = api_url.rstrip("/")
        self._requests = (HTTPXRequest(read_timeout=20), HTTPXRequest(read_timeout=poll_seconds + 10))
        self.bot = telegram.Bot(token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot", request=self._requests[0],
                                get_updates_request=self._requests[1])  # fmt: skip
        self._polling = threading.Lock()
        self._poll: concurrent.futures.Future | None = None
        self._interrupted = False
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="telegram-api", daemon=True)
        self._loop_thread.start()

    def _submit(self, coro) -> concurrent.futures.Future:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed: a call from a thread that outlived the agent's stop
            coro.close()
            raise Interrupted("the agent is stopping") from None

    def _call(self, coro, poll: bool = False):
        """The coroutine's result, run on the API's loop; from any thread, several at once."""
        if poll:
            with self._polling:
                if self._interrupted:
                    coro.close()
                    raise Interrupted("the agent is stopping")
                future = self._poll = self._submit(coro)
        else:
            future = self._submit(coro)
        try:
            return future.result()
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            raise Interrupted("the agent is stopping") from None
        except self._error.Conflict:
            raise PollConflict(CONFLICT_LINE) from None
        except Exception as exc:  # noqa: BLE001 - no exception may carry the token out
            raise BotApiError(self.scrub(f"the Telegram API refused or failed: {type(exc).__name__}: {exc}")) from None
        finally:
            if poll:
                with self._polling:
                    self._poll = None

    def interrupt(self) -> None:
        """End the long poll in progress, and any later one at once: the agent is stopping and
        should not wait out the poll's timeout."""
        with self._polling:
            self._interrupted = True
            if self._poll is not None:
                self._poll.cancel()

    def updates(self, offset: int | None, timeout: int | None = None) -> list[Incoming]:
        """The updates after `offset`, waiting up to `timeout` seconds for one (long polling)."""
        wait = self.poll_seconds if timeout is None else timeout
        found = self._call(self.bot.get_updates(offset=offset, timeout=wait, allowed_updates=["message", "callback_query"]), poll=True)
        return [_incoming(u) for u in found]

    def send(self, chat: int, text: str, buttons=None) -> int:
        message = self._call(self.bot.send_message(chat, text, reply_markup=_markup(buttons), disable_web_page_preview=True))
        return message.message_id

    def edit(self, chat: int, message_id: int, text: str, buttons=None) -> None:
        self._call(self.bot.edit_message_text(text, chat_id=chat, message_id=message_id, reply_markup=_markup(buttons),
                                              disable_web_page_preview=True))  # fmt: skip

    def answer(self, callback: str, text: str | None = None) -> None:
        self._call(self.bot.answer_callback_query(callback, text=text))

    def photo(self, chat: int, png: bytes, caption: str) -> None:
        self._call(self.bot.send_photo(chat, png, caption=caption))

    def close(self) -> None:
        try:  # the two HTTP clients' connections (Bot.shutdown closes them only after an initialize)
            self._call(_shut_down(self._requests))
        except BotApiError:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join()
        self.loop.close()
