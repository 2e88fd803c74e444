"""What `conduit serve` says as it starts."""

from __future__ import annotations

from conduit.cli.serve import AfterFirstApply, startup_lines
from tests.harness import wait_for


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
    def __init__(self):
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_the_bot_and_the_budget_start_once_the_first_apply_writes_the_spec(tmp_path):
    spec, started = tmp_path / "fleet-spec.yaml", []
    waiting = AfterFirstApply("the agent", spec, lambda agent: started.append((agent, Started())) or started[-1][1], look=0.01)
    assert started == [] and waiting.started is None
    spec.write_text("the first apply's spec\n")
    wait_for(lambda: started, timeout=10, message="started once the spec is there")
    ((agent, running),) = started
    assert agent == "the agent"
    waiting.stop()
    assert running.stopped and not waiting.thread.is_alive()


def test_an_agent_stopped_before_any_apply_starts_nothing(tmp_path):
    started = []
    waiting = AfterFirstApply("the agent", tmp_path / "fleet-spec.yaml", started.append, look=0.01)
    waiting.stop()
    assert not waiting.thread.is_alive() and started == [] and waiting.started is None
