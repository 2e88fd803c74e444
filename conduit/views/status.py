"""`conduit status` as machines read it (the Prometheus text format, JSON) and what its table and
the agent share: a node's one-word state, the generation line, the flags noted under the table.

The figures come from conduit.features.status.collect; nothing here reads the host.
"""

from __future__ import annotations

import json


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


# A row flag, the line that names the nodes it holds for, and its style.
NODE_NOTES = (
    ("suspicious", "SUSPICIOUS: {names} planted a link or a special file in the volume (conduit status --json says where): "
     "it may be compromised; inspect the volume, then restore its key from a backup", "bold red"),
    ("upgrade_required", "UPGRADE REQUIRED: {names} logged that the network needs a newer Conduit; update containers.image", "bold red"),
    ("dead", "dead: {names}: conduit-monitor runs, its conduit keeps exiting (docker logs NAME)", "red"),
    ("throttled", "throttled by conduit-monitor (data cap): {names}", "yellow"),
    ("stats_stale", "stale stats file (from an earlier run): {names}", "yellow"),
)


def generation_line(g: dict) -> str:
    """The generation the host runs and the last one, as status shows them: after a failed apply the
    host runs an earlier generation, that one first, the failure after."""
    commit = f" at {g['git_commit'][:10]}" if g.get("git_commit") else ""
    gen, outcome = g.get("id", "?"), g.get("outcome", "?")  # an older agent's summary may lack one
    runs = f"generation {g['running']} running; " if g.get("running") not in (None, gen) else ""
    last = f"{gen} {outcome}" if runs else f"generation {gen} {outcome}"
    return f"{runs}{last}{commit}" + (f": {g['reason']}" if g.get("reason") else "")


def limit_drift(r: dict, key: str) -> bool:
    """The container runs with another CPU or memory limit than the spec says (0 or None: no limit)."""
    seen = r.get(f"{key}_seen")
    return seen is not None and abs((seen or 0) - (r[key] or 0)) > 0.0005


def _metric(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> list[str]:
    """One metric family in the Prometheus text format."""
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        number = str(value) if isinstance(value, int) else f"{value:.17g}"  # byte counts need every digit
        out.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")
    return out


# Per-node flags: metric name, help, the row field that is 1 when true.
_NODE_FLAGS = (
    ("conduit_cluster_node_announced", "1 once the node has announced to the broker in its current run.", "announced"),
    ("conduit_cluster_node_throttled", "1 when conduit-monitor holds the node at its data-cap throttle.", "throttled"),
    ("conduit_cluster_node_dead", "1 when the container runs conduit-monitor but no conduit serves.", "dead"),
    ("conduit_cluster_node_upgrade_required", "1 when the node logged that the network requires a newer Conduit.", "upgrade_required"),
    ("conduit_cluster_node_suspicious", "1 when the node planted a link or a special file in its volume.", "suspicious"),
)


def _node_metrics(cluster: dict, rows: list[dict]) -> list[str]:
    def node(r: dict) -> dict:
        return {**cluster, "node": r["name"]}

    def known(field: str) -> list[tuple[dict, float]]:
        return [(node(r), r[field]) for r in rows if r[field] is not None]

    out = _metric("conduit_cluster_node_up", "gauge", "1 when the node runs and its metrics answer.", [(node(r), 1 if r["up"] else 0) for r in rows])
    out += _metric("conduit_cluster_connected_clients", "gauge", "Clients connected, per node.", [(node(r), r["connected"]) for r in rows])
    out += _metric("conduit_cluster_connecting_clients", "gauge", "Clients connecting, per node.", [(node(r), r["connecting"]) for r in rows])
    out += _metric("conduit_cluster_bytes_uploaded", "gauge", "Bytes uploaded by the node's current run (0 again after a restart).", [(node(r), r["bytes_up"]) for r in rows])
    out += _metric("conduit_cluster_bytes_downloaded", "gauge", "Bytes downloaded by the node's current run (0 again after a restart).", [(node(r), r["bytes_down"]) for r in rows])
    out += _metric("conduit_cluster_node_bytes_uploaded_total", "counter", "Bytes uploaded over the node's lifetime, across restarts.", known("lifetime_bytes_up"))
    out += _metric("conduit_cluster_node_bytes_downloaded_total", "counter", "Bytes downloaded over the node's lifetime, across restarts.", known("lifetime_bytes_down"))
    for name, help_text, field in _NODE_FLAGS:
        out += _metric(name, "gauge", help_text, [(node(r), 1 if r[field] else 0) for r in rows])
    out += _metric("conduit_cluster_restarts_total", "counter", "Container restarts, per node.", known("restarts"))
    return out


def render_prometheus(data: dict) -> str:
    """The cluster's figures in one scrape: per node, per country, and totals."""
    cluster = {"cluster": data["cluster"]}
    out = _node_metrics(cluster, data["containers"])
    out += _metric("conduit_cluster_total_connected_clients", "gauge", "Clients connected, whole cluster.", [(cluster, data["totals"]["connected"])])
    out += _metric("conduit_cluster_country_clients", "gauge", "Clients per country (latest tracker sample).", [({**cluster, "region": c["region"]}, c["clients"]) for c in data["countries"]])
    if "drift" in data:
        out += _metric("conduit_cluster_drift", "gauge", "Resources changed by hand since the last apply.", [(cluster, len(data["drift"]))])
    return "\n".join(out) + "\n"


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
