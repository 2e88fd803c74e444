"""The cluster at a glance: nodes, clients, limits, the front, countries, generation, drift.

Docker is asked the same few things whatever the number of nodes: the list of its containers
(names, states, images; the drift check reads the same list) and one read of its recent events;
each node's inspect answer (restarts, start time, command, limits, log file), and the drift
check's image inspect and volume list, are the ones kept from an earlier look unless the events
say they may have moved (conduit.drivers.inspected: exact, or asked again). The log of each node's
current run (the newer-version warning, a 1.x start line) is read from Docker's own
json-file named in that answer, or asked of Docker when it is not readable here. CPU and
memory use come from the nodes' cgroups (read by conduit.facts.cgroup), sampled over the
looking, and the client counts from their metrics (or a fresh 1.x stats file), all nodes read
at once with a short timeout so one slow or dead node does not hold up the rest. Byte counts
are kept as lifetime totals per node in the state DB (lifetime.py).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path

from conduit.log import logger
from conduit.drivers.files import read_or_none
from conduit.execute import nodehealth
from conduit.facts import cgroup, metrics, nodelog
from conduit.errors import HostileEntry
from conduit.drivers import inspected
from conduit.drivers.docker import call
from conduit.facts.lifetime import ByteReading
from conduit.execute.nodehealth import Reading, Verdict
from conduit.drivers.node import read_stats
from conduit.drivers.nginx import front_load
from conduit.drivers.observe import HostAccess
from conduit.engine.intent import Apply
from conduit.engine.observe import plan_on_host
from conduit.state.db import StateError
from conduit.state.holds import Holds
from conduit.state.history import running
from conduit.features.budget import budget_status, zone_of
from conduit.state.stores import Stores, read_state
from conduit.render.container import CLUSTER, MANAGED_BY, MANAGER
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec
from conduit.features.watch_record import read_watch_status, watcher_running

MAX_WORKERS = 64
SCRAPE_TIMEOUT = 1.0
log = logger("conduit.status")


def _cgroup_dirs(container_id: str) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return [base / sub / group for group in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope") for sub in ("", "memory", "cpuacct", "cpu,cpuacct")]


def cgroup_usage(container_id: str) -> tuple[int | None, int | None]:
    """(memory bytes in use, CPU nanoseconds used so far) from the container's cgroup."""
    memory = cpu = None
    for d in _cgroup_dirs(container_id):
        if not memory:
            memory = cgroup.integer(read_or_none(d / "memory.current")) or cgroup.integer(read_or_none(d / "memory.usage_in_bytes"))
        if not cpu:
            cpu = cgroup.integer(read_or_none(d / "cpuacct.usage")) or cpu
            stat = read_or_none(d / "cpu.stat") if cpu is None else None
            usage = cgroup.cpu_stat_usage_ns(stat) if stat else None
            cpu = cpu if usage is None else usage
        if memory and cpu:
            break  # the other directories are the other cgroup layouts: nothing there to read
    return memory, cpu


def _up(port: int) -> bool:
    from conduit.execute.gates import listening  # a front's check: status without one loads no executor

    return listening(port) is None


@dataclass
class NodeLook:
    """One node as status sees it: the container's own signals, the stats file when it has no metrics."""

    reading: Reading
    verdict: Verdict | None = None
    samples: dict = field(default_factory=dict)
    stats_stale: bool = False
    upgrade_required: bool = False
    hostile: HostileEntry | None = None  # planted in its volume where status reads: reported, never followed
    limits: tuple[float | None, int | None] = (None, None)  # CPUs and memory the container runs with (0: none)


def look_at(client, node, entry: dict | None, info: dict | None) -> NodeLook:
    """One node from its list entry and its inspect answer (None: Docker did not give it)."""
    if client is None or entry is None:
        return NodeLook(Reading("missing"))
    if info is None:
        return NodeLook(Reading(entry.get("State", "unknown")))
    shape, reading = nodehealth.observe(client, node.name, node.metrics_port, info=info, with_log=True, scrape_timeout=SCRAPE_TIMEOUT)
    look = NodeLook(reading, nodehealth.judge(node.name, node.max_clients, node.metrics_port, shape, reading))
    host_config = info.get("HostConfig") or {}
    look.limits = (round((host_config.get("NanoCpus") or 0) / 1e9, 3), host_config.get("Memory") or 0)
    look.upgrade_required = nodelog.upgrade_required(reading.log)
    look.hostile = reading.hostile
    if reading.samples is not None:
        look.samples = reading.samples
    elif reading.running:
        try:
            look.samples, look.stats_stale = read_stats(nodehealth.volume_folder(info), reading.started_at, node.name)
        except HostileEntry as exc:
            look.hostile = nodehealth.planted(exc)
    return look


def _row(node, entry: dict | None, look: NodeLook, cpu: float | None, memory: int | None) -> dict:
    samples = look.samples
    value = lambda metric: metrics.value(samples, metric)  # noqa: E731
    state = entry.get("State") if entry else "missing"
    verdict = look.verdict
    return {
        "name": node.name,
        "index": node.index,
        "state": state,
        "up": state == "running" and bool(samples),
        "connected": int(value("conduit_connected_clients") or 0),
        "connecting": int(value("conduit_connecting_clients") or 0),
        "max_clients": node.max_clients,
        "max_clients_seen": metrics.max_clients(samples),
        "bytes_up": int(value("conduit_bytes_uploaded") or 0),
        "bytes_down": int(value("conduit_bytes_downloaded") or 0),
        "announced": metrics.announced(samples),
        "throttled": bool(verdict and verdict.throttled),
        "dead": bool(verdict and verdict.dead),
        "upgrade_required": look.upgrade_required,
        "stats_stale": look.stats_stale,
        "suspicious": look.hostile is not None,
        "planted": str(look.hostile) if look.hostile else None,
        "cpu": cpu,
        "cpu_limit": node.cpus,
        "cpu_limit_seen": look.limits[0],
        "memory": memory,
        "memory_limit": node.memory,
        "memory_limit_seen": look.limits[1],
        "restarts": look.reading.restarts,
        "uptime": _uptime(samples),
        "image": entry.get("Image") if entry else None,
        "image_id": entry.get("ImageID") if entry else None,
        "regions": metrics.regions(samples),
    }


def _uptime(samples: dict) -> float | None:
    return metrics.value(samples, "conduit_uptime_seconds")


def add_lifetime(state: Stores | None, rows: list[dict], looks: dict[str, NodeLook]) -> None:
    """Each row's lifetime bytes: the state DB adds this reading to what it has seen (None without one)."""
    totals: dict[str, tuple[int, int]] = {}
    if state is not None:
        readings = {r["name"]: ByteReading(r["bytes_up"], r["bytes_down"], _uptime(looks[r["name"]].samples)) for r in rows if r["up"]}
        try:
            totals = state.lifetime.totals() | state.lifetime.add_readings(time.time(), readings)
        except StateError as exc:
            log.warning("status.lifetime_bytes", error=str(exc))
    for row in rows:
        up, down = totals.get(row["name"], (None, None))
        row["lifetime_bytes_up"], row["lifetime_bytes_down"] = up, down


def _listed(client, cluster: str, drift: bool) -> list[dict]:
    """The containers the look needs: every one Docker has when the drift check reads them too (it sees
    other clusters and foreign names), else the cluster's own."""
    if client is None:
        return []
    return call(client, client.api.containers, all=True, filters=None if drift else {"label": f"{CLUSTER}={cluster}"})


def _entries(listed: list[dict], cluster: str) -> dict[str, dict]:
    """The cluster's own containers by name."""
    entries = {}
    for entry in listed:
        labels = entry.get("Labels") or {}
        if labels.get(CLUSTER) == cluster and labels.get(MANAGED_BY) == MANAGER:
            entries[entry["Names"][0].lstrip("/")] = entry
    return entries


def _cpu_usage(entries: dict[str, dict]) -> dict[str, tuple[int | None, int | None]]:
    return {name: cgroup_usage(e["Id"]) for name, e in entries.items()}


def _node_rows(spec: ClusterSpec, client, listed: list[dict], state: Stores | None, seen: inspected.Look | None) -> tuple[list[dict], dict]:
    """The nodes' rows, and the inspect answers by container ID to keep for the next look."""
    wanted = {n.name: n for n in nodes(spec)}
    entries = _entries(listed, spec.metadata.name)
    began, before = time.monotonic(), _cpu_usage(entries)
    # by container ID, as Docker's events name them and as they are kept (conduit.drivers.inspected)
    infos = inspected.infos(seen, {e["Id"]: e for e in entries.values()}) if seen is not None else {}

    def look(node) -> NodeLook:
        entry = entries.get(node.name)
        return look_at(client, node, entry, infos.get(entry["Id"]) if entry else None)

    with ThreadPoolExecutor(max(1, min(MAX_WORKERS, len(wanted)))) as pool:
        looks = dict(zip(wanted, pool.map(look, wanted.values())))
    # The CPU use is measured over the looking itself (the cgroups count in nanoseconds): no wait.
    elapsed, after = time.monotonic() - began, _cpu_usage(entries)
    rows = []
    for name, node in wanted.items():
        cpu = None
        if name in entries and before[name][1] is not None and after[name][1] is not None and elapsed > 0:
            cpu = round((after[name][1] - before[name][1]) / (elapsed * 1e9), 3)
        rows.append(_row(node, entries.get(name), looks[name], cpu, after.get(name, (None, None))[0]))
    add_lifetime(state, rows, looks)
    add_images(state, rows)
    return rows, infos


def add_images(state: Stores | None, rows: list[dict]) -> None:
    """Each row's registry digest and version, and since when it runs them, as the last good apply recorded."""
    try:
        recorded = state.images.of_nodes() if state is not None else {}
    except StateError as exc:
        log.warning("status.node_images", error=str(exc))
        recorded = {}
    for row in rows:
        known = recorded.get(row["name"])
        same = known is not None and known.image_id == row["image_id"]
        row["digest"] = known.digest if same else None
        row["version"] = known.version if same else None
        row["image_since"] = known.since if same else None


def _totals(rows: list[dict]) -> dict:
    lifetime = lambda key: sum(r[key] for r in rows if r[key] is not None)  # noqa: E731
    return {
        "containers": len(rows),
        "running": sum(1 for r in rows if r["state"] == "running"),
        "up": sum(1 for r in rows if r["up"]),
        "connected": sum(r["connected"] for r in rows),
        "connecting": sum(r["connecting"] for r in rows),
        "bytes_up": sum(r["bytes_up"] for r in rows),
        "bytes_down": sum(r["bytes_down"] for r in rows),
        "lifetime_bytes_up": lifetime("lifetime_bytes_up"),
        "lifetime_bytes_down": lifetime("lifetime_bytes_down"),
    }


def _front(spec: ClusterSpec) -> list[dict] | None:
    s = spec.spec
    if not s.loadbalancer.enabled:
        return None
    front = []
    for listener in s.loadbalancer.listeners:
        backends = []
        if listener.protocol == "tcp" and s.network.backends == "published" and listener.host_port_base:
            backends = [_up(listener.host_port_base + n.index - 1) for n in nodes(spec)]
        front.append(
            {
                "listener": listener.name,
                "port": f"{listener.port}/{listener.protocol}",
                "listening": _up(listener.port) if listener.protocol == "tcp" else None,
                "backends_up": sum(backends) if backends else None,
                "backends": len(backends) or None,
            }
        )
    return front


def _countries(state: Stores | None, rows: list[dict]) -> list[dict]:
    # Per-country data: the nodes' own (2.x region metrics, or the --geo list of a stats file)
    # wins; the tracker's latest sample (a capture, for nodes without either) fills the rest.
    countries = dict(state.samples.latest()) if state else {}
    own: dict[str, list[int]] = {}
    for row in rows:
        for region, figures in row["regions"].items():
            entry = own.setdefault(region, [0, 0, 0])
            entry[0] += int(figures["connected"])
            entry[1] += int(figures["bytes_up"])
            entry[2] += int(figures["bytes_down"])
    countries.update({region: tuple(v) for region, v in own.items()})
    return [
        {"region": region, "clients": c, "bytes_up": up, "bytes_down": down}
        for region, (c, up, down) in sorted(countries.items(), key=lambda kv: (-kv[1][0], kv[0]))
    ]


def collect(spec: ClusterSpec, host: HostAccess, drift: bool = True) -> dict:
    client = host.docker()
    state = read_state(host.state_dir)
    listed = _listed(client, spec.metadata.name, drift)
    # one events call: which kept answers (each node's inspect, the drift check's reads) still hold
    seen = inspected.look(client, host.state_dir / f"inspected-{spec.metadata.name}.json") if client is not None else None
    rows, infos = _node_rows(spec, client, listed, state, seen)
    generations = state.history.generations(spec.metadata.name) if state else []
    current = generations[-1] if generations else None
    result = {
        "cluster": spec.metadata.name,
        "containers": rows,
        "totals": _totals(rows),
        "front": _front(spec),
        "front_capacity": front_load(spec, host.root) if spec.spec.loadbalancer.enabled else None,
        "countries": _countries(state, rows),
        "generation": None
        if current is None
        else {"id": current.id, "outcome": current.outcome, "git_commit": current.git_commit, "reason": current.reason,
              # after a failed apply that was rolled back, the host runs an earlier generation: which one
              "running": (good := running(generations)) and good.id if current.outcome == "rolled_back" else None},
        "watch": _watch_status(host.state_dir),
        "api_calls": client.calls if client else 0,
        "held": {node: hold.line() for node, hold in Holds(host.state_dir).current().items()},
        "budget": _budget(spec, host, state),
    }
    kept = seen.answers() if seen is not None else {}
    if drift:
        # the registry as last asked, if recently; the containers as listed above; the image and
        # volumes as kept while no event since can have changed them (asked, and kept, otherwise)
        plan, _ = plan_on_host(Apply(registry="due"), spec, host, listed, kept)
        result["drift"] = [f"{s.kind} {s.id}" for s in plan.changes if s.reason == "drift"]
        result["pending"] = len(plan.changes)
        result["api_calls"] += plan.api_calls
    if seen is not None:
        seen.keep(infos, kept)
    return result


def _budget(spec: ClusterSpec, host: HostAccess, state: Stores | None) -> dict | None:
    if spec.spec.budget is None:
        return None
    try:
        totals = state.lifetime.totals() if state else {}
    except StateError:
        totals = {}
    return budget_status(host.state_dir, spec.spec.budget, totals, datetime.now(zone_of(spec)))


def _watch_status(state_dir: Path) -> dict | None:
    """The watcher's record, and whether the process that wrote it still runs (its error may be from long ago)."""
    status = read_watch_status(state_dir)
    if status is not None:
        status["running"] = watcher_running(status)
    return status
