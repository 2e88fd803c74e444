"""The agent's fleet routes (with `conduit serve --fleet FLEET`): the fleet's status, as
`conduit fleet status` shows it, for the fleet page; and the fleet's exporters as a Prometheus
http_sd target list."""

from __future__ import annotations

import pathlib
import socket
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse

from conduit.errors import PolicyError, SpecError
from conduit.features.fleetstatus import HEADERS, cells, fleet_status, read_host_tokens, read_tokens, sd_targets
from conduit.serve.agent import Refused
from conduit.spec.fleet import Fleet, load_fleet

STATIC = pathlib.Path(__file__).parent / "static"


@dataclass(frozen=True)
class FleetFiles:
    """The fleet file the agent serves, the root-only file of the agents' tokens, how long to wait
    for them, and which host of the fleet this agent is (its name in the fleet file)."""

    fleet: Path
    tokens: Path
    timeout: float = 5.0
    host: str = field(default_factory=socket.gethostname)

    def load(self) -> Fleet:
        try:
            return load_fleet(self.fleet)
        except SpecError as exc:
            raise Refused(503, " / ".join(exc.lines())) from None


def add_fleet_routes(app: FastAPI, files: FleetFiles | None, viewer) -> None:
    api = APIRouter(prefix="/api/v1/fleet")

    def fleet_files() -> FleetFiles:
        if files is None:
            raise Refused(404, "this agent serves no fleet; start it with `conduit serve --fleet FLEET`")
        return files

    @api.get("", summary="Every host of the fleet as its agent says it is (conduit fleet status)")
    def status(_: str = Depends(viewer)) -> dict:
        found = fleet_files()
        try:
            tokens = read_tokens(found.tokens)
        except PolicyError as exc:
            raise Refused(503, str(exc)) from None
        rows = fleet_status(found.load(), tokens, found.timeout)
        return {"headers": HEADERS, "hosts": [r.to_json() | {"cells": cells(r)} for r in rows]}

    @api.get("/targets", summary="Prometheus http_sd_config: each host's /metrics with host, ring, provider and region labels")
    def targets(_: str = Depends(viewer)) -> list[dict]:
        found = fleet_files()
        try:
            tokens = read_host_tokens(found.tokens)
        except PolicyError as exc:
            raise Refused(503, str(exc)) from None
        return sd_targets(found.load(), tokens)

    app.include_router(api)

    @app.get("/fleet", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "fleet.html", headers={"Cache-Control": "no-store"})
