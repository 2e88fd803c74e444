"""The bot against a stand-in of the Bot API: commands answered, host buttons, confirmation,
who is ignored and audited, and one poller per token."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from conduit.bot.api import BotApi, Interrupted
from conduit.bot.fleet import fleet_hosts
from conduit.bot.commands import Dispatcher
from conduit.bot.hosts import LocalHost, RemoteHost, Unavailable
from conduit.bot.poller import Poller
from conduit.serve.app import create_app
from conduit.serve.fleet import FleetFiles
from conduit.spec.policy import TelegramPolicy
from tests.telegram_stub import TelegramStub
from tests.unit.test_serve import Setup

TOKEN = "123456:AAHfakeTokenForTestsOnly_0123456789"
OPERATOR, VIEWER, STRANGER = 11, 12, 66
CHAT, GROUP, OTHER_CHAT = 11, -100, 77
POLICY = TelegramPolicy(chats=[CHAT, GROUP], operators=[OPERATOR], viewers=[VIEWER])


@pytest.fixture
def stub():
    stub = TelegramStub()
    yield stub
    stub.close()


def numbered(setup: Setup) -> Setup:
    """The observation's nodes numbered 1 and 2, as their names say."""
    for i, row in enumerate(setup.fake.data["containers"]):
        row["index"] = i + 1
    setup.observer.refresh()
    return setup


class Rig:
    def __init__(self, stub: TelegramStub, setups: list[Setup], hosts: list | None = None):
        self.stub, self.setups = stub, [numbered(s) for s in setups]
        self.api = BotApi(TOKEN, stub.url, poll_seconds=1)
        local = LocalHost("edge-1", setups[0].agent)
        remotes = [RemoteHost(f"edge-{i + 2}", TestClient(create_app(s.agent)), None, s.tokens["olu"]) for i, s in enumerate(setups[1:])]
        self.dispatcher = Dispatcher(self.api, hosts or [local, *remotes], POLICY, setups[0].agent.audit)
        self.poller = Poller(self.api, self.dispatcher.handle, claim_seconds=0)

    def turn(self) -> None:
        """One poll: what was queued is answered."""
        self.poller.step(timeout=0)

    def audit(self) -> list[dict]:
        return self.setups[0].state.audit.recent()


@pytest.fixture
def one(stub, tmp_path):
    rig = Rig(stub, [Setup(tmp_path)])
    yield rig
    rig.api.close()


@pytest.fixture
def three(stub, tmp_path):
    setups = [Setup(tmp_path / str(i)) for i in range(3)]
    rig = Rig(stub, setups)
    yield rig
    rig.api.close()


def test_each_read_command_is_answered_with_the_hosts_figures(one, stub):
    for command in ("/status", "/peers", "/uptime", "/settings", "/health", "/help", "/containers"):
        stub.say(CHAT, VIEWER, command)
    one.turn()
    texts = [c["text"] for c in stub.calls("sendMessage")]
    assert len(texts) == 7
    assert texts[0].startswith("edge-1: 2/2 running, 2 clients") and "#1 conduit-1: running" in texts[0]
    assert "IR: 2 clients" in texts[1]
    assert "uptime and versions" in texts[2] and "#2 conduit-2" in texts[2]
    assert "/restart_N" in texts[5]


def test_a_writes_outcome_is_one_line_with_its_problems_and_its_warnings_beneath():
    from conduit.bot.hosts import outcome_line

    assert outcome_line("sync", {"status": "no-op"}) == "sync: no-op"  # an agent's answer from before warnings
    blocked = {"status": "blocked", "generation": None, "failure": None, "warnings": [], "problems": ["port 8443 is taken", "no disk"]}
    assert outcome_line("sync", blocked) == "sync: blocked: port 8443 is taken; no disk"
    rolled = {"status": "succeeded", "generation": 7, "failure": None, "warnings": ["the spec file undoes it"], "problems": []}
    assert outcome_line("rollback", rolled) == "rollback: succeeded, generation 7\nwarning: the spec file undoes it"


def test_settings_name_the_generation_the_host_runs_as_status_does(one, stub):
    setup = one.setups[0]
    stub.say(CHAT, VIEWER, "/settings")
    one.turn()
    setup.fake.data["generation"] = {"id": 5, "outcome": "rolled_back", "git_commit": None, "reason": "gate failed", "running": 4}
    setup.observer.refresh()
    stub.say(CHAT, VIEWER, "/settings")
    one.turn()
    first, second = (c["text"].splitlines()[0] for c in stub.calls("sendMessage"))
    assert first == "edge-1: no generation yet"
    assert second == "edge-1: generation 4 running; 5 rolled_back: gate failed"


def test_the_offset_moves_past_each_update_so_none_is_answered_twice(one, stub):
    stub.say(CHAT, VIEWER, "/status")
    first = stub.updates[0]["update_id"]
    one.turn()
    one.turn()
    assert len(stub.calls("sendMessage")) == 1
    assert [c.get("offset") for c in stub.calls("getUpdates")] == [None, first + 1]


def test_an_unauthorised_chat_or_user_gets_nothing_and_is_audited(one, stub):
    stub.say(OTHER_CHAT, OPERATOR, "/status")
    stub.say(CHAT, STRANGER, "/restart_1")
    stub.press(CHAT, STRANGER, "y|anything", 5)
    one.turn()
    assert stub.calls("sendMessage") == [] and stub.calls("answerCallbackQuery") == []
    refused = [r for r in one.audit() if r["event"] == "bot.refused"]
    assert {r["user"] for r in refused} == {f"telegram:{OPERATOR}", f"telegram:{STRANGER}"} and len(refused) == 3


def test_a_restart_asks_for_confirmation_then_restarts_the_node(one, stub):
    stub.say(CHAT, OPERATOR, "/restart_1")
    one.turn()
    (question,) = stub.calls("sendMessage")
    assert question["text"] == "restart node 1 on edge-1?" and one.setups[0].restarted == []
    yes = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    stub.press(CHAT, OPERATOR, yes, 100)
    one.turn()
    assert one.setups[0].restarted == ["conduit-1"]
    (done,) = stub.calls("editMessageText")
    assert done["text"] == "edge-1: conduit-1 restarted" and len(stub.calls("answerCallbackQuery")) == 1
    assert any(r["event"] == "bot.restart" and r["detail"]["status"] == "done" for r in one.audit())


def test_a_viewer_cannot_restart_and_a_cancelled_question_does_nothing(one, stub):
    stub.say(CHAT, VIEWER, "/restart_all")
    stub.say(CHAT, OPERATOR, "/stop_all")
    one.turn()
    refused, question = stub.calls("sendMessage")
    assert refused["text"] == "only an operator may restart"
    cancel = question["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
    stub.press(CHAT, OPERATOR, cancel, 100)
    stub.press(CHAT, OPERATOR, cancel.replace("n|", "y|"), 100)  # the same question, once cancelled, is gone
    one.turn()
    assert [c["text"] for c in stub.calls("editMessageText")] == ["cancelled", "this question has expired or is someone else's; ask again"]
    assert one.setups[0].restarted == []


def test_another_users_confirmation_does_not_run_the_action(one, stub):
    stub.say(CHAT, OPERATOR, "/restart_2")
    one.turn()
    yes = stub.calls("sendMessage")[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    stub.press(CHAT, VIEWER, yes, 100)
    one.turn()
    assert one.setups[0].restarted == []


def test_three_hosts_one_status_one_message_with_three_host_buttons(three, stub):
    three.setups[2].fake.data = three.setups[2].fake.data | {"totals": three.setups[2].fake.data["totals"] | {"connected": 9}}
    three.setups[2].observer.refresh()
    stub.say(CHAT, VIEWER, "/status")
    three.turn()
    (message,) = stub.calls("sendMessage")
    buttons = message["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in buttons[0]] == ["edge-1", "edge-2", "edge-3"] and len(buttons) == 1
    assert "edge-3: 2/2 running, 9 clients" in message["text"]
    stub.press(CHAT, VIEWER, buttons[0][2]["callback_data"], 100)
    three.turn()
    (shown,) = stub.calls("editMessageText")
    assert shown["text"].startswith("edge-3: 2/2 running, 9 clients") and "#2 conduit-2" in shown["text"]


def test_a_restart_on_a_remote_host_runs_through_its_agent(three, stub):
    stub.say(CHAT, OPERATOR, "/restart_2")
    three.turn()
    (ask,) = stub.calls("sendMessage")
    stub.press(CHAT, OPERATOR, ask["reply_markup"]["inline_keyboard"][0][1]["callback_data"], 100)
    three.turn()
    confirm = stub.calls("editMessageText")[0]
    assert confirm["text"] == "restart node 2 on edge-2?"
    stub.press(CHAT, OPERATOR, confirm["reply_markup"]["inline_keyboard"][0][0]["callback_data"], 100)
    three.turn()
    assert three.setups[1].restarted == ["conduit-2"] and three.setups[0].restarted == []
    assert any(r["event"] == "api.restart" and r["user"] == "olu" for r in three.setups[1].state.audit.recent())


def test_a_second_poller_on_the_same_token_refuses_with_one_line(stub, tmp_path):
    setup = Setup(tmp_path)
    first_api, second_api = BotApi(TOKEN, stub.url, poll_seconds=1), BotApi(TOKEN, stub.url, poll_seconds=1)
    first = Poller(first_api, Dispatcher(first_api, [LocalHost("edge-1", setup.agent)], POLICY, setup.agent.audit).handle, claim_seconds=1)
    stop = threading.Event()
    thread = first.start(stop)
    try:
        stub.wait_calls("getUpdates", 2)  # the first holds the token
        second = Poller(second_api, lambda inc: None, claim_seconds=5)
        assert second.claim() is False
        assert second.refused.startswith("error: another process polls this bot token (Telegram answered 409 Conflict);")
        assert first.holding and thread.is_alive()
        stub.say(CHAT, VIEWER, "/status")
        stub.wait_calls("sendMessage")  # the first still answers
    finally:
        stop.set()
        thread.join(timeout=10)
        first_api.close()
        second_api.close()


def test_the_token_never_appears_in_an_error(stub):
    api = BotApi(TOKEN, "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(Exception) as caught:
        api.send(CHAT, "hi")
    assert TOKEN not in str(caught.value) and TOKEN.split(":")[1] not in str(caught.value)
    api.close()


FLEET = """\
apiVersion: conduit.psiphon.ca/v1alpha1
kind: ConduitFleet
rings: {stable: main}
default_ring: stable
hosts:
  - {name: edge-1, agent: "https://edge-1.example.net:8443", spec: edge-1.yaml}
  - {name: edge-2, agent: "https://edge-2.example.net:8443", spec: edge-2.yaml}
  - {name: edge-3, agent: "https://edge-3.example.net:8443", spec: edge-3.yaml}
  - {name: edge-4, spec: edge-4.yaml}
"""


@pytest.fixture
def fleet(stub, tmp_path):
    """The bot's hosts from a fleet file and its tokens file, as `conduit serve --fleet --host edge-1` builds
    them: edge-1 is this agent; edge-2 has a viewer token only, edge-3 both; edge-4 has no agent."""
    setups = [Setup(tmp_path / str(i)) for i in range(3)]
    (tmp_path / "fleet.yaml").write_text(FLEET)
    tokens = tmp_path / "fleet-tokens.yaml"
    tokens.write_text(f"edge-2: {{viewer: {setups[1].tokens['ann']}, agent: 'https://edge-2.example.net:8443'}}\n"
                      f"edge-3: {{viewer: {setups[2].tokens['ann']}, operator: {setups[2].tokens['olu']}, agent: 'https://edge-3.example.net:8443'}}\n")  # fmt: skip
    tokens.chmod(0o600)
    agents = {f"https://edge-{i + 1}.example.net:8443": s.agent for i, s in enumerate(setups)}
    files = FleetFiles(tmp_path / "fleet.yaml", tokens, host="edge-1")
    hosts = fleet_hosts(files, setups[0].agent, connect=lambda url: TestClient(create_app(agents[url])))
    rig = Rig(stub, setups, hosts)
    yield rig
    rig.api.close()


def test_the_fleet_file_gives_the_bot_its_hosts_this_one_local(fleet, stub):
    hosts = fleet.dispatcher.hosts
    assert [(h.name, type(h).__name__) for h in hosts] == [("edge-1", "LocalHost"), ("edge-2", "RemoteHost"), ("edge-3", "RemoteHost")]
    assert hosts[0].agent is fleet.setups[0].agent
    stub.say(CHAT, VIEWER, "/status")
    fleet.turn()
    (message,) = stub.calls("sendMessage")
    assert [b["text"] for b in message["reply_markup"]["inline_keyboard"][0]] == ["edge-1", "edge-2", "edge-3"]
    assert all(f"edge-{i}: 2/2 running" in message["text"] for i in (1, 2, 3))
    with pytest.raises(Unavailable, match="^no operator token for edge-2 in the fleet tokens file"):
        hosts[1].restart("conduit-2", "olu")
    assert fleet.setups[1].restarted == []
    assert hosts[2].restart("conduit-2", "olu") == "conduit-2 restarted" and fleet.setups[2].restarted == ["conduit-2"]
    assert [r["user"] for r in fleet.setups[2].state.audit.recent() if r["event"] == "api.restart"] == ["olu"]


def test_a_nodes_log_is_for_operators_in_the_bot_as_in_the_agent(three, stub):
    stub.say(CHAT, VIEWER, "/logs_1")
    stub.press(CHAT, VIEWER, "v|logs:1|1", 100)  # an operator's host button, pressed by a viewer
    three.turn()
    said = [m["text"] for m in stub.calls("sendMessage")]
    assert said == ["only an operator may read a node's log"] * 2 and stub.calls("editMessageText") == []  # the command and the button alike
    rows = [r for r in three.audit() if r["event"] == "bot.logs"]
    assert [(r["user"], r["detail"]["status"]) for r in rows] == [(f"telegram:{VIEWER}", "refused")] * 2


def test_a_remote_hosts_budget_is_its_own_agents_and_said_so(fleet):
    remote = fleet.dispatcher.hosts[2]
    for act in (lambda: remote.throttle(["conduit-1"], "budget", 0.05, "by the budget", None),
                lambda: remote.unthrottle(["conduit-1"], "budget")):  # fmt: skip
        with pytest.raises(Unavailable, match=r"is the traffic budget's, and edge-3's budget is kept by its own agent, not from here$"):
            act()
    with pytest.raises(Unavailable, match="^no operator token for edge-2 in the fleet tokens file"):
        fleet.dispatcher.hosts[1].logs("conduit-1")  # a log needs the operator's token, even though it is a read
    assert [r["event"] for r in fleet.setups[2].state.audit.recent()] == ["token.create"] * 2 and not (fleet.setups[2].state_dir / "holds.json").exists()


def test_the_duties_send_while_the_poller_waits_in_its_long_poll(stub, tmp_path):
    """The poller spends its life inside a long poll: a report or an alert sent meanwhile, from the
    duties' thread, goes out beside it instead of failing on an event loop already running."""
    setup = Setup(tmp_path)
    api = BotApi(TOKEN, stub.url, poll_seconds=30)
    poller = Poller(api, Dispatcher(api, [LocalHost("edge-1", setup.agent)], POLICY, setup.agent.audit).handle, claim_seconds=0)
    stop = threading.Event()
    thread = poller.start(stop)
    try:
        stub.wait_calls("getUpdates", 2)  # claimed, and now waiting in a 30 s poll
        api.send(CHAT, "daily report")
        assert [c["text"] for c in stub.calls("sendMessage")] == ["daily report"]
    finally:
        stop.set()
        api.interrupt()
        thread.join(timeout=10)
        api.close()


def test_a_stopping_agent_ends_the_long_poll_instead_of_waiting_out_its_timeout(stub, tmp_path):
    setup = Setup(tmp_path)
    api = BotApi(TOKEN, stub.url, poll_seconds=30)
    poller = Poller(api, Dispatcher(api, [LocalHost("edge-1", setup.agent)], POLICY, setup.agent.audit).handle, claim_seconds=0)
    stop = threading.Event()
    thread = poller.start(stop)
    stub.wait_calls("getUpdates", 2)
    stop.set()
    api.interrupt()
    thread.join(timeout=10)  # the poll has 30 s to run: only the interruption ends it within 10
    try:
        assert not thread.is_alive()
        with pytest.raises(Interrupted):  # and a poll asked after it ends at once
            api.updates(None)
    finally:
        api.close()


def test_a_closed_api_has_closed_its_connections_and_refuses_later_calls_in_one_error(stub):
    api = BotApi(TOKEN, stub.url, poll_seconds=1)
    api.send(CHAT, "hi")
    api.close()
    assert all(request._client.is_closed for request in api._requests)
    with pytest.raises(Interrupted):  # a thread that outlived the agent's stop
        api.send(CHAT, "late")


def test_the_reports_count_a_rollback_as_one_and_an_apply_as_an_apply(tmp_path):
    from conduit.bot.history import AgentHistory
    from conduit.state.history import rollback_reason

    setup = Setup(tmp_path)
    history = setup.state.history
    history.finish(history.begin("spec: 1\n", "a" * 64, None, (None, None), "edge-1"), "succeeded")
    history.finish(history.begin("spec: 2\n", "b" * 64, None, (None, None), "edge-1"), "succeeded")
    history.finish(history.begin("spec: 1\n", "a" * 64, None, (None, None), "edge-1"), "succeeded", rollback_reason(1))
    assert [what for _, what in AgentHistory(setup.agent).events(0, 1e12)] == ["apply", "apply", "rollback"]
