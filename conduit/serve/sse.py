"""The event stream's answer, streamed from the door rather than from inside the routes.

A StreamingResponse is sent from the bottom of the app's stack: every middleware, router and
exception handler around the route stays awaited, with its frames, exit stacks and events, for as
long as the client reads (about 30 KiB a stream), plus a task group that listens for the client
going. An EventStream is checked, routed, validated and authorised the same way, but it sends
nothing there: it leaves itself in the request's scope, the stack returns, and the Guard (the
outermost layer) streams it. No dependency of the route holds anything past its return."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import Response

HANDOFF = "conduit.handoff"  # the scope key of the list a route's EventStream is left in
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
Events = Callable[[asyncio.Future], AsyncIterator[str]]  # given a future done when the client goes


class EventStream(Response):
    media_type = "text/event-stream"
    status_code = 200
    background = None

    def __init__(self, events: Events):
        self.events = events

    # The same for every stream, so made once (a tuple: nothing adds to it). No Content-Length: the stream
    # is chunked. Neither a browser nor a proxy keeps it (nginx would otherwise buffer it).
    raw_headers = ((b"cache-control", b"no-store"), (b"x-accel-buffering", b"no"), (b"content-type", b"text/event-stream; charset=utf-8"))

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        scope[HANDOFF].append(self)  # the Guard puts the list there (a route without it refuses every request)

    async def stream(self, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            events = self.events(gone)
            try:
                async for chunk in events:
                    await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            finally:
                await events.aclose()
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


async def _disconnect(receive: Receive) -> None:
    """Returns when the client has gone (whatever body a GET came with is read and dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass
