"""Run the agent: start the observer (and, when it follows the spec, the watch loop and the
tracker; and what `companion` starts, the bot), then uvicorn until SIGTERM or SIGINT; then stop
each of them. One process: the loops are threads beside uvicorn, tcpdump its only child."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import uvicorn

from conduit.log import logger, structlog as load_structlog
from conduit.drivers.observe import HostAccess
from conduit.features.watch import Watcher
from conduit.serve.agent import Agent, Collector, SpecFile
from conduit.serve.app import create_app
from conduit.serve.auth import Limiter
from conduit.serve.fleet import FleetFiles
from conduit.serve.live import Hub, Observer
from conduit.serve.sampling import Sampler
from conduit.spec.profiles import HostFacts
from conduit.tracker.hosted import HostedTracker

log = logger("conduit.serve")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters (malloc.h)


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


@dataclass(frozen=True)
class Watching:
    """How the agent follows its spec: `loop` is `conduit watch`'s (Watcher.watch_file, or
    features.follow.follow for a repository), with watch's --no-heal and --allow-new-identity."""

    loop: Callable[[Watcher], None]
    heal: bool = True
    allow_new_identity: bool = False


def start_watch(agent: Agent, watching: Watching) -> tuple[Watcher, threading.Thread]:
    """`conduit watch` in a thread of the agent: the same loop, the same apply lock (an API apply
    meanwhile is refused, 409), its applies through conduit.engine's intents, its lines on the event stream."""
    report = lambda line: agent.hub.publish("apply", {"line": line, "by": "watch"})  # noqa: E731
    watcher = Watcher(agent.host, agent.spec.facts, heal=watching.heal, report=report, allow_new_identity=watching.allow_new_identity)
    thread = threading.Thread(target=watching.loop, args=(watcher,), name="watch", daemon=True)
    thread.start()
    return watcher, thread


def host_tracker(agent: Agent) -> HostedTracker:
    """The spec's tracker run in this process (see conduit.tracker.hosted)."""
    tracker = HostedTracker(agent.host.state_dir, agent.spec.latest)
    tracker.start()
    return tracker


class _Server(uvicorn.Server):
    """uvicorn's server that also ends the event streams when it is told to stop: otherwise an open
    stream holds the shutdown until its grace time runs out and is cancelled (a traceback in the log)."""

    def __init__(self, config: uvicorn.Config, hub: Hub):
        super().__init__(config)
        self.hub = hub

    def handle_exit(self, sig: int, frame) -> None:
        self.hub.closed.set()
        super().handle_exit(sig, frame)


def tune_malloc() -> None:
    """glibc gives each thread that allocates a malloc arena of its own (up to 8 a core), each keeping what was
    freed in it: the agent's threads (observer, watch, tracker, apply workers) allocate little, two arenas serve
    them. And it raises its mmap and trim thresholds after each big block is freed, so that the next Docker
    answer or JSON document is carved from the heap and its memory stays there: fixed, they go back at once."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no arena per thread and no such thresholds)
        return
    mallopt(M_ARENA_MAX, 2)
    mallopt(M_MMAP_THRESHOLD, 128 << 10)  # glibc's own starting values, no longer moved
    mallopt(M_TRIM_THRESHOLD, 128 << 10)


def serve(host: HostAccess, spec_path: Path, facts: Callable[[], HostFacts], listen: str, port: int, interval: float,
          tls: tuple[str | None, str | None], git_follow: bool, limits: tuple[Limiter, Limiter],
          watching: Watching | None = None, proxies: frozenset[str] = frozenset(), fleet: FleetFiles | None = None,
          companion: Callable[[Agent], Stoppable] | None = None) -> None:  # fmt: skip
    """`companion`: started with the agent (it may refuse, before anything listens), stopped after it."""
    tune_malloc()  # before the agent's threads start
    load_structlog()  # loaded while this is the only thread, without rich (conduit.log)
    agent = build(host, spec_path, facts, interval, git_follow, limits)
    agent.fleet = fleet
    agent.state()  # the state DB opened (and checked) once, before the first request
    beside = companion(agent) if companion else None
    agent.observer.start()
    watch = start_watch(agent, watching) if watching else None
    tracker = host_tracker(agent) if watching else None
    # proxy_headers off: uvicorn's own would believe X-Forwarded-For from any local process; the Guard reads it.
    config = uvicorn.Config(create_app(agent, proxies), host=listen.strip("[]"), port=port, ssl_certfile=tls[0], ssl_keyfile=tls[1],
                            log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="off",
                            proxy_headers=False, server_header=False,
                            # The plain event loop and HTTP parser, no WebSocket: nothing uvloop, httptools or websockets would load.
                            loop="asyncio", http="h11", ws="none")  # fmt: skip
    log.info("serve.listening", address=listen, port=port, tls=bool(tls[0]), git_follow=git_follow, watch=bool(watch))
    try:
        _Server(config, agent.hub).run()
    finally:
        agent.observer.stop()
        if watch:  # as `conduit watch` on SIGTERM: the reconcile under way finishes first
            watch[0].stop()
            watch[1].join()
        if tracker:
            tracker.stop()
        if beside:
            beside.stop()
