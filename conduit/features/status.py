"""The cluster at a glance: nodes, clients, limits, the front, countries, generation, drift.

Docker is asked once for the list and, per node, for its container (restarts, command,
start time) and the log of its current run (the newer-version warning); CPU and memory use
come from the nodes' cgroups and the client counts from their metrics (or a fresh 1.x stats
file), all read concurrently so one slow or dead node does not hold up the rest. Byte
counts are kept as lifetime totals per node in the state DB (lifetime.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import structlog

from conduit.drivers.files import read_or_none
from conduit.engine.gates import listening
from conduit.engine import nodehealth
from conduit.facts import metrics, nodelog
from conduit.drivers.docker import call
from conduit.facts.lifetime import ByteReading
from conduit.engine.nodehealth import Reading, Verdict
from conduit.facts.statsfile import read_stats
from conduit.drivers.observe import HostAccess
from conduit.engine.planning import plan_against_host
from conduit.state.store import State
from conduit.render.container import CLUSTER, MANAGED_BY, MANAGER
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec

WORKERS = 16
CPU_SAMPLE_SECONDS = 0.5
log = structlog.get_logger("conduit.status")


def _cgroup_dirs(container_id: str) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return [base / sub / group for group in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope") for sub in ("", "memory", "cpuacct", "cpu,cpuacct")]


def cgroup_usage(container_id: str) -> tuple[int | None, int | None]:
    """(memory bytes in use, CPU nanoseconds used so far) from the container's cgroup."""
    memory = cpu = None
    for d in _cgroup_dirs(container_id):
        memory = memory or _int(read_or_none(d / "memory.current")) or _int(read_or_none(d / "memory.usage_in_bytes"))
        cpu = cpu or _int(read_or_none(d / "cpuacct.usage"))
        stat = read_or_none(d / "cpu.stat")
        if cpu is None and stat:
            for line in stat.splitlines():
                if line.startswith("usage_usec "):
                    cpu = int(line.split()[1]) * 1000
    return memory, cpu


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _up(port: int) -> bool:
    return listening(port) is None


@dataclass
class NodeLook:
    """One node as status sees it: the container's own signals, the stats file when it has no metrics."""

    reading: Reading
    verdict: Verdict | None = None
    samples: dict = field(default_factory=dict)
    stats_stale: bool = False
    upgrade_required: bool = False


def look_at(client, node, entry: dict | None) -> NodeLook:
    if client is None or entry is None:
        return NodeLook(Reading("missing"))
    try:
        info = client.api.inspect_container(entry["Id"])
    except docker.errors.DockerException:
        return NodeLook(Reading(entry.get("State", "unknown")))
    shape, reading = nodehealth.observe(client, node.name, node.metrics_port, info=info, with_log=True)
    look = NodeLook(reading, nodehealth.judge(node.name, node.max_clients, node.metrics_port, shape, reading))
    look.upgrade_required = nodelog.upgrade_required(reading.log)
    if reading.samples is not None:
        look.samples = reading.samples
    elif reading.running:
        look.samples, look.stats_stale = read_stats(nodehealth.volume_folder(info), reading.started_at)
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
        "cpu": cpu,
        "cpu_limit": node.cpus,
        "memory": memory,
        "memory_limit": node.memory,
        "restarts": look.reading.restarts,
        "regions": metrics.regions(samples),
    }


def _uptime(samples: dict) -> float | None:
    return metrics.value(samples, "conduit_uptime_seconds")


def add_lifetime(state: State | None, rows: list[dict], looks: dict[str, NodeLook]) -> None:
    """Each row's lifetime bytes: the state DB adds this reading to what it has seen (None without one)."""
    totals: dict[str, tuple[int, int]] = {}
    if state is not None:
        readings = {r["name"]: ByteReading(r["bytes_up"], r["bytes_down"], _uptime(looks[r["name"]].samples)) for r in rows if r["up"]}
        try:
            totals = state.byte_totals() | state.add_byte_readings(time.time(), readings)
        except sqlite3.Error as exc:
            log.warning("status.lifetime_bytes", error=str(exc))
    for row in rows:
        up, down = totals.get(row["name"], (None, None))
        row["lifetime_bytes_up"], row["lifetime_bytes_down"] = up, down


def _entries(client, cluster: str) -> dict[str, dict]:
    entries = {}
    if client is not None:
        for entry in call(client, client.api.containers, all=True, filters={"label": f"{CLUSTER}={cluster}"}):
            if (entry.get("Labels") or {}).get(MANAGED_BY) == MANAGER:
                entries[entry["Names"][0].lstrip("/")] = entry
    return entries


def _node_rows(doc: ClusterSpec, client, state: State | None) -> list[dict]:
    wanted = {n.name: n for n in nodes(doc)}
    entries = _entries(client, doc.metadata.name)
    with ThreadPoolExecutor(WORKERS) as pool:
        looks = dict(zip(wanted, pool.map(lambda n: look_at(client, n, entries.get(n.name)), wanted.values())))
    before = {name: cgroup_usage(e["Id"]) for name, e in entries.items()}
    time.sleep(CPU_SAMPLE_SECONDS)
    after = {name: cgroup_usage(e["Id"]) for name, e in entries.items()}
    rows = []
    for name, node in wanted.items():
        cpu = None
        if name in entries and before[name][1] is not None and after[name][1] is not None:
            cpu = round((after[name][1] - before[name][1]) / (CPU_SAMPLE_SECONDS * 1e9), 3)
        rows.append(_row(node, entries.get(name), looks[name], cpu, after.get(name, (None, None))[0]))
    add_lifetime(state, rows, looks)
    return rows


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


def _front(doc: ClusterSpec) -> list[dict] | None:
    spec = doc.spec
    if not spec.loadbalancer.enabled:
        return None
    front = []
    for listener in spec.loadbalancer.listeners:
        backends = []
        if listener.protocol == "tcp" and spec.network.backends == "published" and listener.host_port_base:
            backends = [_up(listener.host_port_base + n.index - 1) for n in nodes(doc)]
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


def _countries(state: State | None, rows: list[dict]) -> list[dict]:
    # Per-country data: the nodes' own (2.x region metrics, or the --geo list of a stats file)
    # wins; the tracker's latest sample (a capture, for nodes without either) fills the rest.
    countries = dict(state.latest_samples()) if state else {}
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


def collect(doc: ClusterSpec, host: HostAccess, drift: bool = True) -> dict:
    client = host.docker()
    state = State(host.state_dir) if (host.state_dir / "state.db").exists() else None
    rows = _node_rows(doc, client, state)
    generations = state.generations() if state else []
    current = generations[-1] if generations else None
    result = {
        "cluster": doc.metadata.name,
        "containers": rows,
        "totals": _totals(rows),
        "front": _front(doc),
        "countries": _countries(state, rows),
        "generation": None
        if current is None
        else {"id": current.id, "outcome": current.outcome, "git_commit": current.git_commit, "reason": current.reason},
        "watch": _watch_status(host.state_dir),
        "api_calls": client.calls if client else 0,
    }
    if drift:
        plan = plan_against_host(doc, host)
        result["drift"] = [f"{s.kind} {s.id}" for s in plan.changes if s.reason == "drift"]
        result["pending"] = len(plan.changes)
        result["api_calls"] += plan.api_calls
    return result


def _watch_status(state_dir: Path) -> dict | None:
    from conduit.features.watch import read_watch_status

    return read_watch_status(state_dir)


# ------------------------------------------------------------------ output


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.0f}M"


def node_state(r: dict) -> str:
    """One word for a node: Docker's state unless it runs; then what its own signals say."""
    if r["state"] != "running":
        return r["state"]
    if r["dead"]:
        return "dead"
    if not r["up"]:
        return "stale stats" if r["stats_stale"] else "no metrics"
    if r["throttled"]:
        return "throttled"
    return "announced" if r["announced"] else "starting"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _node_notes(data: dict) -> list:
    from rich.text import Text

    rows = data["containers"]
    lines = []
    upgrade = [r["name"] for r in rows if r["upgrade_required"]]
    if upgrade:
        lines.append(Text(f"UPGRADE REQUIRED: {', '.join(upgrade)} logged that the network needs a newer Conduit; update containers.image", style="bold red"))
    dead = [r["name"] for r in rows if r["dead"]]
    if dead:
        lines.append(Text(f"dead: {', '.join(dead)}: conduit-monitor runs, its conduit keeps exiting (docker logs NAME)", style="red"))
    throttled = [r["name"] for r in rows if r["throttled"]]
    if throttled:
        lines.append(Text(f"throttled by conduit-monitor (data cap): {', '.join(throttled)}", style="yellow"))
    stale = [r["name"] for r in rows if r["stats_stale"]]
    if stale:
        lines.append(Text(f"stale stats file (from an earlier run): {', '.join(stale)}", style="yellow"))
    t = data["totals"]
    lines.append(Text(f"traffic this run: up {_bytes(t['bytes_up'])}, down {_bytes(t['bytes_down'])}; "
                      f"lifetime: up {_bytes(t['lifetime_bytes_up'])}, down {_bytes(t['lifetime_bytes_down'])}"))  # fmt: skip
    return lines


def render_text(data: dict):
    """Rich renderables: a table of nodes and a few lines about the rest; fits 80 columns."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = data["totals"]
    table = Table(title=f"{data['cluster']}: {t['running']}/{t['containers']} running, {t['connected']} clients connected, {t['connecting']} connecting", title_justify="left", expand=False)
    for column in ("node", "state", "clients", "max", "cpu", "memory", "restarts"):
        table.add_column(column, justify="left" if column in ("node", "state") else "right", no_wrap=True)
    for r in data["containers"]:
        state = node_state(r)
        style = "green" if state == "announced" else "yellow" if state in ("starting", "throttled") else "red"
        cpu = "-" if r["cpu"] is None else f"{r['cpu']:.2f}/{r['cpu_limit']:g}"
        seen = r.get("max_clients_seen")
        limit = str(r["max_clients"]) if seen in (None, r["max_clients"]) else f"{seen}/{r['max_clients']}"
        table.add_row(
            r["name"], Text(state, style=style), f"{r['connected']}+{r['connecting']}", limit, cpu,
            f"{_mib(r['memory'])}/{_mib(r['memory_limit'])}", "-" if r["restarts"] is None else str(r["restarts"]),
        )
    lines = [table, *_node_notes(data)]
    for f in data["front"] or []:
        backends = "" if f["backends"] is None else f", backends {f['backends_up']}/{f['backends']} up"
        heard = "" if f["listening"] is None else (" listening" if f["listening"] else " NOT listening")
        lines.append(Text(f"front {f['listener']} {f['port']}:{heard}{backends}"))
    if data["countries"]:
        top = ", ".join(f"{c['region']} {c['clients']}" for c in data["countries"][:8])
        lines.append(Text(f"countries (clients): {top}"))
    g = data["generation"]
    if g:
        commit = f" at {g['git_commit'][:10]}" if g.get("git_commit") else ""
        lines.append(Text(f"generation {g['id']} {g['outcome']}{commit}" + (f": {g['reason']}" if g.get("reason") else "")))
    if data.get("drift"):
        lines.append(Text(f"drift: {', '.join(data['drift'])}", style="yellow"))
    elif "pending" in data:
        lines.append(Text("no drift" if not data["pending"] else f"{data['pending']} changes pending (conduit plan)"))
    w = data.get("watch")
    if w:
        when = time.strftime("%H:%M:%S", time.localtime(w.get("last_reconcile", 0)))
        error = f"; last error: {w['last_error']}" if w.get("last_error") else ""
        lines.append(Text(f"watch: last reconcile {when} ({w.get('last_result')}){error}"))
    return Group(*lines)


def render_prometheus(data: dict) -> str:
    """The cluster's figures in one scrape: per node, per country, and totals."""
    out = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            number = str(value) if isinstance(value, int) else f"{value:.17g}"  # byte counts need every digit
            out.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")

    cluster = {"cluster": data["cluster"]}
    rows = data["containers"]
    metric("conduit_cluster_node_up", "gauge", "1 when the node runs and its metrics answer.", [({**cluster, "node": r["name"]}, 1 if r["up"] else 0) for r in rows])
    metric("conduit_cluster_connected_clients", "gauge", "Clients connected, per node.", [({**cluster, "node": r["name"]}, r["connected"]) for r in rows])
    metric("conduit_cluster_connecting_clients", "gauge", "Clients connecting, per node.", [({**cluster, "node": r["name"]}, r["connecting"]) for r in rows])
    node = lambda r: {**cluster, "node": r["name"]}  # noqa: E731
    metric("conduit_cluster_bytes_uploaded", "gauge", "Bytes uploaded by the node's current run (0 again after a restart).", [(node(r), r["bytes_up"]) for r in rows])
    metric("conduit_cluster_bytes_downloaded", "gauge", "Bytes downloaded by the node's current run (0 again after a restart).", [(node(r), r["bytes_down"]) for r in rows])
    metric("conduit_cluster_node_bytes_uploaded_total", "counter", "Bytes uploaded over the node's lifetime, across restarts.", [(node(r), r["lifetime_bytes_up"]) for r in rows if r["lifetime_bytes_up"] is not None])
    metric("conduit_cluster_node_bytes_downloaded_total", "counter", "Bytes downloaded over the node's lifetime, across restarts.", [(node(r), r["lifetime_bytes_down"]) for r in rows if r["lifetime_bytes_down"] is not None])
    metric("conduit_cluster_node_announced", "gauge", "1 once the node has announced to the broker in its current run.", [(node(r), 1 if r["announced"] else 0) for r in rows])
    metric("conduit_cluster_node_throttled", "gauge", "1 when conduit-monitor holds the node at its data-cap throttle.", [(node(r), 1 if r["throttled"] else 0) for r in rows])
    metric("conduit_cluster_node_dead", "gauge", "1 when the container runs conduit-monitor but no conduit serves.", [(node(r), 1 if r["dead"] else 0) for r in rows])
    metric("conduit_cluster_node_upgrade_required", "gauge", "1 when the node logged that the network requires a newer Conduit.", [(node(r), 1 if r["upgrade_required"] else 0) for r in rows])
    metric("conduit_cluster_restarts", "counter", "Container restarts, per node.", [({**cluster, "node": r["name"]}, r["restarts"]) for r in rows if r["restarts"] is not None])
    metric("conduit_cluster_connected_clients_total", "gauge", "Clients connected, whole cluster.", [(cluster, data["totals"]["connected"])])
    metric("conduit_cluster_country_clients", "gauge", "Clients per country (latest tracker sample).", [({**cluster, "region": c["region"]}, c["clients"]) for c in data["countries"]])
    if "drift" in data:
        metric("conduit_cluster_drift", "gauge", "Resources changed by hand since the last apply.", [(cluster, len(data["drift"]))])
    return "\n".join(out) + "\n"


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
