"""conduit.drivers.registry against a stand-in registry on 127.0.0.1: one page and several,
the anonymous Bearer token flow, the refusals, each a one-line TagsError."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from conduit.drivers import registry as driver
from conduit.drivers.registry import TagsError, list_tags
from conduit.facts.registry import Repository

TAGS = ["2.0.0", "latest", "2.0.1", "3.0.0", "2.1.0-rc.1"]


class Stub:
    """A registry that answers from `routes` ({path: callable(handler) -> (status, headers, body)})."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests: list[tuple[str, dict]] = []
        self.routes: dict = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # the body would wait for the client's delayed ACK
            def do_GET(self):  # noqa: N802
                stub.requests.append((self.path, dict(self.headers)))
                route = stub.routes.get(urlsplit(self.path).path)
                status, headers, body = route(self) if route else (404, {}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def page(tags, link=None):
    headers = {"Content-Type": "application/json"} | ({"Link": link} if link else {})
    return 200, headers, json.dumps({"name": "conduit/cli", "tags": tags}).encode()


def test_one_page_of_tags_over_plain_http_on_loopback(stub):
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: page(TAGS)
    assert list_tags(f"{stub.address}/conduit/cli:2.0.0") == TAGS
    assert stub.requests[0][0] == "/v2/conduit/cli/tags/list"


def test_link_pages_are_followed(stub):
    def tags_list(h):
        last = parse_qs(urlsplit(h.path).query).get("last", [None])[0]
        if last is None:
            return page(TAGS[:2], '</v2/conduit/cli/tags/list?last=latest&n=2>; rel="next"')
        if last == "latest":
            return page(TAGS[2:4], f'<http://{stub.address}/v2/conduit/cli/tags/list?last=3.0.0&n=2>; rel="next"')
        return page(TAGS[4:])

    stub.routes["/v2/conduit/cli/tags/list"] = tags_list
    assert list_tags(f"{stub.address}/conduit/cli") == TAGS
    assert len(stub.requests) == 3


def test_a_next_page_on_another_host_is_refused(stub):
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: page(TAGS, '<http://127.0.0.2:1/v2/conduit/cli/tags/list?last=x>; rel="next"')
    with pytest.raises(TagsError, match="the next page of tags is on another host"):
        list_tags(f"{stub.address}/conduit/cli")


def test_the_anonymous_bearer_token_flow(stub):
    def tags_list(h):
        if h.headers.get("Authorization") != "Bearer anon-token":
            challenge = f'Bearer realm="http://{stub.address}/token",service="stub",scope="repository:conduit/cli:pull"'
            return 401, {"WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        last = parse_qs(urlsplit(h.path).query).get("last")
        return page(TAGS[3:]) if last else page(TAGS[:3], '</v2/conduit/cli/tags/list?last=2.0.1>; rel="next"')

    stub.routes["/v2/conduit/cli/tags/list"] = tags_list
    stub.routes["/token"] = lambda h: (200, {}, b'{"token": "anon-token", "expires_in": 60}')
    assert list_tags(f"{stub.address}/conduit/cli:2.0.0") == TAGS
    paths = [p for p, _ in stub.requests]
    assert paths[0] == "/v2/conduit/cli/tags/list" and urlsplit(paths[1]).path == "/token"
    assert parse_qs(urlsplit(paths[1]).query) == {"service": ["stub"], "scope": ["repository:conduit/cli:pull"]}
    assert "Authorization" not in stub.requests[1][1]  # anonymous: no credentials to the token service
    assert len(paths) == 4  # the token is asked once, for both pages


def test_a_token_service_that_refuses_is_one_line(stub):
    challenge = f'Bearer realm="http://{stub.address}/token",service="stub"'
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: (401, {"WWW-Authenticate": challenge}, b"")
    stub.routes["/token"] = lambda h: (403, {}, b"{}")
    with pytest.raises(TagsError) as info:
        list_tags(f"{stub.address}/conduit/cli")
    assert str(info.value) == f"{stub.address}/conduit/cli: no anonymous token from http://{stub.address}/token: HTTP 403; conduit asks registries anonymously"


def test_a_token_that_is_not_enough_is_a_refusal(stub):
    challenge = f'Bearer realm="http://{stub.address}/token"'
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: (401, {"WWW-Authenticate": challenge}, b"")
    stub.routes["/token"] = lambda h: (200, {}, b'{"token": "t"}')
    with pytest.raises(TagsError, match=r"refused to list tags anonymously \(HTTP 401\)"):
        list_tags(f"{stub.address}/conduit/cli")


def test_a_token_realm_over_plain_http_elsewhere_is_refused(stub):
    challenge = 'Bearer realm="http://auth.example/token",service="x"'
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: (401, {"WWW-Authenticate": challenge}, b"")
    with pytest.raises(TagsError, match="token service http://auth.example/token is not https"):
        list_tags(f"{stub.address}/conduit/cli")


def test_a_registry_that_wants_credentials(stub):
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: (401, {"WWW-Authenticate": 'Basic realm="Registry Realm"'}, b"")
    with pytest.raises(TagsError) as info:
        list_tags(f"{stub.address}/conduit/cli")
    assert str(info.value) == f"{stub.address}/conduit/cli: the registry wants credentials; conduit asks registries anonymously"


def test_an_unknown_repository(stub):
    with pytest.raises(TagsError) as info:
        list_tags(f"{stub.address}/conduit/none:2.0.0")
    assert str(info.value) == f"{stub.address}/conduit/none: no such repository in the registry (HTTP 404)"


def test_an_answer_that_is_no_tag_list(stub):
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: (200, {}, b"<html>hello</html>")
    with pytest.raises(TagsError, match="the tag list is not JSON"):
        list_tags(f"{stub.address}/conduit/cli")


def test_a_registry_that_does_not_answer_in_time(stub):
    def slow(h):
        time.sleep(1.5)
        return page(TAGS)

    stub.routes["/v2/conduit/cli/tags/list"] = slow
    with pytest.raises(TagsError) as info:
        list_tags(f"{stub.address}/conduit/cli", timeout=0.3)
    assert "cannot reach 127.0.0.1" in str(info.value) and "\n" not in str(info.value)


def test_nothing_listening_and_a_name_that_does_not_resolve():
    with pytest.raises(TagsError, match=r"127.0.0.1:1/conduit/cli: cannot reach 127.0.0.1:1: "):
        list_tags("127.0.0.1:1/conduit/cli")
    with pytest.raises(TagsError, match=r"registry.invalid/conduit/cli: cannot reach registry.invalid: "):
        list_tags("registry.invalid/conduit/cli:2.0.0", timeout=3)


def test_a_loopback_registry_is_never_asked_through_a_proxy(stub, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    stub.routes["/v2/conduit/cli/tags/list"] = lambda h: page(TAGS)
    assert list_tags(f"{stub.address}/conduit/cli") == TAGS


# ------------------------------------------------------------------ https and the system's CA bundle


@pytest.fixture
def tls_stub(tmp_path, monkeypatch):
    """A stand-in registry over TLS with a certificate of its own (for 127.0.0.1), asked as if it
    were not on loopback (https, verified)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = Stub(tls=context)
    server.routes["/v2/conduit/cli/tags/list"] = lambda h: page(TAGS)
    monkeypatch.setattr(Repository, "insecure", property(lambda self: False))
    yield server, cert
    server.close()


def test_https_refuses_a_certificate_the_system_does_not_trust(tls_stub):
    server, _ = tls_stub
    with pytest.raises(TagsError) as info:
        list_tags(f"{server.address}/conduit/cli")
    assert "its TLS certificate is not trusted" in str(info.value) and "add its CA to the system's CA certificates" in str(info.value)


def test_https_trusts_a_ca_added_to_the_system_bundle(tls_stub, monkeypatch):
    server, cert = tls_stub
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # where OpenSSL reads the system's bundle from
    assert list_tags(f"{server.address}/conduit/cli") == TAGS
    assert driver.text.repository(f"{server.address}/conduit/cli").base.startswith("https://")
