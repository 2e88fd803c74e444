"""Docker's reads over plain HTTP, against a small real HTTP server on a Unix socket (and one on TCP)."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduit.drivers import dockerapi, node
from conduit.drivers.docker import CountingClient, _has_file, answers, call, docker_answers, docker_down, inspect_image
from conduit.drivers.dockerapi import (API_VERSION, NotFound, Unframed, archive_status, container_log, endpoint, failures, first_bytes,
                                       json_stream, last_bytes, refusals)
from conduit.errors import DockerError

EVENTS = [
    {"Type": "container", "Action": "start", "Actor": {"ID": "c1", "Attributes": {}}, "timeNano": 1},
    {"Type": "container", "Action": "die", "Actor": {"ID": "c1", "Attributes": {"exitCode": "3"}}, "timeNano": 2},
]
OUT, ERR = b"2026-01-02T03:04:05.000000001Z one\n", b"2026-01-02T03:04:06.000000001Z two\n"  # a line each, --timestamps
LOG = OUT + ERR


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


class Daemon(BaseHTTPRequestHandler):
    """What dockerd answers, for the few paths these tests ask; every request is recorded."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict]] = []

    def log_message(self, *args) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def send(self, status: int, body: bytes, content_type: str = "application/json", chunked: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if chunked:  # as dockerd streams /events and /logs
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[: len(body) // 2], body[len(body) // 2 :]):
                if part:
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # no body: the client may already have closed
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.seen.append((url.path, query))
        prefix = f"/v{API_VERSION}"
        path = url.path.removeprefix(prefix) if url.path.startswith(prefix) else "unversioned"
        answers = {
            "/_ping": (200, b"OK", "text/plain", False),
            "/containers/json": (200, json.dumps([{"Id": "c1", "Names": ["/n-1"]}]).encode(), "application/json", False),
            "/containers/n-1/json": (200, json.dumps({"Id": "c1", "Config": {"Tty": False}}).encode(), "application/json", False),
            "/containers/n-1/logs": (200, frame(1, OUT) + frame(2, ERR), "application/vnd.docker.raw-stream", True),
            "/images/ghcr.io/psiphon-inc/conduit/cli:2.0/json": (200, b'{"Id": "sha256:abc"}', "application/json", False),
            "/volumes": (200, b'{"Volumes": [{"Name": "v1"}], "Warnings": null}', "application/json", False),
            "/events": (200, b"".join(json.dumps(e).encode() + b"\n" for e in EVENTS), "application/json", True),
            "/version": (500, b'{"message": "daemon is busy"}', "application/json", False),
        }
        if path in answers:
            self.send(*answers[path])
        elif path.startswith("/images/"):
            self.send(404, b'{"message": "No such image: x"}')
        else:
            self.send(404, json.dumps({"message": f"No such container: {path}"}).encode())

    def _write(self) -> None:
        """The writes: recorded with their JSON body; a create answers an Id, a start of `busy` a 500."""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        size = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(size)) if size else None
        path = url.path.removeprefix(f"/v{API_VERSION}")
        self.seen.append((f"{self.command} {path}", query, body))
        if path in ("/containers/create", "/volumes/create"):
            self.send(201, json.dumps({"Id": "c9", "Name": (body or {}).get("Name")}).encode())
        elif path == "/containers/busy/start":
            self.send(500, b'{"message": "task busy: already exists"}')
        elif path == "/containers/c9/wait":
            self.send(200, b'{"StatusCode": 3}')
        elif path == "/containers/slow/archive":  # a daemon that answers late (a stalled ssh:// link)
            time.sleep(1)
            self.send(200, b"")
        elif path.endswith("/archive"):
            self.send(200 if query["path"] == "/bin/there" else 404, b"")
        else:
            self.send_response(204)
            self.end_headers()

    do_POST = do_DELETE = do_HEAD = _write  # noqa: N815 - http.server's names


class UnixDaemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("unix", 0)  # http.server wants a (host, port) client address


@pytest.fixture
def daemon(tmp_path):
    Daemon.seen = []
    path = tmp_path / "docker.sock"
    server = UnixDaemon(str(path), Daemon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"unix://{path}"
    server.shutdown()
    server.server_close()


def test_reads_carry_the_sdks_names_and_answers_and_each_request_is_counted(daemon):
    client = CountingClient(daemon)
    assert client.api.ping() is True
    assert client.api.containers(all=True, filters={"label": ["a=b"], "name": "n-1", "dangling": True}) == [{"Id": "c1", "Names": ["/n-1"]}]
    assert client.api.volumes()["Volumes"] == [{"Name": "v1"}]
    assert inspect_image(client, "ghcr.io/psiphon-inc/conduit/cli:2.0") == {"Id": "sha256:abc"}
    assert client.calls == 4
    path, query = Daemon.seen[1]
    assert path == f"/v{API_VERSION}/containers/json"
    # Docker wants each filter a list of strings (a bare string is a 400), as the SDK writes them
    assert query["all"] == "1" and json.loads(query["filters"]) == {"label": ["a=b"], "name": ["n-1"], "dangling": ["true"]}
    assert client._sdk is None  # no write: the SDK was never built


def test_a_missing_image_is_none_and_a_missing_container_is_not_found(daemon):
    client = CountingClient(daemon)
    assert inspect_image(client, "nowhere:1") is None
    with pytest.raises(NotFound) as caught:
        with answers(client):
            client.api.inspect_container("gone")
    assert caught.value.status_code == 404 and caught.value.explanation == "No such container: /containers/gone/json"
    assert str(caught.value).startswith(f"404 Client Error for http+docker://localhost/v{API_VERSION}/containers/gone/json: Not Found (")


def test_a_refusal_through_call_is_one_line_naming_dockers_message(daemon):
    client = CountingClient(daemon)
    with pytest.raises(DockerError) as caught:
        call(client, client.api.version)
    assert str(caught.value) == (f"the Docker daemon at {daemon} failed: 500 Server Error for "
                                 f'http+docker://localhost/v{API_VERSION}/version: Internal Server Error ("daemon is busy")')  # fmt: skip


def test_events_are_read_as_json_lines_with_since_until_and_filters(daemon):
    client = CountingClient(daemon)
    assert client.api.events(since="1.000000000", until="2.000000000", filters={"event": ["die"]}) == EVENTS
    _, query = Daemon.seen[-1]
    assert query["since"] == "1.000000000" and query["until"] == "2.000000000" and json.loads(query["filters"]) == {"event": ["die"]}


def test_a_log_is_unframed_in_one_request_whichever_client_asks(daemon):
    client = CountingClient(daemon)
    assert container_log(client.api, "n-1", tty=False, limit=1000, timestamps=True, since=5) == LOG
    assert client.calls == 1 and Daemon.seen[-1][1]["since"] == "5" and Daemon.seen[-1][1]["timestamps"] == "1"
    # the node's logs: the caller's inspect answer said whether it has a TTY, so none is asked again
    assert node.recent_log(client, "n-1", tty=False, tail=20) == LOG.decode()
    assert client.calls == 2 and Daemon.seen[-1][1]["tail"] == "20"
    assert node.run_log(client, "n-1", "", tty=False) == ["one", "two"]
    assert client.calls == 3
    # a host only the SDK speaks to (ssh://, https://): its client, and still no inspect
    assert container_log(client.sdk(), "n-1", tty=False, limit=1000, timestamps=True, since=5) == LOG
    assert client.calls == 4 and Daemon.seen[-1][1]["since"] == "5"
    assert [path for path, *_ in Daemon.seen] == [f"/v{API_VERSION}/containers/n-1/logs"] * 4
    # a caller that knows only the name (the agent's log of a node): the inspect for its TTY first, as the SDK asks
    assert container_log(client.api, "n-1", tty=None, limit=1000) == LOG
    assert client.calls == 6 and Daemon.seen[-2][0] == f"/v{API_VERSION}/containers/n-1/json"
    # within a cap: the last whole lines, or the first bytes
    assert container_log(client.api, "n-1", tty=False, limit=len(ERR) + 3) == ERR
    assert container_log(client.sdk(), "n-1", tty=False, limit=len(ERR) + 3) == ERR
    assert container_log(client.sdk(), "n-1", tty=False, limit=5, keep="first") == OUT[:5]


def test_whether_a_file_is_in_a_container_is_a_plain_head_per_directory(daemon):
    client = CountingClient(daemon)
    assert _has_file(client, "c1", ["/usr/local/bin", "/bin", "/usr/bin"], "there") is True
    assert [seen[1]["path"] for seen in Daemon.seen] == ["/usr/local/bin/there", "/bin/there"]
    assert _has_file(client, "c1", ["/usr/local/bin", "/usr/bin"], "there") is False
    assert client.calls == 4 and client._sdk is None  # a read: the SDK was never built


def test_a_host_only_the_sdk_speaks_to_is_asked_the_same_head(daemon):
    client = CountingClient(daemon)
    sdk = client.sdk()
    assert (archive_status(sdk, "c9", "/bin/there"), archive_status(sdk, "c9", "/bin/gone")) == (200, 404)
    assert client.calls == 2 and [seen[0] for seen in Daemon.seen] == ["HEAD /containers/c9/archive"] * 2


def test_a_head_answered_late_fails_at_the_clients_timeout_from_either_client(daemon):
    client = CountingClient(daemon)
    client.api.timeout = client.sdk().timeout = 0.2
    for asking in (client.api, client.sdk()):
        with pytest.raises(failures()):
            archive_status(asking, "slow", "/bin/there")
    assert _has_file(client, "slow", ["/bin"], "there") is None  # not known, rather than waited for


def test_a_socket_that_is_absent_is_the_docker_down_line(tmp_path):
    host = f"unix://{tmp_path}/docker.sock"
    client = CountingClient(host)
    assert docker_answers(client) is False
    with pytest.raises(DockerError) as caught:
        call(client, client.api.containers, all=True)
    assert str(caught.value) == docker_down(host)


def test_a_tcp_host_is_plain_http():
    class Handler(Daemon):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = CountingClient(f"tcp://127.0.0.1:{server.server_address[1]}")
        assert client.api.containers(all=True)[0]["Id"] == "c1" and client.calls == 1
    finally:
        server.shutdown()
        server.server_close()


def test_only_what_is_spoken_here_is_read_here():
    assert endpoint("unix:///var/run/docker.sock") == ("unix", "/var/run/docker.sock", 0)
    assert endpoint("tcp://10.0.0.2:2375") == ("tcp", "10.0.0.2", 2375)
    assert endpoint("http://localhost:2375/") == ("tcp", "localhost", 2375)
    for sdk_only in ("ssh://root@host", "https://host:2376", "tcp://host", "npipe:////./pipe/docker_engine", "unix://relative", "tcp://h:x"):
        assert endpoint(sdk_only) is None, sdk_only


def test_the_writes_that_make_nodes_are_plain_http_with_the_sdks_names_and_answers(daemon):
    client = CountingClient(daemon)
    api = client.api
    assert api.create_volume(name="v-1", labels={"a": "b"})["Name"] == "v-1"
    assert api.create_container_from_config({"Image": "i:1", "Cmd": ["start"]}, "n-1") == {"Id": "c9", "Name": None}
    api.start("c9")
    api.stop("c9", timeout=3)
    api.rename("c9", "n-1.previous")
    assert api.wait("c9", timeout=5) == {"StatusCode": 3}
    api.remove_container("c9", force=True)
    api.remove_volume("v-1")
    assert (api.archive_status("c9", "/bin/there"), api.archive_status("c9", "/bin/gone")) == (200, 404)
    assert Daemon.seen == [
        ("POST /volumes/create", {}, {"Name": "v-1", "Driver": None, "DriverOpts": None, "Labels": {"a": "b"}}),
        ("POST /containers/create", {"name": "n-1"}, {"Image": "i:1", "Cmd": ["start"]}),
        ("POST /containers/c9/start", {}, None),
        ("POST /containers/c9/stop", {"t": "3"}, None),
        ("POST /containers/c9/rename", {"name": "n-1.previous"}, None),
        ("POST /containers/c9/wait", {}, None),
        ("DELETE /containers/c9", {"v": "0", "link": "0", "force": "1"}, None),
        ("DELETE /volumes/v-1", {}, None),
        ("HEAD /containers/c9/archive", {"path": "/bin/there"}, None),
        ("HEAD /containers/c9/archive", {"path": "/bin/gone"}, None),
    ]
    assert client.calls == 10 and client._sdk is None  # the SDK was never built


def test_a_start_docker_refuses_is_the_sdks_refusal_with_dockers_explanation(daemon):
    client = CountingClient(daemon)
    with pytest.raises(refusals()) as caught:
        client.api.start("busy")
    assert caught.value.status_code == 500 and caught.value.explanation == "task busy: already exists"


def test_writes_are_the_sdks_counted_too(daemon):
    client = CountingClient(daemon)
    assert client.api.fallback is not None
    sdk = client.sdk()
    assert client.api.create_host_config.__self__ is sdk  # a write: the SDK's own method
    assert client.api.ping() and sdk.ping()
    assert client.calls == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=6),
       st.lists(st.sampled_from(["", "\n", "\r\n", " ", "\n\n"]), min_size=6, max_size=6))  # fmt: skip
def test_a_json_stream_gives_back_each_value_whatever_separates_them(values, separators):
    data = b"".join(json.dumps(v).encode() + separators[i].encode() for i, v in enumerate(values))
    assert json_stream(data) == values


@given(st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=3), max_size=3),
       st.sampled_from([b"}", b"nope", b'{"a":', b"\xff\xfe", b"]", b'{"a" 1}']))  # fmt: skip
def test_a_stream_that_is_not_json_is_a_bad_answer_not_a_crash(values, garbage):
    with pytest.raises(dockerapi.BadAnswer):
        json_stream(b"".join(json.dumps(v).encode() + b"\n" for v in values) + garbage)


@given(st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.binary(max_size=300)), max_size=8), st.integers(min_value=1, max_value=7))
def test_log_frames_give_their_payloads_in_order_and_a_torn_end_no_crash(frames, torn):
    data = b"".join(frame(s, p) for s, p in frames)
    assert Unframed().feed(data) == b"".join(p for _, p in frames)
    if frames:
        assert b"".join(p for _, p in frames).startswith(Unframed().feed(data[:-torn]))


@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=8), st.lists(st.integers(0, 2000), max_size=6))
def test_log_frames_fed_in_any_pieces_give_the_same_payloads(frames, cuts):
    data = b"".join(frame(s, p) for s, p in frames)
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    unframed = Unframed()
    assert b"".join(unframed.feed(data[a:b]) for a, b in zip(bounds, bounds[1:])) == b"".join(p for _, p in frames)


lines_text = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=30)


@given(lines_text, st.integers(1, 200), st.integers(1, 50))
def test_the_last_bytes_are_whole_lines_within_the_cap_and_end_the_log(lines, limit, piece):
    data = b"".join(lines)
    kept = last_bytes((data[i : i + piece] for i in range(0, len(data), piece)), limit)
    assert len(kept) <= limit and data.endswith(kept)
    if len(data) <= limit:
        assert kept == data
    elif b"\n" in data[-limit - 1 : -1]:  # a line begins within the last `limit` bytes: they are kept from there
        assert len(data) - len(kept) - 1 >= 0 and data[len(data) - len(kept) - 1 : len(data) - len(kept)] == b"\n"
        assert len(kept) > limit - max(map(len, lines))
    else:  # the last line alone is longer than the cap: its end
        assert len(kept) == limit


@given(st.binary(max_size=500), st.integers(1, 200), st.integers(1, 50))
def test_the_first_bytes_are_the_start_within_the_cap_and_nothing_after_is_read(data, limit, piece):
    read = []

    def pieces():
        for i in range(0, len(data), piece):
            read.append(i)
            yield data[i : i + piece]

    assert first_bytes(pieces(), limit) == data[:limit]
    assert len(read) <= -(-limit // piece)


def test_the_side_by_side_threads_that_first_write_share_one_sdk_client(daemon):
    client = CountingClient(daemon)
    start = threading.Barrier(16)

    def first_write():
        start.wait()
        return client.sdk()

    threads = [threading.Thread(target=lambda: made.append(first_write())) for _ in range(16)]
    made: list = []
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 16 and len({id(sdk) for sdk in made}) == 1 and client._sdk is made[0]
