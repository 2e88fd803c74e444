"""What `conduit serve` says as it starts."""

from __future__ import annotations

import time

import pytest

from conduit.cli.companion import Companion, NotStarted, asked
from conduit.cli.serve import startup_lines
from conduit.serve.agent import SpecFile
from harness import wait_for
from tests.helpers import SMALL_VPS, dump, minimal


def test_tls_and_an_ipv6_address_make_an_https_url_in_brackets():
    (line,) = startup_lines("::", 8443, True, False, None, True)
    assert line.startswith("conduit agent at https://[::]:8443/ (TLS on): ")


def test_behind_a_proxy_says_so_and_a_state_that_cannot_tell_asks_for_no_token():
    (line,) = startup_lines("0.0.0.0", 8080, False, True, None, None)
    assert line.startswith("conduit agent at http://0.0.0.0:8080/ (TLS off: a TLS proxy on this host fronts it)")
    assert startup_lines("[::1]", 1, False, False, None, False)[1].startswith("no tokens yet")


def test_following_a_repository_before_its_first_apply_says_what_waits_for_it():
    lines = startup_lines("127.0.0.1", 8080, False, False, "https://example.org/ops.git", True, first_apply=True)
    assert lines[-1] == ("nothing applied here yet: the Telegram bot and the budget, if the spec asks for them, "
                         "start once its first apply lands")  # fmt: skip
    assert not any(line.startswith("nothing applied") for line in startup_lines("127.0.0.1", 8080, False, False, "x", True))


class Started:
    def __init__(self, spec):
        self.spec, self.stopped = spec, False

    def stop(self) -> None:
        self.stopped = True


BOT = {"telegram": {"bot_token": {"env": "TELEGRAM_TOKEN"}, "chat_id": {"env": "TELEGRAM_CHAT"}, "bot": {"poll": True}}}


def spec_file(tmp_path):
    """The agent's own SpecFile of tmp_path/cluster.yaml (not there yet), and what writes it."""
    path = tmp_path / "cluster.yaml"
    spec = SpecFile(path, lambda: SMALL_VPS)

    def write(**settings) -> None:
        text = dump(minimal(containers={"count": 1}, **settings))
        path.with_suffix(".new").write_text(text + f"# {time.monotonic_ns()}\n")  # a new stamp even within the clock's tick
        path.with_suffix(".new").replace(path)

    return spec, write


def said(capsys, stream: str = "out") -> str:
    """The next line(s) the companion says on stdout (or stderr)."""
    return wait_for(lambda: getattr(capsys.readouterr(), stream) or None, timeout=10, message=f"a line on std{stream}")


def test_the_bot_and_the_budget_start_once_the_spec_the_agent_follows_first_asks_for_them(tmp_path, capsys):
    spec, write = spec_file(tmp_path)
    started = []
    beside = Companion(spec.latest, lambda latest: started.append(Started(latest)) or started[-1], spec.latest(), look=0.01)
    assert beside.running is None  # a fresh host: no spec yet
    write()
    time.sleep(0.1)
    assert started == []  # the first apply's spec asks for neither
    write(alerts=BOT)
    assert said(capsys) == "the Telegram bot started, as the spec the agent follows now asks\n"
    write(alerts=BOT, budget={"monthly_gb": 100})
    assert said(capsys) == "the spec now asks for the budget too: it starts when the agent restarts\n"
    write(alerts=BOT, budget={"monthly_gb": 200})  # still a budget it does not run: nothing new to say
    write(alerts={"telegram": {**BOT["telegram"], "server_label": "vps-2"}}, budget={"monthly_gb": 200})
    assert said(capsys) == "the spec changed the settings of the Telegram bot: it runs on with those it started with; restart the agent to take them up\n"
    write()
    assert said(capsys) == "the spec no longer asks for the Telegram bot: it runs on as started; restart the agent to stop it\n"
    beside.stop()
    ((running,),) = [started]
    assert running.stopped and not beside.thread.is_alive() and asked(running.spec) == "the Telegram bot"


def test_what_the_spec_asks_at_start_up_starts_before_the_agent_listens_and_a_refusal_stops_it(tmp_path, capsys):
    spec, write = spec_file(tmp_path)
    write(budget={"monthly_gb": 100})

    def refuse(latest):
        raise NotStarted("the policy refuses; fix it")

    with pytest.raises(NotStarted):
        Companion(spec.latest, refuse, spec.latest(), look=0.01)
    beside = Companion(spec.latest, Started, spec.latest(), look=0.01)
    assert asked(beside.running.spec) == "the budget"
    write(budget={"monthly_gb": 200})
    assert said(capsys) == "the spec changed the settings of the budget: it runs on with those it started with; restart the agent to take them up\n"
    beside.stop()
    assert beside.running.stopped


def test_a_spec_that_cannot_be_read_is_said_once_and_the_companion_looks_on(tmp_path, capsys):
    spec, write = spec_file(tmp_path)
    write()
    broken = [True]

    def latest():
        if broken[0]:
            raise OSError("the host's facts cannot be read\nnow")
        return spec.latest()

    started = []
    beside = Companion(latest, lambda later: started.append(Started(later)) or started[-1], spec.latest(), look=0.01)
    assert said(capsys, "err") == "warning: could not look at the spec the agent follows: the host's facts cannot be read now; it keeps looking every 0.01 s\n"
    time.sleep(0.1)
    assert capsys.readouterr().err == ""  # said once, not at every look
    write(alerts=BOT)
    broken[0] = False
    assert said(capsys) == "the Telegram bot started, as the spec the agent follows now asks\n"
    beside.stop()
    assert beside.thread.is_alive() is False and started[0].stopped


def test_a_later_refusal_is_one_line_and_the_agent_serves_on(tmp_path, capsys):
    spec, write = spec_file(tmp_path)
    write()
    tries = []

    def refuse(latest):
        tries.append(latest)
        raise NotStarted("another process polls this bot token; let exactly one agent poll it")

    beside = Companion(spec.latest, refuse, spec.latest(), look=0.01)
    write(alerts=BOT)
    assert said(capsys, "err") == ("error: the Telegram bot did not start: another process polls this bot token; let exactly one agent poll it; "
                                   "the agent serves on without it (tried again at the agent's restart, or when the spec's telegram or budget settings change)\n")  # fmt: skip
    write(alerts=BOT)  # the same settings: not tried again
    time.sleep(0.1)
    beside.stop()
    assert len(tries) == 1 and beside.running is None  # not tried again while the spec asks the same
