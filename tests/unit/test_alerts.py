from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner
from harness import free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.cli.root import main
from conduit.errors import AlertError
from conduit.features.alerts import Scrubber, deliver, notify
from conduit.spec.load import load_text
from tests.helpers import EXAMPLE, SMALL_VPS
from tests.telegram_stub import TelegramStub

TOKEN = "123456:AAH-secretTokenPart_0123456789abcdef"


@pytest.fixture
def stub(telegram_stub):
    return telegram_stub


@pytest.fixture
def echoing():
    """A Bot API that refuses with HTTP 404 and repeats the path (and so the token) it was asked for."""
    server = TelegramStub(ok=False, status=404, echo="path")
    yield server
    server.close()


def spec_text(tmp_path, api_url: str, token_ref: str = "{env: CONDUIT_TELEGRAM_TOKEN}") -> str:
    chat = tmp_path / "chat"
    chat.write_text("-100200\n")
    return EXAMPLE.read_text().replace(
        "      chat_id: {env: CONDUIT_TELEGRAM_CHAT}",
        f"      chat_id: {{file: {chat}}}\n      api_url: {api_url}",
    ).replace("bot_token: {env: CONDUIT_TELEGRAM_TOKEN}", f"bot_token: {token_ref}")


def spec_with(tmp_path, api_url: str, token_ref: str = "{env: CONDUIT_TELEGRAM_TOKEN}") -> str:
    path = tmp_path / "cluster.yaml"
    path.write_text(spec_text(tmp_path, api_url, token_ref))
    return str(path)


def alerts_test(tmp_path, spec: str):
    return CliRunner().invoke(main, ["--state-dir", str(tmp_path / "state"), "alerts", "test", spec])


def closed_port_url() -> str:
    """Where nothing answers (harness.free_port: no other test and no outgoing connection takes it meanwhile)."""
    return f"http://127.0.0.1:{free_port()}"


def test_alerts_test_sends_one_message(tmp_path, stub, monkeypatch):
    monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", TOKEN)
    result = alerts_test(tmp_path, spec_with(tmp_path, stub.url))
    assert result.exit_code == 0, result.output
    ((path, body),) = stub.requests
    assert path == f"/bot{TOKEN}/sendMessage"
    assert body["chat_id"] == "-100200" and body["text"].startswith("[edge-1] conduit alerts test")


def test_a_missing_token_is_named_not_shown(tmp_path, stub, monkeypatch):
    monkeypatch.delenv("CONDUIT_TELEGRAM_TOKEN", raising=False)
    result = alerts_test(tmp_path, spec_with(tmp_path, stub.url))
    assert result.exit_code == 1
    assert "environment variable CONDUIT_TELEGRAM_TOKEN is not set" in result.stderr
    assert stub.requests == []


def test_a_refusal_is_reported_without_the_token(tmp_path, monkeypatch):
    refusing = TelegramStub(ok=False)
    try:
        monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", TOKEN)
        result = alerts_test(tmp_path, spec_with(tmp_path, refusing.url))
    finally:
        refusing.close()
    assert result.exit_code == 1 and "chat not found" in result.stderr
    assert TOKEN not in result.output + result.stderr


@pytest.mark.parametrize("status, echo", [(200, "path"), (404, "path"), (404, "decoded"), (400, "decoded")])
def test_an_answer_that_echoes_the_path_is_shown_redacted(tmp_path, monkeypatch, status, echo):
    server = TelegramStub(ok=False, status=status, echo=echo)
    try:
        monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", TOKEN)
        result = alerts_test(tmp_path, spec_with(tmp_path, server.url))
    finally:
        server.close()
    assert result.exit_code == 1 and len(server.requests) == 1
    assert "Not Found: no method at /bot<redacted>/sendMessage" in result.stderr
    assert TOKEN not in result.output + result.stderr and "secretTokenPart" not in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_refused_connection_names_the_api_not_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", TOKEN)
    url = closed_port_url()
    result = alerts_test(tmp_path, spec_with(tmp_path, url))
    assert result.exit_code == 1
    assert f"cannot reach the Telegram API at {url}" in result.stderr
    assert TOKEN not in result.output + result.stderr


BAD_TOKENS = [
    "123456:AAH secretTokenPart_0123456789abcdef",  # a space
    "123456:AAH\nsecretTokenPart_0123456789abcdef",  # a newline
    "123456:AAHsécretTokenPart_0123456789abcdéf",  # not ASCII
    "123456:AAH/secretTokenPart_0123456789abcdef",  # would change the path
    "123456:short",
    "secretTokenPart_0123456789abcdef",  # no bot id
]


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_a_token_of_the_wrong_shape_from_env_is_one_line_without_it(tmp_path, stub, monkeypatch, token):
    monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", token)
    result = alerts_test(tmp_path, spec_with(tmp_path, stub.url))
    assert result.exit_code == 1 and stub.requests == []
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith("the bot token in env CONDUIT_TELEGRAM_TOKEN is not a Telegram bot token")
    for part in token.split():
        assert part not in result.output + result.stderr or len(part) < 8


@pytest.mark.parametrize("data", [t.encode() for t in BAD_TOKENS] + [b"123456:AAH\xffsecretTokenPart_0123456789abcdef"])
def test_a_token_of_the_wrong_shape_from_a_file_is_one_line_without_it(tmp_path, stub, data):
    token_file = tmp_path / "token"
    token_file.write_bytes(data)
    result = alerts_test(tmp_path, spec_with(tmp_path, stub.url, f"{{file: {token_file}}}"))
    assert result.exit_code == 1 and stub.requests == []
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(f"the bot token in file {token_file} is not a Telegram bot token")
    assert "secretTokenPart" not in result.output + result.stderr


def _everything_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_a_failed_alert_leaves_the_token_in_no_output_log_or_state(tmp_path, echoing, monkeypatch, capsys):
    from conduit.drivers.observe import HostAccess
    from conduit.features.watch import Result, Watcher
    from conduit.state.stores import open_state

    monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", TOKEN)
    state_dir = tmp_path / "state"
    open_state(state_dir).history.begin("spec", "digest", None, (None, None), "edge")
    watcher = Watcher(HostAccess(tmp_path, state_dir, None), lambda: SMALL_VPS, report=print)
    watcher.last_spec = load_text(spec_text(tmp_path, echoing.url), "cluster.yaml", SMALL_VPS)
    with structlog.testing.capture_logs() as logs:
        watcher._record(Result("failed", "a step failed"), "interval", "digest", None)
    failed = [entry for entry in logs if entry["event"] == "alert.failed"]
    assert len(failed) == 1 and "Telegram answered HTTP 404" in failed[0]["error"] and "<redacted>" in failed[0]["error"]
    assert len(echoing.requests) == 1
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err + repr(logs)
    assert (state_dir / "state.db").exists() and (state_dir / "watch.json").exists()
    assert TOKEN.encode() not in _everything_under(state_dir)


def test_notify_logs_a_refused_connection_without_the_token(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONDUIT_TELEGRAM_TOKEN", TOKEN)
    doc = load_text(spec_text(tmp_path, closed_port_url()), "cluster.yaml", SMALL_VPS)
    with structlog.testing.capture_logs() as logs:
        notify(doc, "apply failed")
    assert [entry["event"] for entry in logs] == ["alert.failed"]
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err + repr(logs)


def test_the_scrubber_blanks_every_spelling_of_the_secrets():
    scrub = Scrubber("12:a b/é\n", "-100200")
    for form in ["12:a b/é\n", "12:a%20b%2F%C3%A9%0A", "12%3Aa+b%2F%C3%A9%0A", "12:a b/\\u00e9\\n", "12:a b/é\\n"]:
        assert scrub(f"at /bot{form}/x") == "at /bot<redacted>/x"
    assert scrub("chat -100200 not found") == "chat <redacted> not found"
    assert Scrubber("", "abc")("abc") == "abc"  # nothing to blank: too short to be a secret


@pytest.fixture(scope="module")
def module_echoing():
    server = TelegramStub(ok=False, status=404, echo="decoded")
    yield server
    server.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(min_size=1, max_size=60))
def test_no_token_content_escapes_the_http_call(module_echoing, token):
    try:
        deliver(module_echoing.url, token, "-100200", "hello")
        text = ""
    except AlertError as exc:
        text = str(exc)
    if len(token) >= 8 and token not in "<redacted>":  # the placeholder itself may hold such a "token"
        assert token not in text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=60) | st.text(min_size=1, max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_no_token_file_content_escapes_send(tmp_path, module_echoing, data):
    token_file = tmp_path / "token"
    token_file.write_bytes(data)
    doc = load_text(spec_text(tmp_path, module_echoing.url, f"{{file: {token_file}}}"), "cluster.yaml", SMALL_VPS)
    from conduit.features.alerts import send

    try:
        send(doc, "hello")
        text = ""
    except AlertError as exc:
        text = str(exc)
    token = data.decode("utf-8", "replace").strip()
    if len(token) >= 8 and token not in "<redacted>":
        assert token not in text
