"""The cluster at a glance: nodes, clients, limits, the front, countries, generation, drift.

Docker is asked once for the list and once per node for its restart count; CPU and
memory use come from the nodes' cgroups and the client counts from their metrics, all
read concurrently so one slow or dead node does not hold up the rest.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker.errors

from conduit.reconciler.files import read_or_none
from conduit.reconciler.gates import listening
from conduit.reconciler import metrics
from conduit.reconciler.drivers.docker import CountingClient, call
from conduit.reconciler.observe import HostAccess, plan_against_host
from conduit.reconciler.state import State
from conduit.renderers.container import CLUSTER, MANAGED_BY, MANAGER
from conduit.schemas.resolve import nodes
from conduit.schemas.spec import ClusterSpec

WORKERS = 16
CPU_SAMPLE_SECONDS = 0.5



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


def collect(doc: ClusterSpec, host: HostAccess, drift: bool = True) -> dict:
    client = host.docker()
    spec = doc.spec
    wanted = {n.name: n for n in nodes(doc)}
    entries = {}
    if client is not None:
        for entry in call(client, client.api.containers, all=True, filters={"label": f"{CLUSTER}={doc.metadata.name}"}):
            if (entry.get("Labels") or {}).get(MANAGED_BY) == MANAGER:
                entries[entry["Names"][0].lstrip("/")] = entry

    def restarts(entry: dict) -> int | None:
        try:
            return client.api.inspect_container(entry["Id"])["RestartCount"]
        except docker.errors.DockerException:
            return None

    with ThreadPoolExecutor(WORKERS) as pool:
        scraped = dict(zip(wanted, pool.map(lambda n: metrics.scrape(n.metrics_port), wanted.values())))
        restart_counts = dict(zip(entries, pool.map(restarts, entries.values()))) if client else {}
    before = {name: cgroup_usage(e["Id"]) for name, e in entries.items()}
    time.sleep(CPU_SAMPLE_SECONDS)
    after = {name: cgroup_usage(e["Id"]) for name, e in entries.items()}

    rows = []
    for name, node in wanted.items():
        entry = entries.get(name)
        samples = scraped.get(name) or (stats_file_samples(client, node.volume) if entry and client else {})
        value = lambda metric: metrics.value(samples, metric)  # noqa: E731
        cpu = None
        if entry and before[name][1] is not None and after[name][1] is not None:
            cpu = round((after[name][1] - before[name][1]) / (CPU_SAMPLE_SECONDS * 1e9), 3)
        state = entry.get("State") if entry else "missing"
        rows.append(
            {
                "name": name,
                "index": node.index,
                "state": state,
                "up": state == "running" and bool(samples),
                "connected": int(value("conduit_connected_clients") or 0),
                "connecting": int(value("conduit_connecting_clients") or 0),
                "max_clients": node.max_clients,
                "bytes_up": int(value("conduit_bytes_uploaded") or 0),
                "bytes_down": int(value("conduit_bytes_downloaded") or 0),
                "live": bool(value("conduit_is_live")),
                "cpu": cpu,
                "cpu_limit": node.cpus,
                "memory": after.get(name, (None, None))[0],
                "memory_limit": node.memory,
                "restarts": restart_counts.get(name),
                "regions": metrics.regions(samples),
            }
        )
    totals = {
        "containers": len(rows),
        "running": sum(1 for r in rows if r["state"] == "running"),
        "up": sum(1 for r in rows if r["up"]),
        "connected": sum(r["connected"] for r in rows),
        "connecting": sum(r["connecting"] for r in rows),
        "bytes_up": sum(r["bytes_up"] for r in rows),
        "bytes_down": sum(r["bytes_down"] for r in rows),
    }
    front = None
    if spec.loadbalancer.enabled:
        front = []
        for listener in spec.loadbalancer.listeners:
            backends = []
            if listener.protocol == "tcp" and spec.network.backends == "published" and listener.host_port_base:
                backends = [_up(listener.host_port_base + n.index - 1) for n in wanted.values()]
            front.append(
                {
                    "listener": listener.name,
                    "port": f"{listener.port}/{listener.protocol}",
                    "listening": _up(listener.port) if listener.protocol == "tcp" else None,
                    "backends_up": sum(backends) if backends else None,
                    "backends": len(backends) or None,
                }
            )
    state = State(host.state_dir) if (host.state_dir / "state.db").exists() else None
    generations = state.generations() if state else []
    current = generations[-1] if generations else None
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
    result = {
        "cluster": doc.metadata.name,
        "containers": rows,
        "totals": totals,
        "front": front,
        "countries": [
            {"region": region, "clients": c, "bytes_up": up, "bytes_down": down}
            for region, (c, up, down) in sorted(countries.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ],
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


def stats_file_samples(client: CountingClient, volume: str) -> dict:
    """A 1.x node without metrics: its stats.json (written with --stats-file), read from the volume."""
    try:
        folder = Path(client.api.inspect_volume(volume)["Mountpoint"])
        stats = json.loads((folder / "stats.json").read_text())
    except (docker.errors.DockerException, OSError, ValueError):
        return {}
    fields = {
        "conduit_connected_clients": "connectedClients",
        "conduit_connecting_clients": "connectingClients",
        "conduit_bytes_uploaded": "totalBytesUp",
        "conduit_bytes_downloaded": "totalBytesDown",
        "conduit_is_live": "isLive",
    }
    samples = {(metric, ()): float(stats.get(key) or 0) for metric, key in fields.items()}
    # The community build's --geo list: clients and bytes per country (RELAY: a TURN relay, place unknown).
    for entry in stats.get("geo") or []:
        if not isinstance(entry, dict):
            continue
        labels = (("region", "ZZ" if entry.get("code") == "RELAY" else str(entry.get("code") or "ZZ")), ("scope", "common"))
        for metric, key in (
            ("conduit_region_connected_clients", "count"),
            ("conduit_region_bytes_uploaded", "bytes_up"),
            ("conduit_region_bytes_downloaded", "bytes_down"),
        ):
            samples[(metric, labels)] = samples.get((metric, labels), 0.0) + float(entry.get(key) or 0)
    return samples


def _watch_status(state_dir: Path) -> dict | None:
    from conduit.reconciler.watch import read_watch_status

    return read_watch_status(state_dir)


# ------------------------------------------------------------------ output


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.0f}M"


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
        state = r["state"] if r["up"] or r["state"] != "running" else "no metrics"
        style = "green" if r["up"] else "red"
        cpu = "-" if r["cpu"] is None else f"{r['cpu']:.2f}/{r['cpu_limit']:g}"
        table.add_row(
            r["name"], Text(state, style=style), f"{r['connected']}+{r['connecting']}", str(r["max_clients"]), cpu,
            f"{_mib(r['memory'])}/{_mib(r['memory_limit'])}", "-" if r["restarts"] is None else str(r["restarts"]),
        )
    lines = [table]
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
            out.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    cluster = {"cluster": data["cluster"]}
    rows = data["containers"]
    metric("conduit_cluster_node_up", "gauge", "1 when the node runs and its metrics answer.", [({**cluster, "node": r["name"]}, 1 if r["up"] else 0) for r in rows])
    metric("conduit_cluster_connected_clients", "gauge", "Clients connected, per node.", [({**cluster, "node": r["name"]}, r["connected"]) for r in rows])
    metric("conduit_cluster_connecting_clients", "gauge", "Clients connecting, per node.", [({**cluster, "node": r["name"]}, r["connecting"]) for r in rows])
    metric("conduit_cluster_bytes_uploaded", "counter", "Bytes uploaded, per node.", [({**cluster, "node": r["name"]}, r["bytes_up"]) for r in rows])
    metric("conduit_cluster_bytes_downloaded", "counter", "Bytes downloaded, per node.", [({**cluster, "node": r["name"]}, r["bytes_down"]) for r in rows])
    metric("conduit_cluster_restarts", "counter", "Container restarts, per node.", [({**cluster, "node": r["name"]}, r["restarts"]) for r in rows if r["restarts"] is not None])
    metric("conduit_cluster_connected_clients_total", "gauge", "Clients connected, whole cluster.", [(cluster, data["totals"]["connected"])])
    metric("conduit_cluster_country_clients", "gauge", "Clients per country (latest tracker sample).", [({**cluster, "region": c["region"]}, c["clients"]) for c in data["countries"]])
    if "drift" in data:
        metric("conduit_cluster_drift", "gauge", "Resources changed by hand since the last apply.", [(cluster, len(data["drift"]))])
    return "\n".join(out) + "\n"


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
