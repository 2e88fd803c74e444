"""The bot in a real `conduit serve`, on the private Docker engine, against the Bot API stand-in on
the loopback: /status answered, a confirmed restart restarts the node and is audited, a stranger
gets nothing and is audited, and a second agent polling the same token refuses in one line."""

from __future__ import annotations

import signal
import subprocess

import pytest

from harness import free_port_block
from tests.harness import wait_for
from tests.helpers import cli_env, default_policy_with_standin
from tests.integration.test_apply import Cluster
from tests.telegram_stub import TelegramStub

pytestmark = pytest.mark.integration

TOKEN = "42:AAHfakeTokenForTestsOnly_0123456789"
OPERATOR, STRANGER = 11, 66
CHAT, OTHER_CHAT, GROUP = 11, 77, -100


@pytest.fixture
def stub(telegram_stub):
    return telegram_stub


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup, stub):
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("bt"), free_port_block(12))
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "token").write_text(TOKEN + "\n")
    (secrets / "chat").write_text(f"{CHAT}\n")
    secrets.joinpath("token").chmod(0o600)
    telegram = {"bot_token": {"file": str(secrets / "token")}, "chat_id": {"file": str(secrets / "chat")}, "api_url": stub.url,
                "bot": {"poll": True}}  # fmt: skip
    cluster.write(count=1, alerts={"telegram": telegram})
    # The stand-in Bot API listens on the loopback: a host allows only the Telegram APIs its policy names.
    cluster.policy = default_policy_with_standin(telegram_api_urls=[stub.url], telegram={"chats": [CHAT, GROUP], "operators": [OPERATOR]},
                                                 secrets={"file_dirs": [str(secrets)], "env": ["TELEGRAM_*"]})  # fmt: skip
    return cluster


def serve(cluster: Cluster) -> subprocess.Popen:
    argv = cluster.argv("serve", str(cluster.spec), "--port", str(free_port_block(1)), "--interval", "1")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=cli_env() | {"CONDUIT_POLICY": cluster.policy})  # fmt: skip


def stopped(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    assert "Traceback" not in err, err
    assert process.returncode == 0, err
    return err


def audited(cluster: Cluster, event: str) -> list[dict]:
    from conduit.state.stores import open_state

    return [row for row in open_state(cluster.state).audit.recent() if row["event"] == event]


def started_at(cluster: Cluster, name: str) -> str:
    return cluster.engine.client.api.inspect_container(name)["State"]["StartedAt"]


def observed_status(stub: TelegramStub) -> dict | None:
    """/status asked, and its answer when it comes from an observation (the agent's first takes a moment)."""
    sent = len(stub.calls("sendMessage"))
    stub.say(CHAT, OPERATOR, "/status")
    answer = stub.wait_calls("sendMessage", sent + 1, timeout=60)[sent]
    return None if "not done yet" in answer["text"] else answer


def test_the_bot_in_the_agent_restarts_a_node_after_a_yes_and_ignores_strangers(cluster, stub):
    applied = subprocess.run(cluster.argv("apply", "--auto-approve", str(cluster.spec)), capture_output=True, text=True, timeout=180,
                             stdin=subprocess.DEVNULL, env=cli_env() | {"CONDUIT_POLICY": cluster.policy})  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    (node,) = cluster.names()
    before = started_at(cluster, node)
    agent = serve(cluster)
    try:
        answer = wait_for(lambda: observed_status(stub), timeout=90, interval=1, message="/status answered from an observation")
        assert f"#1 {node}: running" in answer["text"], answer

        sent = len(stub.calls("sendMessage"))
        stub.say(CHAT, OPERATOR, "/restart_1")
        question = stub.wait_calls("sendMessage", sent + 1)[sent]
        assert question["text"].startswith("restart node 1 on "), question
        yes = question["reply_markup"]["inline_keyboard"][0][0]
        assert yes["text"] == "Yes, do it"
        stub.press(CHAT, OPERATOR, yes["callback_data"], 100)
        (done,) = stub.wait_calls("editMessageText", 1, timeout=60)
        assert done["text"].endswith(f"{node} restarted"), done
        assert started_at(cluster, node) != before
        (row,) = audited(cluster, "bot.restart")
        assert row["user"] == f"telegram:{OPERATOR}" and row["detail"]["status"] == "done" and row["detail"]["node"] == "1"

        stub.say(OTHER_CHAT, STRANGER, "/status")
        wait_for(lambda: audited(cluster, "bot.refused"), timeout=30, message="the stranger's refusal audited")
        assert [m for m in stub.calls("sendMessage") if int(m["chat_id"]) == OTHER_CHAT] == []

        sent = len(stub.calls("sendMessage"))
        stub.say(GROUP, OPERATOR, "/qr_1", chat_type="supergroup")
        (refused,) = stub.wait_calls("sendMessage", sent + 1)[sent:]
        assert refused["text"] == "the claim QR code reveals a node's private key: ask for it in a private chat with the bot"
        stub.say(CHAT, OPERATOR, "/qr_1")
        question = stub.wait_calls("sendMessage", sent + 2)[sent + 1]
        stub.press(CHAT, OPERATOR, question["reply_markup"]["inline_keyboard"][0][0]["callback_data"], 101)
        (photo,) = stub.wait_calls("sendPhoto", 1, timeout=60)
        png = cluster.tmp / "claim.png"
        shown = subprocess.run(cluster.argv("claim", str(cluster.spec), "1", "--png", str(png), "--yes"), capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL, env=cli_env() | {"CONDUIT_POLICY": cluster.policy})  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert photo["photo"] == png.read_bytes()  # the very code `conduit claim` shows
        assert [r["detail"]["status"] for r in audited(cluster, "bot.qr")] == ["done", "refused"]

        second = subprocess.run(cluster.argv("serve", str(cluster.spec), "--port", str(free_port_block(1))), capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL, env=cli_env() | {"CONDUIT_POLICY": cluster.policy})  # fmt: skip
        assert second.returncode == 1, second.stderr
        assert second.stderr.strip().splitlines()[-1] == (
            "error: another process polls this bot token (Telegram answered 409 Conflict); "
            "let exactly one agent poll it (alerts.telegram.bot.poll on one host)")  # fmt: skip
        assert TOKEN.split(":")[1] not in second.stderr + second.stdout
    finally:
        stopped(agent)
