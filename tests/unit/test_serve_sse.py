"""The event stream is streamed by the Guard once the app's stack has returned, and ends when its client goes."""

from __future__ import annotations

import asyncio

from conduit.serve.app import create_app
from tests.unit.test_serve import Setup


class Client:
    """An ASGI client: a GET with no body, then a disconnect once `leave` is set."""

    def __init__(self):
        self.sent: list[dict] = []
        self.leave = asyncio.Event()
        self.requested = False

    async def receive(self) -> dict:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body":
            self.leave.set()  # gone after the first event (the hello)


def scope(token: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": "/api/v1/events", "raw_path": b"/api/v1/events", "root_path": "", "query_string": b"",
            "headers": [(b"host", b"x"), (b"authorization", f"Bearer {token}".encode())], "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80)}  # fmt: skip


def test_a_stream_ends_when_its_client_goes_and_holds_no_frame_of_the_app(tmp_path):
    setup = Setup(tmp_path)
    guard, client = create_app(setup.agent), Client()
    streaming: list[list[str]] = []

    async def run() -> None:
        task = asyncio.ensure_future(guard(scope(setup.tokens["ann"]), client.receive, client.send))
        while not client.sent:
            await asyncio.sleep(0.01)
        # While the stream is open, the only frames under the server's call are the Guard's and the stream's.
        stack, coro = [], task.get_coro()
        while hasattr(coro, "cr_code"):  # down to the stream's events (an async generator's step)
            stack.append(coro.cr_code.co_qualname)
            coro = coro.cr_await
        streaming.append(stack)
        await asyncio.wait_for(task, timeout=10)  # ends: the client went (no limit, no keep-alive yet)

    asyncio.run(run())
    start, hello = client.sent[0], client.sent[1]
    assert start["status"] == 200 and dict(start["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert b"event: hello" in hello["body"]
    assert client.sent[2:] == []  # nothing after the client went, not even the closing chunk
    assert streaming[0] == ["Guard.__call__", "Guard._limited", "EventStream.stream"]
