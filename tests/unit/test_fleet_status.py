"""conduit fleet status's pure parts: an agent's answer made into a row (whatever it sent), the
tokens file's checks, and the http_sd target list."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.errors import PolicyError
from conduit.cli.fleet import status_table
from conduit.features.fleetstatus import HostTokens, Row, _row_from, cells, parse_tokens, read_host_tokens, read_tokens, sd_targets
from conduit.spec.fleet import load_fleet_text

FLEET = """\
apiVersion: conduit.psiphon.ca/v1alpha1
kind: ConduitFleet
rings: {canary: main, stable: stable}
default_ring: stable
hosts:
  - {name: fra-1, spec: a.yaml, agent: "https://fra-1.example.net:8443", labels: {provider: hetzner, region: eu, ring: canary}}
  - {name: ams-1, spec: a.yaml, agent: "http://127.0.0.1:18443"}
  - {name: waw-1, spec: a.yaml}
"""

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                           max_leaves=20)  # fmt: skip
summaries = st.fixed_dictionaries({}, optional={
    "totals": json_values | st.fixed_dictionaries({}, optional={k: json_values for k in ("containers", "up", "connected", "bytes_up", "bytes_down")}),
    "watch": json_values | st.fixed_dictionaries({}, optional={k: json_values for k in ("applied_commit", "attempted_commit", "last_error", "last_result")}),
    "generation": json_values, "drift": json_values, "alerts": json_values,
})  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, summaries))
def test_any_answer_makes_a_row_that_renders(answer):
    row = _row_from(Row("h", "stable", "http://127.0.0.1:1"), answer)
    assert len(cells(row)) == 11 and all(isinstance(c, str) for c in cells(row))
    assert row.ready == (row.why == "")
    status_table([row])


def test_a_host_behind_its_commit_is_not_ready_and_says_why():
    answer = {"totals": {"containers": 2, "up": 2, "connected": 7, "bytes_up": 10, "bytes_down": 5}, "drift": [], "alerts": [],
              "watch": {"applied_commit": "a" * 40, "attempted_commit": "b" * 40, "last_result": "rolled_back", "last_error": "gate failed"}}
    row = _row_from(Row("h", "stable", None), answer)
    assert not row.ready and row.why == f"commit {'b' * 12} not applied (rolled_back): gate failed"
    assert (row.nodes_up, row.nodes, row.clients, row.bytes) == (2, 2, 7, 15)
    answer["watch"]["attempted_commit"] = "a" * 40
    assert _row_from(Row("h", "stable", None), answer).ready


def test_tokens_must_be_private(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text("fra-1: abc\n")
    path.chmod(0o644)
    with pytest.raises(PolicyError, match="chmod 600"):
        read_tokens(path)
    path.chmod(0o600)
    assert read_tokens(path) == {"fra-1": HostTokens("abc")}
    path.write_text("- a list\n")
    with pytest.raises(PolicyError, match="mapping of host name to its tokens and agent"):
        read_tokens(path)
    with pytest.raises(PolicyError, match="no such file"):
        read_tokens(tmp_path / "absent.yaml")
    assert os.stat(path).st_mode & 0o777 == 0o600


PINNED = {"fra-1": HostTokens(agent="https://fra-1.example.net:8443"), "ams-1": HostTokens("v", agent="http://127.0.0.1:18443/")}


def test_the_targets_name_every_agent_with_its_labels():
    targets = sd_targets(load_fleet_text(FLEET, "fleet.yaml"), PINNED)
    assert targets == [
        {"targets": ["fra-1.example.net:8443"], "labels": {"host": "fra-1", "ring": "canary", "__scheme__": "https", "provider": "hetzner", "region": "eu"}},
        {"targets": ["127.0.0.1:18443"], "labels": {"host": "ams-1", "ring": "stable", "__scheme__": "http"}},
    ]


def test_the_targets_leave_out_an_agent_the_tokens_file_does_not_name():
    """Prometheus sends a host's token to the address listed for it: a commit that points fra-1
    elsewhere, or a host the tokens file names no agent for, is not listed."""
    moved = load_fleet_text(FLEET.replace("https://fra-1.example.net:8443", "https://collector.example.org:443"), "fleet.yaml")
    assert [t["labels"]["host"] for t in sd_targets(moved, PINNED)] == ["ams-1"]
    assert sd_targets(load_fleet_text(FLEET, "fleet.yaml"), {"fra-1": HostTokens("v")}) == []


def test_tokens_per_host_a_viewer_string_or_both_roles(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text("fra-1: abc\nams-1: {viewer: v, operator: o, agent: 'https://ams-1:8443'}\nwaw-1: {operator: o2}\nkrk-1: {agent: 'https://krk-1:8443'}\n")
    path.chmod(0o600)
    assert read_host_tokens(path) == {"fra-1": HostTokens("abc"), "ams-1": HostTokens("v", "o", "https://ams-1:8443"), "waw-1": HostTokens(None, "o2"),
                                      "krk-1": HostTokens(agent="https://krk-1:8443")}  # fmt: skip
    assert {h: t.reader for h, t in read_tokens(path).items()} == {"fra-1": "abc", "ams-1": "v", "waw-1": "o2"}  # fleet status reads with any token
    path.write_text("fra-1: {admin: x}\n")
    with pytest.raises(PolicyError, match=r"`fra-1: \{viewer: TOKEN, operator: TOKEN, agent: https://fra-1.example.net:8443\}`"):
        read_host_tokens(path)


_yaml_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3))


@given(_yaml_values)
@settings(max_examples=300)
def test_any_tokens_file_is_read_as_tokens_or_refused(data):
    tokens = parse_tokens(data)
    if tokens is None:
        return
    assert set(tokens) == set(data)
    for host, found in tokens.items():
        said = data[host]
        assert found == (HostTokens(viewer=said) if isinstance(said, str) else HostTokens(said.get("viewer"), said.get("operator"), said.get("agent")))


# ---------------------------------------------------------------- where a token may go

import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from conduit.features.fleetstatus import fleet_status  # noqa: E402


class Listener:
    """Whoever a fleet file's commit names as fra-1's agent: it records every Authorization it is sent,
    and answers a summary, or a redirect to `redirect` when one is given."""

    def __init__(self, redirect: str | None = None):
        self.seen: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # the body would wait for the client's delayed ACK
            def do_GET(self):  # noqa: N802 - the stdlib's name
                listener.seen.append(self.headers.get("Authorization") or "")
                body = b"" if redirect else b'{"totals": {}}'
                self.send_response(302 if redirect else 200)
                if redirect:
                    self.send_header("Location", redirect + "/api/v1/summary")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def fra1_row(tmp_path, agent: str, entry: str):
    """fleet status's row for fra-1 when the fleet file names `agent` as its agent and the tokens file says `entry`."""
    fleet = load_fleet_text(FLEET.replace("https://fra-1.example.net:8443", agent), "fleet.yaml")
    path = tmp_path / "tokens.yaml"
    path.write_text(f"fra-1: {entry}\n")
    path.chmod(0o600)
    (row, *_) = fleet_status(fleet, read_tokens(path), timeout=5)
    return row


@pytest.mark.parametrize("entry", ["secret-token", "{viewer: secret-token, agent: 'https://fra-1.example.net:8443'}"])
def test_a_token_goes_only_to_the_agent_the_tokens_file_names(tmp_path, entry):
    """The fleet file lives in a repository others push to; the tokens file is root's. A commit that
    points fra-1's agent elsewhere gets no token sent there: the root-only file says where it goes."""
    listener = Listener()
    try:
        row = fra1_row(tmp_path, listener.address, entry)
    finally:
        listener.close()
    assert not any("secret-token" in said for said in listener.seen)
    assert not row.answered and f"{listener.address}" in row.why and "fleet tokens file" in row.why, row.why


def test_a_token_goes_to_the_agent_both_files_name(tmp_path):
    listener = Listener()
    try:
        row = fra1_row(tmp_path, listener.address, f"{{viewer: secret-token, agent: '{listener.address}/'}}")
    finally:
        listener.close()
    assert listener.seen == ["Bearer secret-token"] and row.answered


def test_a_token_is_not_sent_on_where_the_named_agent_redirects(tmp_path):
    """Something in front of the agent (a proxy) answers 302 to another address: that answer is the
    agent's, and its token is not sent on."""
    elsewhere = Listener()
    named = Listener(redirect=elsewhere.address)
    try:
        row = fra1_row(tmp_path, named.address, f"{{viewer: secret-token, agent: '{named.address}'}}")
    finally:
        named.close()
        elsewhere.close()
    assert named.seen == ["Bearer secret-token"] and elsewhere.seen == []
    assert not row.answered and row.why == "the agent answered 302", row.why
