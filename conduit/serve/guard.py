"""The agent's door, in front of every route: a request is refused from its headers alone, before
one byte of its body is read. In this order: the client's address and its rate, the token and
its rate, the role the method needs, the declared size of the body; then the body itself is
counted as it streams (a chunked body declares no size) and cut at MAX_BODY.

The client's address is the TCP peer's. `X-Forwarded-For` is believed only when the peer is one
of the reverse proxies the agent was told of (`--behind-proxy`): anyone else could write any
address in it, and then no address would ever run out of its rate."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from starlette.responses import JSONResponse

from conduit.serve.agent import Agent
from conduit.serve.auth import allows, bearer
from conduit.serve.sse import HANDOFF

MAX_BODY = 1 << 20  # the largest request body: a saved plan is a few KiB
IDENTITY = "conduit.identity"  # the scope key the routes read: (token name, role)
CLIENT = "conduit.client"  # the scope key of the client's address, as the audit log names it
READS = frozenset({"GET", "HEAD", "OPTIONS"})

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def guarded(path: str) -> bool:
    """What needs a token: the API and the metrics. The dashboard's page and files and the
    OpenAPI document are public (they hold no data of the host)."""
    return path.startswith("/api/") or path == "/metrics"


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _normal(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a test client's name, a unix socket): itself
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def client_address(scope: Scope, proxies: frozenset[str]) -> str | None:
    """The address the request comes from; None when a trusted proxy sent an X-Forwarded-For that is not one."""
    peer = _normal((scope.get("client") or ("-",))[0])
    forwarded = header(scope, b"x-forwarded-for") if peer in proxies else None
    if forwarded is None:
        return peer
    # The proxy appends the address it saw: the last entry is the only one it vouches for.
    last = forwarded.rsplit(",", 1)[-1].strip()
    try:
        return _normal(str(ipaddress.ip_address(last)))
    except ValueError:
        return None


def declared_length(scope: Scope) -> int | None:
    """Content-Length as a number; -1 when it is not one (the server rejects most such requests first)."""
    value = header(scope, b"content-length")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else -1


class Refusal(Exception):
    def __init__(self, status: int, reason: str, user: str | None = None, audit: bool = True):
        super().__init__(reason)
        self.status, self.reason, self.user, self.audit = status, reason, user, audit


class Guard:
    """A pure ASGI middleware, outermost: nothing inside it runs for a refused request."""

    def __init__(self, app, agent: Agent, proxies: frozenset[str] = frozenset()):
        self.app, self.agent, self.proxies = app, agent, proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = client_address(scope, self.proxies)
        try:
            if client is None:  # only a trusted proxy's header is read, so the proxy is the one to blame
                client = _normal((scope.get("client") or ("-",))[0])
                raise Refusal(400, "X-Forwarded-For from the proxy does not end in an address")
            identity = self._admit(scope, client)
        except Refusal as refusal:
            await self._refuse(scope, receive, send, client, refusal)
            return
        scope = {**scope, CLIENT: client, IDENTITY: identity, HANDOFF: []}
        await self._limited(scope, receive, send, client)

    def _admit(self, scope: Scope, client: str) -> tuple[str, str] | None:
        """(token name, role) for a guarded path, None for a public one; Refusal otherwise."""
        length = declared_length(scope)
        if not guarded(scope["path"]):
            self._check_length(length, None)
            return None
        allowed, first = self.agent.by_address.take(client)
        if not allowed:
            raise Refusal(429, "too many requests from this address", audit=first)
        token = bearer(header(scope, b"authorization"))
        if token is None:
            raise Refusal(401, "a bearer token is needed (conduit tokens create NAME)")
        found = self.agent.who(token)
        if found is None:
            raise Refusal(401, "unknown or revoked token")
        name, role = found
        allowed, first = self.agent.by_token.take(name)
        if not allowed:
            raise Refusal(429, "too many requests with this token", name, audit=first)
        needed = "viewer" if scope["method"] in READS else "operator"
        if not allows(role, needed):
            raise Refusal(403, f"token {name} is a {role}; this needs an {needed}", name)
        self._check_length(length, name)
        return found

    @staticmethod
    def _check_length(length: int | None, user: str | None) -> None:
        if length == -1:
            raise Refusal(400, "Content-Length is not a number", user)
        if length is not None and length > MAX_BODY:
            raise Refusal(413, f"the body is over {MAX_BODY} bytes", user)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, client: str, refusal: Refusal) -> None:
        if refusal.audit:
            detail = {"method": scope["method"], "path": scope["path"], "client": client, "status": refusal.status, "reason": refusal.reason}
            self.agent.audit_refusal(client, refusal.user, detail)
        headers = {"Connection": "close"}  # the unread body is not drained: the connection goes
        if refusal.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        await JSONResponse({"detail": refusal.reason}, refusal.status, headers)(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        """The app, with a body that ends in a 413 (sent here) once it passes MAX_BODY."""
        seen, started, cut, answered = 0, False, False, False

        async def bounded() -> dict:
            nonlocal seen, cut, answered
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY:
                    cut = True  # the app stops reading: no more of the body is taken in
                    if not started:
                        user = (scope.get(IDENTITY) or (None,))[0]
                        await self._refuse(scope, receive, send, client, Refusal(413, f"the body is over {MAX_BODY} bytes", user))
                        answered = True  # what the app answers to the cut body is dropped
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: dict) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        # A copy: what the app keeps in its scope (exit stacks, the route) goes when it returns, not
        # when an event stream handed off to here ends.
        await self.app(dict(scope), bounded, sending)
        for stream in scope[HANDOFF]:  # an event stream, streamed here once the app's stack has returned
            await stream.stream(bounded, sending)
