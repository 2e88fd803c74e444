"""Run the agent: start the observer (and, with --watch, the watch loop; and what `companion`
starts, the bot), then uvicorn until SIGTERM or SIGINT; then stop each of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog
import uvicorn

from conduit.drivers.observe import HostAccess
from conduit.features.watch import Watcher
from conduit.serve.agent import Agent, Collector, SpecFile
from conduit.serve.app import create_app
from conduit.serve.auth import Limiter
from conduit.serve.fleet import FleetFiles
from conduit.serve.live import Hub, Observer
from conduit.serve.sampling import Sampler
from conduit.spec.profiles import HostFacts

log = structlog.get_logger("conduit.serve")


class Stoppable(Protocol):
    def stop(self) -> None: ...


def build(host: HostAccess, spec_path: Path, facts: Callable[[], HostFacts], interval: float, git_follow: bool,
          limits: tuple[Limiter, Limiter]) -> Agent:  # fmt: skip
    spec = SpecFile(spec_path.resolve(), facts)
    hub = Hub()
    observer = Observer(Collector(spec, host), hub, interval)
    agent = Agent(spec, host, observer, hub, git_follow=git_follow, by_address=limits[0], by_token=limits[1])
    observer.sample = Sampler(lambda: agent.state().timeline)
    return agent


def start_watch(agent: Agent, interval: float) -> tuple[Watcher, threading.Thread]:
    """`conduit watch FILE --interval INTERVAL` in a thread of the agent: the same loop, the same
    apply lock (an API apply meanwhile is refused, 409), its steps on the event stream."""
    report = lambda line: agent.hub.publish("apply", {"line": line, "by": "watch"})  # noqa: E731
    watcher = Watcher(agent.host, agent.spec.facts, report=report)
    thread = threading.Thread(target=watcher.watch_file, args=(agent.spec.path, interval), name="watch", daemon=True)
    thread.start()
    return watcher, thread


class _Server(uvicorn.Server):
    """uvicorn's server that also ends the event streams when it is told to stop: otherwise an open
    stream holds the shutdown until its grace time runs out and is cancelled (a traceback in the log)."""

    def __init__(self, config: uvicorn.Config, hub: Hub):
        super().__init__(config)
        self.hub = hub

    def handle_exit(self, sig: int, frame) -> None:
        self.hub.closed.set()
        super().handle_exit(sig, frame)


def serve(host: HostAccess, spec_path: Path, facts: Callable[[], HostFacts], listen: str, port: int, interval: float,
          tls: tuple[str | None, str | None], git_follow: bool, limits: tuple[Limiter, Limiter],
          watch_interval: float | None = None, proxies: frozenset[str] = frozenset(), fleet: FleetFiles | None = None,
          companion: Callable[[Agent], Stoppable] | None = None) -> None:  # fmt: skip
    """`companion`: started with the agent (it may refuse, before anything listens), stopped after it."""
    agent = build(host, spec_path, facts, interval, git_follow, limits)
    agent.fleet = fleet
    agent.state()  # the state DB opened (and checked) once, before the first request
    beside = companion(agent) if companion else None
    agent.observer.start()
    watch = start_watch(agent, watch_interval) if watch_interval else None
    # proxy_headers off: uvicorn's own would believe X-Forwarded-For from any local process; the Guard reads it.
    config = uvicorn.Config(create_app(agent, proxies), host=listen.strip("[]"), port=port, ssl_certfile=tls[0], ssl_keyfile=tls[1],
                            log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="off",
                            proxy_headers=False, server_header=False)  # fmt: skip
    log.info("serve.listening", address=listen, port=port, tls=bool(tls[0]), git_follow=git_follow, watch=bool(watch))
    try:
        _Server(config, agent.hub).run()
    finally:
        agent.observer.stop()
        if watch:  # as `conduit watch` on SIGTERM: the reconcile under way finishes first
            watch[0].stop()
            watch[1].join()
        if beside:
            beside.stop()
