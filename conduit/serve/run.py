"""Run the agent: start the observer, then uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog
import uvicorn

from conduit.drivers.observe import HostAccess
from conduit.serve.agent import Agent, Collector, SpecFile
from conduit.serve.app import create_app
from conduit.serve.auth import Limiter
from conduit.serve.live import Hub, Observer
from conduit.spec.profiles import HostFacts

log = structlog.get_logger("conduit.serve")


def build(host: HostAccess, spec_path: Path, facts: Callable[[], HostFacts], interval: float, git_follow: bool,
          limits: tuple[Limiter, Limiter]) -> Agent:  # fmt: skip
    spec = SpecFile(spec_path.resolve(), facts)
    hub = Hub()
    observer = Observer(Collector(spec, host), hub, interval)
    return Agent(spec, host, observer, hub, git_follow=git_follow, by_address=limits[0], by_token=limits[1])


def serve(host: HostAccess, spec_path: Path, facts: Callable[[], HostFacts], listen: str, port: int, interval: float,
          tls: tuple[str | None, str | None], git_follow: bool, limits: tuple[Limiter, Limiter]) -> None:  # fmt: skip
    agent = build(host, spec_path, facts, interval, git_follow, limits)
    agent.state()  # the state DB opened (and checked) once, before the first request
    agent.observer.start()
    config = uvicorn.Config(create_app(agent), host=listen.strip("[]"), port=port, ssl_certfile=tls[0], ssl_keyfile=tls[1],
                            log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="off")  # fmt: skip
    log.info("serve.listening", address=listen, port=port, tls=bool(tls[0]), git_follow=git_follow)
    try:
        uvicorn.Server(config).run()
    finally:
        agent.observer.stop()
