import pytest
from click.testing import CliRunner

from conduit.cli.root import main
from tests.helpers import EXAMPLE
from tests.telegram_stub import TelegramStub


@pytest.fixture
def stub():
    server = TelegramStub()
    yield server
    server.close()


def spec_with(tmp_path, api_url: str) -> str:
    chat = tmp_path / "chat"
    chat.write_text("-100200\n")
    path = tmp_path / "cluster.yaml"
    path.write_text(
        EXAMPLE.read_text().replace(
            "      chat_id: {env: CONDUIT_TELEGRAM_CHAT}",
            f"      chat_id: {{file: {chat}}}\n      api_url: {api_url}",
        )
    )
    return str(path)


def test_alerts_test_sends_one_message(tmp_path, stub, monkeypatch):
    monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", "123:secret-token")
    result = CliRunner().invoke(main, ["alerts", "test", spec_with(tmp_path, stub.url)])
    assert result.exit_code == 0, result.output
    ((path, body),) = stub.requests
    assert path == "/bot123:secret-token/sendMessage"
    assert body["chat_id"] == "-100200" and body["text"].startswith("[edge-1] conduit alerts test")


def test_a_missing_token_is_named_not_shown(tmp_path, stub, monkeypatch):
    monkeypatch.delenv("CONDUIT_TELEGRAM_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["alerts", "test", spec_with(tmp_path, stub.url)])
    assert result.exit_code == 1
    assert "environment variable CONDUIT_TELEGRAM_TOKEN is not set" in result.stderr
    assert stub.requests == []


def test_a_refusal_is_reported_without_the_token(tmp_path, monkeypatch):
    refusing = TelegramStub(ok=False)
    try:
        monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", "123:secret-token")
        result = CliRunner().invoke(main, ["alerts", "test", spec_with(tmp_path, refusing.url)])
    finally:
        refusing.close()
    assert result.exit_code == 1 and "chat not found" in result.stderr
    assert "secret-token" not in result.output + result.stderr
