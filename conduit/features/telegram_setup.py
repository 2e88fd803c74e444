"""`conduit telegram setup`: the token checked with getMe, the chat found from the operator's
first message (getUpdates), the two references written as private files where the host policy
allows secret files, and the spec and policy lines to add. Plain urllib: no bot library needed.
Every error passes through the Scrubber, so the token is never printed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from conduit.errors import AlertError
from conduit.features.alerts import TOKEN_SHAPE, Scrubber


@dataclass(frozen=True)
class FirstMessage:
    chat: int
    user: int
    chat_type: str


def call(api_url: str, token: str, method: str, params: dict | None = None, timeout: float = 15) -> object:
    """One Bot API call's result; AlertError (one line, token blanked) when it fails."""
    scrub = Scrubber(token)
    url = f"{api_url.rstrip('/')}/bot{urllib.parse.quote(token, safe=':')}/{method}"
    request = urllib.request.Request(url, data=json.dumps(params or {}).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            spec = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AlertError(scrub(f"Telegram answered {method} with HTTP {exc.code}")) from None
    except (OSError, ValueError) as exc:
        raise AlertError(scrub(f"cannot reach the Telegram API at {api_url}: {exc}")) from None
    if not (isinstance(spec, dict) and spec.get("ok")):
        raise AlertError(scrub(f"Telegram refused {method}: {spec.get('description') if isinstance(spec, dict) else 'no reason given'}"))
    return spec.get("result")


def check_token(api_url: str, token: str) -> str:
    """The bot's @username, once Telegram accepts the token."""
    if not TOKEN_SHAPE.fullmatch(token):
        raise AlertError("that is not a Telegram bot token (digits, a colon, then the secret part from @BotFather)")
    me = call(api_url, token, "getMe")
    return str(me.get("username") or me.get("first_name") or "the bot") if isinstance(me, dict) else "the bot"


def first_message(api_url: str, token: str, wait_seconds: float) -> FirstMessage | None:
    """The chat and sender of the first message the bot gets within `wait_seconds`; None when none came."""
    deadline = time.monotonic() + wait_seconds
    offset = None
    while (left := deadline - time.monotonic()) > 0:
        found = call(api_url, token, "getUpdates", {"offset": offset, "timeout": int(min(left, 20)), "allowed_updates": ["message"]},
                     timeout=min(left, 20) + 10)  # fmt: skip
        for update in found if isinstance(found, list) else []:
            offset = update.get("update_id", 0) + 1
            message = update.get("message") or {}
            if message.get("chat", {}).get("id") is not None and message.get("from", {}).get("id") is not None:
                return FirstMessage(int(message["chat"]["id"]), int(message["from"]["id"]), str(message["chat"].get("type")))
    return None


def spec_lines(token_file: str, chat_file: str, api_url: str) -> str:
    return "\n".join([
        "spec:", "  alerts:", "    telegram:",
        f"      bot_token: {{file: {token_file}}}", f"      chat_id: {{file: {chat_file}}}",
        *([f"      api_url: {api_url}"] if api_url.rstrip("/") != "https://api.telegram.org" else []),
        "      bot: {poll: true}  # on one host per token",
    ])  # fmt: skip


def policy_lines(first: FirstMessage | None, chat: int) -> str:
    operators = f"[{first.user}]" if first else "[]  # your Telegram user id"
    return "\n".join(["telegram:", f"  chats: [{chat}]", f"  operators: {operators}", "  viewers: []"])
