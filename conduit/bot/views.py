"""What the bot's read commands say about a host, as plain text (SamNet's command names)."""

from __future__ import annotations

from conduit.views.status import generation_line


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def host_line(name: str, data: dict) -> str:
    t = data["totals"]
    return (f"{name}: {t['running']}/{t['containers']} running, {t['connected']} clients ({t['connecting']} connecting), "
            f"{size(t.get('lifetime_bytes_up', 0) + t.get('lifetime_bytes_down', 0))} served")  # fmt: skip


def _nodes(data: dict) -> list[str]:
    return [f"#{r['index']} {r['name']}: {r['state']}, {r['connected']} clients" for r in data["containers"]]


def status(name: str, data: dict) -> str:
    return "\n".join([host_line(name, data), *_nodes(data), *([data["budget"]] if data.get("budget") else [])])


def peers(name: str, data: dict) -> str:
    rows = [f"{c['region']}: {c['clients']} clients, {size(c['bytes_up'] + c['bytes_down'])}" for c in data["countries"][:10]]
    return "\n".join([f"{name}: clients by country", *(rows or ["no country data yet"])])


def uptime(name: str, data: dict) -> str:
    rows = [f"#{r['index']} {r['name']}: up {duration(r.get('uptime'))}, version {r.get('version') or '?'}" for r in data["containers"]]
    return "\n".join([f"{name}: uptime and versions", *rows])


def settings(name: str, data: dict) -> str:
    rows = [f"#{r['index']} {r['name']}: max {r.get('max_clients', '?')} clients" for r in data["containers"]]
    gen = data.get("generation")
    return "\n".join([f"{name}: {generation_line(gen) if gen else 'no generation yet'}", *rows])


def health(name: str, data: dict) -> str:
    found = data.get("alerts") or []
    return "\n".join([f"{name}: " + ("healthy" if not found else f"{len(found)} problem(s)"), *found])


READS = {"status": status, "containers": status, "peers": peers, "uptime": uptime, "settings": settings, "health": health}

HELP = """Commands (with several hosts, pick one with the buttons):
/status - totals, per host, per node
/peers - clients by country
/uptime - uptime and versions
/containers - the nodes
/settings - the generation and limits
/health - what needs attention
/logs_N - the last lines of node N (operators)
/restart_N /start_N /stop_N - one node (operators, confirmed)
/restart_all /start_all /stop_all - every node (operators, confirmed)
/sync - apply what the host follows (operators, confirmed)
/rollback - back to the previous good generation (operators, confirmed)
/update - take a new image, canary first (operators, confirmed)
/qr_N - the claim QR code of node N (operators, private chat, confirmed)
/help - this list"""
