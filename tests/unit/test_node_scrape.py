"""conduit.drivers.node.scrape against a node's metrics endpoint on 127.0.0.1, played here by a
socket server: an honest answer is parsed; a compromised node's answer that never ends, or
that drips a byte at a time (each byte well inside the timeout), is given up on, not read for ever."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conduit.drivers import node
from conduit.facts import metrics

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nConnection: close\r\n\r\n"
LINE = b"conduit_connected_clients 1\n"


class Node:
    """One connection on 127.0.0.1, answered by `answer(conn)`; counts what it got out before the client hung up."""

    def __init__(self, answer):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, args=(answer,), daemon=True)
        self.thread.start()

    def _serve(self, answer) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(4096)
            try:
                for piece in answer():
                    conn.sendall(piece)
                    self.sent += len(piece)
            except OSError:
                pass  # the client hung up

    def close(self) -> None:
        self.thread.join(timeout=60)
        self.listener.close()


@pytest.fixture
def serve():
    started = []

    def start(answer) -> Node:
        started.append(Node(answer))
        return started[-1]

    yield start
    for each in started:
        each.close()


def test_an_honest_answer_is_parsed(serve):
    body = b"# HELP conduit_connected_clients x\nconduit_connected_clients 7\nconduit_max_common_clients 50\n"
    server = serve(lambda: [OK.replace(b"Connection", b"Content-Length: %d\r\nConnection" % len(body)) + body])
    samples = node.scrape(server.port)
    assert metrics.value(samples, "conduit_connected_clients") == 7
    assert metrics.value(samples, "conduit_max_common_clients") == 50


def test_an_error_status_is_no_answer(serve):
    server = serve(lambda: [b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n" + LINE])
    assert node.scrape(server.port) is None


def test_an_endless_answer_is_cut_at_the_limit(serve):
    total = 48 << 20  # far past any node's metrics
    block = LINE * (65536 // len(LINE))

    def endless():
        yield OK
        for _ in range(total // len(block)):
            yield block

    server = serve(endless)
    assert node.scrape(server.port, timeout=30) is None
    server.close()
    assert server.sent < total / 2  # the client hung up near the limit, not after reading it all


@pytest.mark.parametrize("where", ["headers", "body"])
def test_an_answer_dripped_byte_by_byte_ends_at_the_deadline(serve, where):
    drips = 200

    def dripping():
        if where == "body":
            yield OK
        else:
            yield b"HTTP/1.1 200 OK\r\nX-Pad: "
        for _ in range(drips):
            time.sleep(0.05)  # each byte comes long before the timeout would fire
            yield b"1"

    server = serve(dripping)
    assert node.scrape(server.port, timeout=1.0) is None
    server.close()
    assert server.sent < len(OK) + drips / 2  # given up on at about a second, not after all ten
