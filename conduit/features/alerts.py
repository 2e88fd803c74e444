"""Telegram alerts: apply failed or rolled back, a spec that cannot be applied, drift repaired.

The bot token and chat id come from the spec's references (an environment variable or a
file) at send time; neither is ever logged or printed. A token is checked for the shape
Telegram gives bot tokens before it is used, and every error text built from a server
answer, an exception or a URL passes through `Scrubber`, which blanks both secrets.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from conduit.log import logger
from conduit.errors import AlertError, HostileEntry
from conduit.execute.nodehealth import planted
from conduit.spec.spec import ClusterSpec, SecretRef

log = logger("conduit.alerts")

# Digits (the bot's id), a colon, then the secret part.
TOKEN_SHAPE = re.compile(r"[0-9]+:[A-Za-z0-9_-]{30,}")
REDACTED = "<redacted>"


def _where(ref: SecretRef) -> str:
    return f"env {ref.env}" if ref.env is not None else f"file {ref.file}"


def secret(ref: SecretRef, field: str) -> str:
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise AlertError(f"{field}: environment variable {ref.env} is not set")
        return value.strip()
    try:
        raw = Path(ref.file).read_bytes()
    except OSError as exc:
        raise AlertError(f"{field}: cannot read {ref.file}: {exc.strerror}") from None
    value = raw.decode("utf-8", errors="replace").strip()  # a stray byte fails the shape check, not the decoder
    if not value:
        raise AlertError(f"{field}: {ref.file} is empty")
    return value


def bot_token(ref: SecretRef) -> str:
    """The bot token the reference names; one line naming where it came from when it is not a token."""
    token = secret(ref, "alerts.telegram.bot_token")
    if not TOKEN_SHAPE.fullmatch(token):
        raise AlertError(f"the bot token in {_where(ref)} is not a Telegram bot token")
    return token


class Scrubber:
    """Replaces the secrets, in every form they take in URLs, JSON and reprs, with <redacted>."""

    def __init__(self, *secrets: str):
        forms: set[str] = set()
        for value in secrets:
            if len(value) >= 4:  # shorter, it would only mangle the text around it
                forms |= {
                    value,
                    urllib.parse.quote(value, safe="", errors="surrogatepass"),
                    urllib.parse.quote(value, safe=":", errors="surrogatepass"),
                    urllib.parse.quote_plus(value, errors="surrogatepass"),
                    json.dumps(value)[1:-1],
                    json.dumps(value, ensure_ascii=False)[1:-1],
                    repr(value)[1:-1],
                    value.encode("unicode_escape", errors="backslashreplace").decode("ascii"),
                }
        self.forms = sorted((f for f in forms if f), key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for form in self.forms:
            out = out.replace(form, REDACTED)
        return out


def _describe(answer: bytes) -> str | None:
    """The description of a Bot API answer, when it is one."""
    try:
        spec = json.loads(answer)
    except ValueError:
        return None
    return str(spec.get("description")) if isinstance(spec, dict) and spec.get("description") else None


def deliver(api_url: str, token: str, chat: str, text: str) -> None:
    """POST one sendMessage. Any failure, whatever the token holds, is an AlertError whose
    message has the token and chat id blanked out."""
    scrub = Scrubber(token, chat)
    try:
        _post(api_url, token, chat, text)
    except AlertError as exc:
        raise AlertError(scrub(exc)) from None
    except Exception as exc:  # noqa: BLE001 - no exception may carry the token out
        raise AlertError(scrub(f"cannot send to the Telegram API at {api_url}: {type(exc).__name__}: {exc}")) from None


def _post(api_url: str, token: str, chat: str, text: str) -> None:
    body = json.dumps({"chat_id": chat, "text": text, "disable_web_page_preview": True}).encode()
    # Quoted, so no content of the token can break the request line.
    url = f"{api_url.rstrip('/')}/bot{urllib.parse.quote(token, safe=':', errors='surrogatepass')}/sendMessage"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read()
    except urllib.error.HTTPError as exc:
        reason = _describe(exc.read() or b"")
        raise AlertError(f"Telegram answered HTTP {exc.code}{': ' + reason if reason else ''}") from None
    except urllib.error.URLError as exc:
        raise AlertError(f"cannot reach the Telegram API at {api_url}: {exc.reason}") from None
    except OSError as exc:
        raise AlertError(f"cannot reach the Telegram API at {api_url}: {exc}") from None
    try:
        spec = json.loads(answer or b"{}")
    except ValueError:
        raise AlertError("Telegram answered something that is not JSON") from None
    if not (isinstance(spec, dict) and spec.get("ok", False)):
        raise AlertError(f"Telegram refused the message: {_describe(answer) or 'no reason given'}")


def send(spec: ClusterSpec, text: str) -> bool:
    """Send one message; False when no alerts are configured. Raises AlertError on failure."""
    telegram = spec.spec.alerts.telegram
    if telegram is None:
        return False
    token = bot_token(telegram.bot_token)
    chat = secret(telegram.chat_id, "alerts.telegram.chat_id")
    label = telegram.server_label or spec.metadata.name
    deliver(telegram.api_url, token, chat, f"[{label}] {text}")
    return True


def notify(spec: ClusterSpec, text: str) -> None:
    """Send if configured; a failure to alert is logged, never fatal."""
    try:
        if send(spec, text):
            log.info("alert.sent", text=text)
    except AlertError as exc:
        log.warning("alert.failed", error=str(exc))


def compromised(spec: ClusterSpec, exc: HostileEntry) -> None:
    """A node planted a link or a special file in its volume: recorded (a structlog event) and the operator told."""
    notify(spec, planted(exc).alert)
