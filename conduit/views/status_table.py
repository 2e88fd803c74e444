"""`conduit status` as people read it: a table of nodes and a few lines about the rest (rich
renderables; the agent, which never prints them, does not load rich).

The figures come from conduit.features.status.collect; nothing here reads the host.
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text

from conduit.spec.units import human_size
from conduit.views.status import NODE_NOTES, generation_line, limit_drift, node_state


def _mib(n: int | None) -> str:
    """Memory as the plan prints it (384 MiB, 11.5 GiB), without the space, to keep the column narrow."""
    return "-" if n is None else human_size(n).replace(" ", "")


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _node_notes(data: dict) -> list:
    rows = data["containers"]
    lines = []
    for flag, say, style in NODE_NOTES:
        named = [r["name"] for r in rows if r[flag]]
        if named:
            lines.append(Text(say.format(names=", ".join(named)), style=style))
    lines += _image_lines(rows)
    t = data["totals"]
    lines.append(Text(f"traffic this run: up {_bytes(t['bytes_up'])}, down {_bytes(t['bytes_down'])}; "
                      f"lifetime: up {_bytes(t['lifetime_bytes_up'])}, down {_bytes(t['lifetime_bytes_down'])}"))  # fmt: skip
    return lines


def _state_style(state: str) -> str:
    return "green" if state == "announced" else "yellow" if state in ("starting", "throttled") else "red"


def _cpus(n: float | None) -> str:
    return "none" if not n else f"{n:g}"


def _limit_cell(r: dict, use: str, key: str, show) -> Text:
    """Use against the limit; a running limit other than the spec's reads `run (spec X)`, in yellow."""
    used = "-" if r[use] is None else (f"{r[use]:.2f}" if use == "cpu" else _mib(r[use]))
    if not limit_drift(r, key):
        return Text(f"{used}/{show(r[key])}")
    return Text(f"{used}/{show(r[f'{key}_seen'])} (spec {show(r[key])})", style="yellow")


def _node_cells(r: dict) -> tuple:
    """One row of the node table."""
    state = node_state(r)
    seen = r.get("max_clients_seen")
    limit = str(r["max_clients"]) if seen in (None, r["max_clients"]) else f"{seen}/{r['max_clients']}"
    memory = lambda n: "none" if not n else _mib(n)  # noqa: E731
    return (
        r["name"], Text(state, style=_state_style(state)), f"{r['connected']}+{r['connecting']}", limit,
        _limit_cell(r, "cpu", "cpu_limit", _cpus), _limit_cell(r, "memory", "memory_limit", memory),
        "-" if r["restarts"] is None else str(r["restarts"]),
    )  # fmt: skip


def _image_lines(rows: list[dict]) -> list:
    """One line per image the nodes run: its version, the first digits of its digest (else its
    image ID), since when, and on which nodes."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        ref = (r.get("digest") or r.get("image_id") or "").removeprefix("sha256:")[:12]
        if ref:
            groups.setdefault((r.get("version"), ref, r.get("image_since")), []).append(r["name"])
    lines = []
    for (version, ref, since), names in groups.items():
        when = f" since {time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}" if since else ""
        lines.append(Text(f"image {version + ' ' if version else ''}{ref}{when}: {', '.join(names)}"))
    return lines


def _node_table(data: dict) -> Table:
    t = data["totals"]
    table = Table(title=f"{data['cluster']}: {t['running']}/{t['containers']} running, {t['connected']} clients connected, {t['connecting']} connecting", title_justify="left", expand=False)
    for column in ("node", "state", "clients", "max", "cpu", "memory", "restarts"):
        table.add_column(column, justify="left" if column in ("node", "state") else "right", no_wrap=True)
    for r in data["containers"]:
        table.add_row(*_node_cells(r))
    return table


def _front_lines(data: dict) -> list:
    lines = []
    for f in data["front"] or []:
        backends = "" if f["backends"] is None else f", backends {f['backends_up']}/{f['backends']} up"
        heard = "" if f["listening"] is None else (" listening" if f["listening"] else " NOT listening")
        lines.append(Text(f"front {f['listener']} {f['port']}:{heard}{backends}"))
    load = data.get("front_capacity")
    if load:
        lines.append(Text(_front_load_line(load)))
    return lines


def _front_load_line(load: dict) -> str:
    """Live connections against the ceiling; each session holds two (client and backend)."""
    if not load["running"]:
        return "front nginx: NOT running"
    ceiling = "" if load["ceiling"] is None else f" of {load['ceiling']}"
    return (f"front nginx: {load['connections']}{ceiling} connections in {load['workers']} workers "
            f"(sized for {load['sessions']} sessions, two connections each)")


def _countries_lines(data: dict) -> list:
    if not data["countries"]:
        return []
    top = ", ".join(f"{c['region']} {c['clients']}" for c in data["countries"][:8])
    return [Text(f"countries (clients): {top}")]


def _generation_lines(data: dict) -> list:
    g = data["generation"]
    return [Text(generation_line(g))] if g else []


def _drift_lines(data: dict) -> list:
    if data.get("drift"):
        return [Text(f"drift: {', '.join(data['drift'])}", style="yellow")]
    if "pending" in data:
        pending = data["pending"]
        return [Text("no drift" if not pending else f"{pending} change{'' if pending == 1 else 's'} pending (conduit plan)")]
    return []


def _watch_lines(data: dict) -> list:
    w = data.get("watch")
    if not w:
        return []
    when = time.strftime("%H:%M:%S", time.localtime(w.get("last_reconcile", 0)))
    if w.get("running") is False:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w.get("last_error_at") or w.get("last_reconcile", 0)))
        error = f"; its last error, from {stamp}: {w['last_error']}" if w.get("last_error") else ""
        return [Text(f"watch: NOT running (pid {w.get('pid')} is gone; last reconcile {when}, {w.get('last_result')}){error}",
                     style="yellow")]
    error = f"; last error: {w['last_error']}" if w.get("last_error") else ""
    return [Text(f"watch: last reconcile {when} ({w.get('last_result')}){error}")]


def _held_lines(data: dict) -> list:
    return [Text(f"{node}: {line}", style="yellow") for node, line in sorted((data.get("held") or {}).items())]


def _budget_lines(data: dict) -> list:
    b = data.get("budget")
    if not b:
        return []
    used = f"{b['used_gb']:.1f} of {b['monthly_gb']:g} GB this month ({b['percent']:.0f} %)" if b["counting"] else (
        f"not counted yet this month (of {b['monthly_gb']:g} GB; the agent counts it)")  # fmt: skip
    stopped = f"; {len(b['stopped'])} node(s) stopped by it" if b["stopped"] else ""
    return [Text(f"budget: {used}, resets {b['resets']}, at 100 %: {b['action']}{stopped}")]


def render_text(data: dict):
    """Rich renderables: a table of nodes and a few lines about the rest; fits 80 columns."""
    lines = [_node_table(data), *_node_notes(data)]
    for part in (_held_lines, _budget_lines, _front_lines, _countries_lines, _generation_lines, _drift_lines, _watch_lines):
        lines += part(data)
    return Group(*lines)
