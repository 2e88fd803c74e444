"""Tokens for the agent: made once, kept as digests, in two roles; token buckets; where it may listen."""

from __future__ import annotations

from click.testing import CliRunner

from conduit.cli.root import main
from conduit.serve.auth import Limiter, allows, bearer, bind_refusal, digest
from conduit.state.store import State


def test_bearer_header():
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer("Bearer ") is None and bearer(None) is None


def test_bind_refusal():
    assert bind_refusal("127.0.0.1", False, False) is None and bind_refusal("::1", False, False) is None
    assert bind_refusal("localhost", False, False) is None
    assert "refusing to listen on 0.0.0.0" in bind_refusal("0.0.0.0", False, False)
    assert bind_refusal("0.0.0.0", True, False) is None and bind_refusal("10.0.0.1", False, True) is None


def test_tokens_cli_prints_once_and_keeps_a_digest(tmp_path):
    runner = CliRunner()
    made = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "create", "ci", "--role", "operator"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert State(tmp_path).token_by_digest(digest(token)) == ("ci", "operator")
    again = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "create", "ci", "--role", "viewer"])
    assert again.exit_code == 2
    listed = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "list"])
    assert "ci\toperator" in listed.stdout and token not in listed.stdout
    assert runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "revoke", "ci"]).exit_code == 0
    assert runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "revoke", "ci"]).exit_code == 1


def test_an_operator_may_do_what_a_viewer_may():
    assert allows("operator", "viewer") and allows("operator", "operator") and allows("viewer", "viewer")
    assert not allows("viewer", "operator")


def test_a_bucket_allows_its_burst_then_its_rate():
    limiter = Limiter(rate=2, burst=3)
    assert [limiter.take("a", now=0)[0] for _ in range(4)] == [True, True, True, False]
    assert limiter.take("a", now=0) == (False, False)  # the second refusal of a run is not "first"
    assert limiter.take("a", now=0.5)[0] and not limiter.take("a", now=0.5)[0]
    assert limiter.take("b", now=0)[0]  # every key has a bucket of its own
