"""Tokens for the agent: made once, kept as digests, in two roles; token buckets; where it may listen."""

from __future__ import annotations

from click.testing import CliRunner

from conduit.cli.root import main
from conduit.serve.auth import Limiter, allows, bearer, bind_refusal, digest
from conduit.state.stores import open_state


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
    none = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "list"])
    assert none.stdout == "No tokens; make one with `conduit tokens create NAME --role viewer` (or --role operator).\n"
    made = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "create", "ci", "--role", "operator"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert open_state(tmp_path).tokens.by_digest(digest(token)) == ("ci", "operator")
    again = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "create", "ci", "--role", "viewer"])
    assert again.exit_code == 2
    listed = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "list"])
    assert "ci\toperator" in listed.stdout and token not in listed.stdout
    assert runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "revoke", "ci"]).exit_code == 0
    gone = runner.invoke(main, ["--state-dir", str(tmp_path), "tokens", "revoke", "ci"])
    assert (gone.exit_code, gone.stderr) == (1, "error: no token named ci; `conduit tokens list` names them\n")


def test_an_operator_may_do_what_a_viewer_may():
    assert allows("operator", "viewer") and allows("operator", "operator") and allows("viewer", "viewer")
    assert not allows("viewer", "operator")


def test_a_bucket_allows_its_burst_then_its_rate():
    limiter = Limiter(rate=2, burst=3)
    assert [limiter.take("a", now=0)[0] for _ in range(4)] == [True, True, True, False]
    assert limiter.take("a", now=0) == (False, False)  # the second refusal of a run is not "first"
    assert limiter.take("a", now=0.5)[0] and not limiter.take("a", now=0.5)[0]
    assert limiter.take("b", now=0)[0]  # every key has a bucket of its own


# ------------------------------------------------------------ the door: addresses, headers, bodies

import ipaddress  # noqa: E402

from hypothesis import given, strategies as st  # noqa: E402

from conduit.serve.app import event_id  # noqa: E402
from conduit.serve.auth import parse_proxies  # noqa: E402
from conduit.serve.guard import client_address, declared_length  # noqa: E402

LOOPBACK = parse_proxies("127.0.0.1,::1")


def scope(peer: str, **headers: str) -> dict:
    return {"client": (peer, 5000), "headers": [(k.replace("_", "-").encode(), v.encode("latin-1")) for k, v in headers.items()]}


def test_x_forwarded_for_is_believed_only_from_a_named_proxy():
    assert client_address(scope("127.0.0.1", x_forwarded_for="10.1.2.3"), frozenset()) == "127.0.0.1"
    assert client_address(scope("127.0.0.1", x_forwarded_for="6.6.6.6, 10.1.2.3"), LOOPBACK) == "10.1.2.3"
    assert client_address(scope("::ffff:127.0.0.1", x_forwarded_for="10.1.2.3"), LOOPBACK) == "10.1.2.3"
    assert client_address(scope("192.0.2.7", x_forwarded_for="10.1.2.3"), LOOPBACK) == "192.0.2.7"
    assert client_address(scope("127.0.0.1", x_forwarded_for="not-an-address"), LOOPBACK) is None
    assert client_address(scope("127.0.0.1"), LOOPBACK) == "127.0.0.1"
    assert parse_proxies("[::1], 127.0.0.1") == LOOPBACK


def test_behind_proxy_takes_addresses_and_refuses_others_in_one_line(tmp_path):
    runner = CliRunner()
    unit = runner.invoke(main, ["--state-dir", str(tmp_path), "serve", "examples/cluster.yaml", "--listen", "0.0.0.0", "--behind-proxy", "--git", "--print-unit"])
    assert unit.exit_code == 0, unit.output
    assert "--behind-proxy 127.0.0.1,::1 --git" in unit.stdout
    chosen = runner.invoke(main, ["--state-dir", str(tmp_path), "serve", "examples/cluster.yaml", "--behind-proxy", "10.0.0.2", "--print-unit"])
    assert chosen.exit_code == 0 and "--behind-proxy 10.0.0.2" in chosen.stdout
    bad = runner.invoke(main, ["--state-dir", str(tmp_path), "serve", "examples/cluster.yaml", "--behind-proxy", "nginx"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "'nginx' is not an IP address" in bad.stderr


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


@given(HEADER_TEXT, st.sampled_from(["127.0.0.1", "::1", "192.0.2.7"]))
def test_any_forwarded_header_gives_an_address_or_none(value, peer):
    found = client_address(scope(peer, x_forwarded_for=value), LOOPBACK)
    if peer == "192.0.2.7":
        assert found == peer  # not a proxy: its header is not read
    else:
        assert found is None or ipaddress.ip_address(found)


@given(HEADER_TEXT)
def test_any_last_event_id_is_a_number_or_a_400(value):
    from fastapi import HTTPException

    try:
        number = event_id(value)
    except HTTPException as exc:
        assert exc.status_code == 400
    else:
        assert number >= 0 and value.strip().isascii()


@given(HEADER_TEXT)
def test_any_content_length_is_a_size_or_minus_one(value):
    found = declared_length(scope("127.0.0.1", content_length=value))
    assert found == -1 or found == int(value.strip())
