"""`conduit telegram setup` against the Bot API stand-in: the token checked, the chat found from
the first message, the files written where the host policy allows, the lines to add printed; and
the refusals, each one line, none of them showing the token. Run as the real command (a process)."""

from __future__ import annotations

import subprocess
import threading

import pytest

from tests.helpers import CONDUIT, cli_env, default_policy_with_standin
from tests.telegram_stub import TelegramStub

TOKEN = "123456:AAHfakeTokenForTestsOnly_0123456789"


@pytest.fixture
def stub(telegram_stub):
    return telegram_stub


@pytest.fixture
def host(tmp_path, stub):
    secrets = tmp_path / "secrets"
    (tmp_path / "token").write_text(TOKEN + "\n")
    # The stand-in listens on the loopback: the host allows only the Telegram APIs its policy names.
    policy = default_policy_with_standin(telegram_api_urls=[stub.url], secrets={"file_dirs": [str(secrets)], "env": ["TELEGRAM_*"]})

    def setup(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*CONDUIT, "telegram", "setup", "--token-file", str(tmp_path / "token"), "--api-url", stub.url, *args],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env=cli_env() | {"CONDUIT_POLICY": policy}, **kwargs)  # fmt: skip

    setup.secrets = secrets
    return setup


def test_setup_finds_the_chat_from_the_first_message_and_writes_private_files(host, stub):
    threading.Timer(1.0, stub.say, args=(-1001, 42, "hello", "supergroup")).start()
    result = host("--name", "edge", "--wait", "30")
    assert result.returncode == 0, result.stderr
    assert (host.secrets / "edge-telegram-token").read_text() == TOKEN + "\n"
    assert (host.secrets / "edge-telegram-chat").read_text() == "-1001\n"
    assert (host.secrets / "edge-telegram-token").stat().st_mode & 0o777 == 0o600 and host.secrets.stat().st_mode & 0o777 == 0o700
    assert "token accepted: @conduit_bot" in result.stdout
    assert f"bot_token: {{file: {host.secrets / 'edge-telegram-token'}}}" in result.stdout and "bot: {poll: true}" in result.stdout
    assert "  chats: [-1001]\n  operators: [42]" in result.stdout
    assert TOKEN.split(":")[1] not in result.stdout + result.stderr
    assert [path.rsplit("/", 1)[-1] for path, _ in stub.requests[:2]] == ["getMe", "getUpdates"]


def test_setup_with_a_chat_id_asks_for_no_message(host, stub):
    result = host("--chat-id", "77")
    assert result.returncode == 0, result.stderr
    assert (host.secrets / "conduit-telegram-chat").read_text() == "77\n" and stub.calls("getUpdates") == []


def test_a_refused_token_and_a_silent_chat_are_one_line_each(tmp_path, host):
    refused = TelegramStub(ok=False)
    try:
        bad = host("--chat-id", "7", "--api-url", refused.url)
    finally:
        refused.close()
    assert bad.returncode == 2 and "is not a Telegram API the host allows" in bad.stderr  # not in the policy: refused before any call
    silent = host("--wait", "1")
    assert silent.returncode == 1 and silent.stderr.strip().splitlines() == [
        "error: no message reached @conduit_bot within 1 s; send one and run setup again, or give --chat-id"]  # fmt: skip
    assert not (host.secrets / "conduit-telegram-token").exists()
