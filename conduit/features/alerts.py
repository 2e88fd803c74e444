"""Telegram alerts: apply failed or rolled back, a spec that cannot be applied, drift repaired.

The bot token and chat id come from the spec's references (an environment variable or a
file) at send time; neither is ever logged or printed.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import structlog

from conduit.spec.spec import ClusterSpec, SecretRef

log = structlog.get_logger("conduit.alerts")


class AlertError(Exception):
    """An alert that could not be sent; the message never holds the token."""


def secret(ref: SecretRef, field: str) -> str:
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise AlertError(f"{field}: environment variable {ref.env} is not set")
        return value.strip()
    try:
        value = Path(ref.file).read_text().strip()
    except OSError as exc:
        raise AlertError(f"{field}: cannot read {ref.file}: {exc.strerror}") from None
    if not value:
        raise AlertError(f"{field}: {ref.file} is empty")
    return value


def send(doc: ClusterSpec, text: str) -> bool:
    """Send one message; False when no alerts are configured. Raises AlertError on failure."""
    telegram = doc.spec.alerts.telegram
    if telegram is None:
        return False
    token = secret(telegram.bot_token, "alerts.telegram.bot_token")
    chat = secret(telegram.chat_id, "alerts.telegram.chat_id")
    label = telegram.server_label or doc.metadata.name
    body = json.dumps({"chat_id": chat, "text": f"[{label}] {text}", "disable_web_page_preview": True}).encode()
    request = urllib.request.Request(
        f"{telegram.api_url.rstrip('/')}/bot{token}/sendMessage", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AlertError(f"Telegram answered HTTP {exc.code}") from None
    except (urllib.error.URLError, socket.timeout, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertError(f"cannot reach the Telegram API at {telegram.api_url}: {reason}") from None
    if not answer.get("ok", False):
        raise AlertError(f"Telegram refused the message: {answer.get('description', 'no reason given')}")
    return True


def notify(doc: ClusterSpec, text: str) -> None:
    """Send if configured; a failure to alert is logged, never fatal."""
    try:
        if send(doc, text):
            log.info("alert.sent", text=text)
    except AlertError as exc:
        log.warning("alert.failed", error=str(exc))
