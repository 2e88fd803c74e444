"""The bot in a real `conduit serve`, on the private Docker daemon, against the Bot API stand-in on
the loopback: /status answered, a confirmed restart restarts the node and is audited, a stranger
gets nothing and is audited, and a second agent polling the same token refuses in one line."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from harness import free_port_block
from harness import wait_for
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


def serve(cluster: Cluster, *source: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`conduit serve` of the cluster's spec, or of what `source` names (--git …)."""
    argv = cluster.argv("serve", *(source or (str(cluster.spec),)), "--port", str(free_port_block(1)), "--interval", "1")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
                            env=cli_env() | {"CONDUIT_POLICY": cluster.policy})  # fmt: skip


def stopped(process: subprocess.Popen) -> str:
    """Its stdout, once SIGTERM has stopped it cleanly."""
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert "Traceback" not in (err or ""), err
    assert process.returncode == 0, err
    return out


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


class Repository:
    """A bare repository the agent follows, and a clone that commits the spec to it."""

    def __init__(self, tmp_path):
        self.bare, self.work = tmp_path / "repo.git", tmp_path / "work"
        self.git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run([*self.git, "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        subprocess.run([*self.git, "clone", "-q", str(self.bare), str(self.work)], check=True)

    def commit(self, spec: str, message: str) -> None:
        (self.work / "cluster.yaml").write_text(spec)
        subprocess.run([*self.git, "-C", str(self.work), "add", "cluster.yaml"], check=True)
        subprocess.run([*self.git, "-C", str(self.work), "commit", "-qm", message], check=True)
        subprocess.run([*self.git, "-C", str(self.work), "push", "-q", "origin", "HEAD:main"], check=True)

    def source(self) -> tuple[str, ...]:
        return "--git", str(self.bare), "--ref", "main", "--path", "cluster.yaml", "--poll", "0.5"


def test_serve_following_a_repository_on_a_fresh_host_starts_the_bot_once_the_first_apply_lands(cluster, stub, tmp_path):
    repo = Repository(tmp_path)
    repo.commit(cluster.spec.read_text(), "one node")
    agent = serve(cluster, *repo.source())
    try:
        wait_for(lambda: cluster.names(), timeout=90, message="the first apply")
        answer = wait_for(lambda: observed_status(stub), timeout=90, interval=1, message="/status answered by the bot started after it")
        assert "#1 " in answer["text"], answer
    finally:
        out = stopped(agent)
    assert ("nothing applied here yet: the Telegram bot and the budget, if the spec asks for them, start once its first apply lands\n"
            in out and "the Telegram bot started, as the spec the agent follows now asks\n" in out), out


def refusals(stderr: Path) -> list[str]:
    """The agent's lines for the user on stderr (its log's lines are there too)."""
    return [line for line in stderr.read_text().splitlines() if line.startswith("error: ")]


def test_a_later_commit_that_asks_for_the_bot_starts_it_and_one_it_cannot_start_with_is_one_line(cluster, stub, tmp_path):
    """The first commit asks for no bot. A later one asks for it with a token file that holds no token:
    one line says so and the agent serves on without it. The commit that names the right file starts it."""
    with_bot = cluster.spec.read_text()
    token = str(tmp_path / "secrets" / "token")
    broken = tmp_path / "secrets" / "broken"
    broken.write_text("not a token\n")
    broken.chmod(0o600)
    cluster.write(count=1)
    repo, errors = Repository(tmp_path), tmp_path / "agent.err"
    repo.commit(cluster.spec.read_text(), "one node, no bot")
    with errors.open("w") as stderr:
        agent = serve(cluster, *repo.source(), stderr=stderr)
    try:
        wait_for(lambda: cluster.names(), timeout=90, message="the first apply")
        repo.commit(with_bot.replace(token, str(broken)), "the bot, from the wrong file")
        (said,) = wait_for(lambda: refusals(errors), timeout=60, message="the refusal said")
        assert said == (f"error: the Telegram bot did not start: the bot token in file {broken} is not a Telegram bot token; the agent "
                        "serves on without it (tried again at the agent's restart, or when the spec's telegram or budget settings change)")  # fmt: skip
        assert agent.poll() is None and stub.requests == []  # the agent serves on, the Bot API never asked
        repo.commit(with_bot, "the bot, from its token file")
        answer = wait_for(lambda: observed_status(stub), timeout=90, interval=1, message="/status answered by the bot the commit asked for")
        assert "#1 " in answer["text"], answer
    finally:
        out = stopped(agent)
    assert refusals(errors) == [said] and "Traceback" not in errors.read_text()
    assert out.count("the Telegram bot started, as the spec the agent follows now asks\n") == 1, out


# ---------------------------------------------------------------------- a remote host of the fleet

FLEET = """\
apiVersion: conduit.psiphon.ca/v1alpha1
kind: ConduitFleet
rings: {{stable: main}}
default_ring: stable
hosts:
  - {{name: edge-1, agent: "https://edge-1.example.net:8443", spec: edge-1.yaml}}
  - {{name: edge-2, agent: "{remote}", spec: edge-2.yaml}}
  - {{name: edge-3, agent: "https://edge-3.example.net:8443", spec: edge-3.yaml}}
"""


@pytest.fixture
def remote(tmp_path, docker_engine, docker_cleanup, registry, standin_image):
    """edge-2: a real `conduit serve` on the loopback for two nodes on the private engine, their image
    behind a tag of the private registry (so that an update asks a registry); (cluster, its URL, tokens)."""
    from harness import push_variant

    tag = f"{registry.address}/{docker_cleanup.name('bf')}:stable"
    push_variant(docker_engine, registry, tag.split("/", 1)[1].rsplit(":", 1)[0], "stable", standin_image)
    (tmp_path / "edge-2").mkdir()
    cluster = Cluster(tmp_path / "edge-2", docker_engine, tag, docker_cleanup.name("bf"), free_port_block(12))
    cluster.write(count=2, updates={"policy": "report"})
    applied = cluster.apply()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    tokens = {}
    for name, role in (("ann", "viewer"), ("olu", "operator")):
        made = cluster.run("tokens", "create", name, "--role", role)
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    port = free_port_block(1)
    process = subprocess.Popen(cluster.argv("serve", str(cluster.spec), "--port", str(port), "--interval", "1"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=cli_env())  # fmt: skip
    try:
        yield cluster, f"http://127.0.0.1:{port}", tokens
    finally:
        stopped(process)


@pytest.fixture
def fleet_bot(tmp_path, remote, telegram_stub):
    """The bot of edge-1 (`serve --fleet --host edge-1`): edge-1 its own agent, edge-2 the real agent
    above (reached over HTTP with its tokens from the fleet tokens file), edge-3 another agent."""
    import httpx
    from fastapi.testclient import TestClient

    from conduit.bot.fleet import fleet_hosts
    from conduit.serve.app import create_app
    from conduit.serve.fleet import FleetFiles
    from tests.unit.test_bot import Rig
    from tests.unit.test_serve import Setup

    cluster, url, tokens = remote
    local, third = Setup(tmp_path / "edge-1"), Setup(tmp_path / "edge-3")
    (tmp_path / "fleet.yaml").write_text(FLEET.format(remote=url))
    tokens_file = tmp_path / "fleet-tokens.yaml"
    tokens_file.write_text(f"edge-2: {{viewer: {tokens['ann']}, operator: {tokens['olu']}, agent: '{url}'}}\n"
                           f"edge-3: {{operator: {third.tokens['olu']}, agent: 'https://edge-3.example.net:8443'}}\n")  # fmt: skip
    tokens_file.chmod(0o600)
    clients = {url: httpx.Client(base_url=url), "https://edge-3.example.net:8443": TestClient(create_app(third.agent))}
    hosts = fleet_hosts(FleetFiles(tmp_path / "fleet.yaml", tokens_file, host="edge-1"), local.agent, connect=clients.__getitem__)
    rig = Rig(telegram_stub, [local, third], hosts)
    wait_for(lambda: _remote_nodes(hosts[1]), timeout=60, interval=0.5, message="edge-2's agent observed its nodes")
    yield rig
    rig.api.close()
    clients[url].close()


def _remote_nodes(host) -> list | None:
    from conduit.bot.hosts import Unavailable

    try:
        return host.status()["containers"] or None
    except Unavailable:
        return None


def on_edge_2(rig, stub: TelegramStub, text: str, chat: int = CHAT, chat_type: str = "private") -> str:
    """`text` said, edge-2 picked, yes pressed; what the bot answered in the end."""
    edits = len(stub.calls("editMessageText"))
    stub.say(chat, OPERATOR, text, chat_type=chat_type)
    rig.turn()
    ask = stub.calls("sendMessage")[-1]
    stub.press(chat, OPERATOR, ask["reply_markup"]["inline_keyboard"][0][1]["callback_data"], ask.get("message_id", 100), chat_type)
    rig.turn()
    confirm = stub.calls("editMessageText")[-1]
    assert confirm["text"].endswith(" on edge-2?"), confirm
    stub.press(chat, OPERATOR, confirm["reply_markup"]["inline_keyboard"][0][0]["callback_data"], 100, chat_type)
    rig.turn()
    (answer,) = stub.calls("editMessageText")[edits + 1:]
    return answer["text"]


def test_the_bot_stops_starts_reads_updates_and_claims_on_a_remote_host_through_its_agent(fleet_bot, remote, telegram_stub):
    cluster, _, _ = remote
    stub, second = telegram_stub, f"{cluster.prefix}-2"

    assert on_edge_2(fleet_bot, stub, "/stop_2") == f"edge-2: {second} stopped"
    assert cluster.names()[second] == "exited"
    (row,) = audited(cluster, "api.stop")
    assert row["user"] == "olu" and row["detail"]["node"] == second and row["detail"]["reason"] == f"from Telegram by u{OPERATOR}"
    applied = cluster.apply()  # an apply (the CLI's, as the watcher's) keeps the node stopped: it is held so
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert cluster.names() == {f"{cluster.prefix}-1": "running", second: "exited"}

    assert on_edge_2(fleet_bot, stub, "/start_2") == f"edge-2: {second} started"
    assert cluster.names()[second] == "running" and len(audited(cluster, "api.start")) == 1
    applied = cluster.apply()
    assert applied.returncode == 0 and cluster.names()[second] == "running", applied.stdout + applied.stderr

    stub.say(CHAT, OPERATOR, "/logs_1")
    fleet_bot.turn()
    buttons = stub.calls("sendMessage")[-1]["reply_markup"]["inline_keyboard"][0]
    stub.press(CHAT, OPERATOR, buttons[1]["callback_data"], 100)
    fleet_bot.turn()
    shown = stub.calls("editMessageText")[-1]["text"]
    assert shown.startswith(f"edge-2: {cluster.prefix}-1\n") and "Starting Psiphon Conduit" in shown, shown

    said = on_edge_2(fleet_bot, stub, "/update")
    assert said.startswith("edge-2: update: no-op"), said  # the registry asked: the tag means what the nodes run
    assert [r["detail"]["status"] for r in audited(cluster, "api.update")] == ["no-op"]

    sent = len(stub.calls("sendMessage"))
    stub.say(GROUP, OPERATOR, "/qr_1", chat_type="supergroup")
    fleet_bot.turn()
    assert stub.calls("sendPhoto") == [] and len(stub.calls("sendMessage")) == sent + 1
    assert on_edge_2(fleet_bot, stub, "/qr_1") == f"edge-2: claim code of {cluster.prefix}-1 sent"
    (photo,) = stub.calls("sendPhoto")
    png = cluster.tmp / "claim.png"
    shown = cluster.run("claim", str(cluster.spec), "1", "--png", str(png), "--yes")
    assert shown.returncode == 0, shown.stderr
    assert photo["photo"] == png.read_bytes() and int(photo["chat_id"]) == CHAT  # the very code `conduit claim` shows there
    assert [r["user"] for r in audited(cluster, "api.claim")] == ["olu"]
