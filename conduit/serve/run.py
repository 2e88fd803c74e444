"""Run the agent in two steps: `build` it (its state opened, nothing started: `conduit serve` starts
the bot and the budget with it then, and may still refuse before anything listens), then `run` it:
start the observer (and, when it follows the spec, the watch loop and the tracker), uvicorn until
SIGTERM or SIGINT, then stop each of them. One process: the loops are threads beside uvicorn,
tcpdump its only child."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from conduit.log import logger, structlog as load_structlog
from conduit.drivers.observe import HostAccess
from conduit.drivers.tracker import systemd_is_init
from conduit.features.follow import Target, follow
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
TRACKER_CHECK = 2.0  # seconds between the hosted tracker's checks of the spec and the pidfile


def build(host: HostAccess, spec_path: Path, facts: Callable[[], HostFacts], interval: float, git_follow: bool,
          limits: tuple[Limiter, Limiter], fleet: FleetFiles | None = None, repository: str | None = None) -> Agent:  # fmt: skip
    """The agent, its state DB opened (and checked) once, before the first request; no thread started yet.
    `repository`: the public URL of the repository followed (`serve --git URL`)."""
    tune_malloc()  # before the agent's threads start
    load_structlog()  # loaded while this is the only thread, without rich (conduit.log)
    spec = SpecFile(spec_path.absolute(), facts)  # as named: resolved once, a link repointed later would go unseen
    hub = Hub()
    observer = Observer(Collector(spec, host), hub, interval)
    agent = Agent(spec, host, observer, hub, git_follow=git_follow, by_address=limits[0], by_token=limits[1], fleet=fleet,
                  repository=repository)  # fmt: skip
    observer.sample = Sampler(lambda: agent.state().timeline)
    agent.state()
    return agent


@dataclass(frozen=True)
class Watching:
    """How the agent follows its spec, as `conduit watch` does: `source` is FILE (applied once no save
    came for `debounce` s) or a repository (fetched every `poll` s, plus up to `jitter` of it at random),
    drift healed every `interval` s; with watch's --no-heal and --allow-new-identity."""

    source: Path | Target
    interval: float
    debounce: float
    poll: float
    jitter: float
    heal: bool = True
    allow_new_identity: bool = False


def watch_loop(watcher: Watcher, watching: Watching) -> None:
    """`conduit watch`'s own loop: Watcher.watch_file for FILE, features.follow.follow for a repository."""
    if isinstance(watching.source, Target):
        follow(watcher, watching.source, watching.interval, watching.poll, watching.jitter)
    else:
        watcher.watch_file(watching.source, watching.interval, watching.debounce)


def start_watch(agent: Agent, watching: Watching) -> tuple[Watcher, threading.Thread]:
    """`conduit watch` in a thread of the agent: the same loop, the same apply lock (an API apply
    meanwhile is refused, 409), its applies through conduit.engine's intents, its lines on the event stream."""
    report = lambda line: agent.hub.publish("apply", {"line": line, "by": "watch"})  # noqa: E731
    watcher = Watcher(agent.host, agent.spec.facts, heal=watching.heal, report=report, allow_new_identity=watching.allow_new_identity)
    thread = threading.Thread(target=watch_loop, args=(watcher, watching), name="watch", daemon=True)
    thread.start()
    return watcher, thread


class TrackerHost:
    """The spec's tracker run in this process (conduit.tracker.hosted): every TRACKER_CHECK seconds a
    thread hands it the spec the agent serves, and it takes over or lets go as that spec and the
    cluster's pidfile say. Where systemd is PID 1 the tracker stays its own unit: no thread."""

    def __init__(self, agent: Agent):
        self.agent, self.tracker = agent, HostedTracker(agent.host.state_dir)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if systemd_is_init():
            return
        self.thread = threading.Thread(target=self._supervise, name="tracker-host", daemon=True)
        self.thread.start()

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tracker.check(self.agent.spec.latest())
            except Exception as exc:  # noqa: BLE001 - the supervisor outlives any one bad check (a state directory that cannot be written, …): said in one line, tried again
                log.warning("tracker.host_failed", error=getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}")
            self.stopping.wait(TRACKER_CHECK)
        self.tracker.stop()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join()


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


def run(agent: Agent, listen: str, port: int, tls: tuple[str | None, str | None], proxies: frozenset[str] = frozenset(),
        watching: Watching | None = None) -> None:  # fmt: skip
    """Start the built agent's threads, serve until SIGTERM or SIGINT, then stop them."""
    # The app and its server settings first: one that cannot be made leaves no thread (or tcpdump) behind.
    # proxy_headers off: uvicorn's own would believe X-Forwarded-For from any local process; the Guard reads it.
    config = uvicorn.Config(create_app(agent, proxies), host=listen.strip("[]"), port=port, ssl_certfile=tls[0], ssl_keyfile=tls[1],
                            log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="off",
                            proxy_headers=False, server_header=False,
                            # The plain event loop and HTTP parser, no WebSocket: nothing uvloop, httptools or websockets would load.
                            loop="asyncio", http="h11", ws="none")  # fmt: skip
    agent.observer.start()
    watch = start_watch(agent, watching) if watching else None
    tracker = TrackerHost(agent) if watching else None
    if tracker:
        tracker.start()
    log.info("serve.listening", address=listen, port=port, tls=bool(tls[0]), git_follow=agent.git_follow, watch=bool(watch))
    try:
        _Server(config, agent.hub).run()
    finally:
        agent.observer.stop()
        if watch:  # as `conduit watch` on SIGTERM: the reconcile under way finishes first
            watch[0].stop()
            watch[1].join()
        if tracker:
            tracker.stop()
