"""The agent's HTTP face: /api/v1 (REST, OpenAPI at /openapi.json), /api/v1/events (server-sent
events), /metrics (Prometheus text format) and the dashboard at /."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter

from conduit.errors import DockerError, HostMoved, Locked, NotASavedPlan
from conduit.serve import models
from conduit.serve.agent import Agent, Refused, outcome_json
from conduit.serve.auth import allows
from conduit.serve.fleet import add_fleet_routes
from conduit.serve.guard import CLIENT, IDENTITY, Guard
from conduit.serve.live import node_event
from conduit.serve.sse import EventStream
from conduit.state.db import StateError
from conduit.state.history import running
from conduit.views.status import NODE_NOTES, node_state, render_prometheus

STATIC = pathlib.Path(__file__).parent / "static"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NODES = TypeAdapter(list[models.Node])
EVENT_POLL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
MAX_INT = (1 << 63) - 1  # what SQLite's INTEGER holds
GEN_ID = Path(ge=1, le=MAX_INT, description="A generation's number (conduit history)")


def _refuse(agent: Agent, request: Request, status: int, reason: str, user: str | None) -> None:
    """Refused: written to the audit log (by token name, never the token), then the HTTP answer."""
    client = request.scope.get(CLIENT, "-")
    agent.audit_refusal(client, user, {"method": request.method, "path": request.url.path, "client": client, "status": status, "reason": reason})
    raise HTTPException(status, reason, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def _role(agent: Agent, needed: str):
    """The token's name, as the Guard found it. The headers are declared here so that the OpenAPI
    document shows them (and its fuzzers send them); the Guard has read them already."""

    async def check(request: Request,
                    authorization: str | None = Header(None, description="Bearer TOKEN (conduit tokens create NAME)"),
                    x_forwarded_for: str | None = Header(None, description="Read only from a proxy named by --behind-proxy"),
                    ) -> str:  # fmt: skip
        identity = request.scope.get(IDENTITY)
        if identity is None:  # the app without its Guard: nobody is let in
            _refuse(agent, request, 401, "a bearer token is needed (conduit tokens create NAME)", None)
        name, role = identity
        if not allows(role, needed):
            _refuse(agent, request, 403, f"token {name} is a {role}; this needs an {needed}", name)
        return name

    return check


def alerts(agent: Agent, data: dict) -> list[str]:
    """What needs the operator, one line each, in the words of `conduit status`."""
    out = []
    if agent.observer.error:
        out.append(f"the last observation failed: {agent.observer.error}")
    if data.get("spec_error"):
        out.append(f"the spec does not load: {data['spec_error']}")
    out += _node_alerts(data["containers"], data.get("held"))
    out += [f"front {f['listener']} {f['port']} is NOT listening" for f in data["front"] or [] if f["listening"] is False]
    if data.get("drift"):
        out.append(f"drift: {', '.join(data['drift'])}")
    watch = data.get("watch") or {}
    if watch.get("last_result") in ("invalid", "blocked", "rolled_back", "failed"):
        out.append(f"watch: {watch['last_result']}: {watch.get('last_message', '')}")
    return out


def _node_alerts(rows: list[dict], held: dict | None = None) -> list[str]:
    out = []
    for flag, say, _style in NODE_NOTES:
        named = [r["name"] for r in rows if r[flag]]
        if named:
            out.append(say.format(names=", ".join(named)))
    down = [r["name"] for r in rows if r["state"] != "running" and r["name"] not in (held or {})]  # a held stop is asked for
    if down:
        out.append(f"not running: {', '.join(down)}")
    return out


def _node(row: dict) -> dict:
    """The node as the API shows it; its version is what its image said at the last apply, else its tag."""
    image = row.get("image") or ""
    version = row.get("version") or (image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None)
    return {k: v for k, v in row.items() if k != "regions"} | {"status": node_state(row), "version": version}


def event_id(text: str) -> int:
    """Last-Event-ID as the number it must be (ASCII digits: int() would take other scripts' digits too)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise HTTPException(400, "Last-Event-ID must be the decimal id of an event")
    return int(text)


def _sse(seq: int, kind: str, data: dict) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _read_routes(api: APIRouter, agent: Agent, viewer) -> None:
    @api.get("/summary", response_model=models.Summary, summary="The cluster at a glance, with what needs the operator")
    def summary(_: str = Depends(viewer)) -> dict:
        data = agent.data()
        return {k: v for k, v in data.items() if k not in ("containers", "countries", "front", "front_capacity")} | {
            "observed_at": agent.observer.observed_at, "observe_error": agent.observer.error, "alerts": alerts(agent, data),
        }  # fmt: skip

    nodes_json: dict = {}  # the nodes list of one observation, made once: the most asked-for answer

    @api.get("/nodes", response_model=list[models.Node], summary="Every node: state, clients, CPU and memory against limits")
    async def node_list(_: str = Depends(viewer)) -> Response:
        data = agent.data()
        if nodes_json.get("of") is not data:
            rows = NODES.validate_python([_node(r) for r in data["containers"]])
            nodes_json.update(of=data, body=NODES.dump_json(rows))
        return Response(nodes_json["body"], media_type="application/json")

    @api.get("/countries", response_model=list[models.Country], summary="Clients and bytes per country")
    def countries(_: str = Depends(viewer)) -> list[dict]:
        return agent.data()["countries"]

    @api.get("/front", summary="The nginx front: listeners, backends up, connections against its ceiling")
    def front(_: str = Depends(viewer)) -> dict:
        data = agent.data()
        return {"listeners": data["front"], "capacity": data["front_capacity"]}

    @api.get("/plan", response_model=models.PlanView, summary="The live plan of the current spec against the host: its text, changes, drift and image update")
    def plan(_: str = Depends(viewer)) -> dict:
        return agent.plan_view()

    @api.get("/timeline", response_model=models.Timeline, summary="Clients, bytes, uptime and countries over a range, from the state DB; byte totals")
    def timeline(span: Literal["1h", "24h", "7d", "30d"] = Query("1h", alias="range"), _: str = Depends(viewer)) -> dict:
        return agent.timeline(span)

    @api.get("/me", response_model=models.Me, summary="The token's name and role")
    def me(request: Request, _: str = Depends(viewer)) -> dict:
        name, role = request.scope[IDENTITY]
        return {"name": name, "role": role}

    @api.get("/preflight", summary="What stops an apply now, and the warnings")
    def preflight(_: str = Depends(viewer)) -> dict:
        plan = agent.live_plan()
        return {"problems": list(plan.problems), "warnings": list(plan.warnings)}

    @api.get("/watch", summary="The watcher's own record (watch.json), or null")
    def watch(_: str = Depends(viewer)) -> dict | None:
        return agent.watch_status()

    @api.get("/audit", summary="The newest audit rows")
    def audit(limit: int = Query(100, ge=1, le=1000), _: str = Depends(viewer)) -> list[dict]:
        return agent.state().audit.recent(limit)


def _generation_routes(api: APIRouter, agent: Agent, viewer) -> None:
    def row(g) -> dict:
        return {k: v for k, v in g.__dict__.items() if k != "spec_text"}

    @api.get("/generations", response_model=list[models.Generation], summary="Every generation applied, oldest first")
    def generations(_: str = Depends(viewer)) -> list[dict]:
        gens = agent.generations()
        runs = running(gens)
        return [row(g) | {"running": runs is not None and g.id == runs.id} for g in gens]

    @api.get("/generations/{gen_id}", response_model=models.GenerationDetail, summary="One generation with its spec, plan and journal")
    def generation(gen_id: int = GEN_ID, _: str = Depends(viewer)) -> dict:
        history = agent.state().history
        g = history.generation(gen_id)
        if g is None:
            raise Refused(404, f"no generation {gen_id}")
        keys = ("phase", "kind", "resource", "action", "status", "detail")
        journal = [dict(zip(keys, step)) for step in history.journal(gen_id)]
        return row(g) | {"spec_text": g.spec_text, "plan_text": agent.generation_plan(gen_id), "journal": journal}


def _write_routes(api: APIRouter, agent: Agent, operator) -> None:
    def done(user: str, event: str, detail: dict, outcome) -> dict:
        result = outcome_json(outcome)
        agent.audit(event, user, detail | {"status": result["status"], "generation": result["generation"]})
        return result

    def on_node(request: Request, user: str, event: str, name: str, status: str, act) -> dict:
        """One action on one node, audited once with what it did (`act` may add to the audit row)."""
        with _audited(agent, request, user, event):
            more = act() or {}
            agent.audit(event, user, {"node": name, "status": status, **more})
            return {"ok": True, "message": f"{name} {status}"}

    @api.post("/apply", response_model=models.Outcome, summary="Apply the current spec (git's, when the host follows git) or a saved plan")
    def apply(request: Request, body: models.ApplyBody | None = None, user: str = Depends(operator)) -> dict:
        with _audited(agent, request, user, "api.apply"):
            if body is not None and body.plan is not None:
                return done(user, "api.apply", {"source": "saved plan"}, agent.apply_saved(json.dumps(body.plan), user))
            return done(user, "api.apply", {"source": "spec"}, agent.apply_spec(user))

    @api.post("/rollback", response_model=models.Outcome, summary="Apply the last good generation before the current one again")
    def rollback_back(request: Request, user: str = Depends(operator)) -> dict:
        with _audited(agent, request, user, "api.rollback"):
            return done(user, "api.rollback", {"target": "the good generation before the current one"}, agent.rollback(None, user))

    @api.post("/rollback/{gen_id}", response_model=models.Outcome, summary="Apply generation N's spec again")
    def rollback(request: Request, gen_id: int = GEN_ID, user: str = Depends(operator)) -> dict:
        with _audited(agent, request, user, "api.rollback"):
            return done(user, "api.rollback", {"target": gen_id}, agent.rollback(gen_id, user))

    @api.post("/nodes/{name}/restart", response_model=models.Done, summary="Restart one node's container")
    def restart(name: str, request: Request, user: str = Depends(operator)) -> dict:
        return on_node(request, user, "api.restart", name, "restarted", lambda: agent.restart(name, user))

    @api.post("/nodes/{name}/stop", response_model=models.Done, summary="Stop one node and hold it stopped: applies and the watcher keep it so until it is started")
    def stop(name: str, request: Request, body: models.StopBody | None = None, user: str = Depends(operator)) -> dict:
        return on_node(request, user, "api.stop", name, "stopped", lambda: {"reason": agent.stop(name, user, body.reason if body else None)})

    @api.post("/nodes/{name}/start", response_model=models.Done, summary="Start one node, ending its hold (a stop asked for, or the budget's)")
    def start(name: str, request: Request, user: str = Depends(operator)) -> dict:
        return on_node(request, user, "api.start", name, "started", lambda: agent.start(name, user))

    @api.post("/update", response_model=models.Outcome, summary="Take a new image behind the tag now, canary first (as conduit update)")
    def update(request: Request, user: str = Depends(operator)) -> dict:
        with _audited(agent, request, user, "api.update"):
            return done(user, "api.update", {"source": "spec"}, agent.take_update(user))

    @api.post("/updates/check", response_model=models.UpdateCheck, summary="Ask the registry now what the image tag means (as conduit update --check)")
    def check_updates(request: Request, user: str = Depends(operator)) -> dict:
        with _audited(agent, request, user, "api.check_updates"):
            result = agent.check_updates(user)
            agent.audit("api.check_updates", user, {"update": bool(result["update"])})
            return result

    @api.get("/nodes/{name}/logs", response_model=models.NodeLog,
             summary="A node's last log lines (operators only: a node's log is what strangers made it say), bounded, control characters stripped")
    def logs(name: str, response: Response, user: str = Depends(operator)) -> dict:
        response.headers["Cache-Control"] = "no-store"
        return {"name": name, "lines": agent.logs(name)}

    @api.post("/nodes/{name}/claim", response_model=models.Claim, summary="A node's Ryve claim link and QR code: it reveals the node's private key (never cached)")
    def claim(name: str, request: Request, response: Response, user: str = Depends(operator)) -> dict:
        response.headers["Cache-Control"] = "no-store"
        with _audited(agent, request, user, "api.claim"):
            result = agent.claim(name)
            agent.audit("api.claim", user, {"node": name, "status": "shown"})
            return result


class _audited:
    """A write that fails before or during its run is in the audit log too, with why."""

    CODES = ((Refused, None), (NotASavedPlan, 400), (HostMoved, 409), (Locked, 409), (DockerError, 503), (StateError, 503))

    def __init__(self, agent: Agent, request: Request, user: str, event: str):
        self.agent, self.request, self.user, self.event = agent, request, user, event

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        for cls, status in self.CODES:
            if isinstance(exc, cls):
                status = status or exc.status
                detail = {"path": self.request.url.path, "status": status, "reason": str(exc)}
                self.agent.audit(self.event, self.user, detail)
                raise HTTPException(status, str(exc)) from None
        return False


def _event_routes(api: APIRouter, agent: Agent, viewer) -> None:
    @api.get("/events", summary="Server-sent events: node changes, apply steps, restarts (text/event-stream)")
    async def events(limit: int | None = Query(None, ge=0, le=MAX_INT),
                     last_event_id: str | None = Header(None, description="Resume after this event: the decimal id of the last one seen"),
                     _: str = Depends(viewer)) -> EventStream:  # fmt: skip
        start = agent.hub.last if last_event_id is None else event_id(last_event_id)
        return EventStream(lambda gone: _stream(agent, gone, start, limit))


async def _stream(agent: Agent, gone: asyncio.Future, seq: int, limit: int | None):
    """A snapshot of the nodes first, then each event as it is published; `limit` ends it after N,
    the client's going (`gone` done) at once."""
    data = agent.observer.latest()
    # `backlog`: the events up to this id were published before the stream opened (a page lists them, and
    # asks for the nodes as they are now instead of replaying them).
    yield _sse(seq, "hello", {"nodes": [node_event(r) for r in data["containers"]] if data else [], "backlog": agent.hub.last})
    sent, quiet = 0, 0.0
    while (limit is None or sent < limit) and not agent.hub.closed.is_set():
        await asyncio.wait((gone,), timeout=EVENT_POLL_SECONDS)  # a pause that ends when the client goes
        if gone.done():
            return
        fresh = agent.hub.since(seq)
        for seq, kind, payload in fresh[: None if limit is None else limit - sent]:
            yield _sse(seq, kind, payload)
            sent += 1
        quiet = 0.0 if fresh else quiet + EVENT_POLL_SECONDS
        if quiet >= KEEPALIVE_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"


def create_app(agent: Agent, proxies: frozenset[str] = frozenset()) -> Guard:
    """The agent's ASGI app: the routes behind the Guard (`proxies`: whose X-Forwarded-For is believed)."""
    return Guard(routes(agent), agent, proxies)


def routes(agent: Agent) -> FastAPI:
    # pydantic.v1 (pydantic 1 kept inside pydantic 2 for old code: about 1 MiB resident) is imported by
    # FastAPI only to refuse v1 models, on each route and on answers it cannot encode; conduit has none.
    # Hidden for good, as if not installed, FastAPI finds none without loading it.
    sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]
    app = FastAPI(title="conduit agent", version="1", summary="The host's nodes, clients, generations and applies")
    viewer, operator = _role(agent, "viewer"), _role(agent, "operator")
    api = APIRouter(prefix="/api/v1")
    _read_routes(api, agent, viewer)
    _generation_routes(api, agent, viewer)
    _write_routes(api, agent, operator)
    _event_routes(api, agent, viewer)
    app.include_router(api)
    add_fleet_routes(app, agent.fleet, viewer)

    @app.exception_handler(Refused)
    def refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(DockerError)
    @app.exception_handler(StateError)
    def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="The figures of `conduit status --prometheus`")
    def metrics(_: str = Depends(viewer)) -> PlainTextResponse:
        return PlainTextResponse(render_prometheus(agent.data()), media_type=PROMETHEUS_TYPE)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
