"""`conduit history` as text that fits 80 columns: one line per generation, its reason on its own
line beneath when it has one (and its images, when the row would not fit with them), and only the
columns some generation fills (`--json` has everything); the cluster only when the state directory
holds more than one."""

from __future__ import annotations

import textwrap
import time

WIDTH = 80


def image_cell(images: dict[str, dict]) -> str:
    """The images the nodes ran: a short digest or ID, and its version."""
    return ", ".join(sorted({(i["digest"] or i["image_id"])[:19] + (f" {i['version']}" if i["version"] else "") for i in images.values()}))


def _row(gen, images: dict[str, dict]) -> dict[str, str]:
    return {
        "gen": str(gen.id),
        "cluster": gen.cluster or "",
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(gen.started)),
        "outcome": gen.outcome,
        "spec": gen.spec_hash[:8],
        "git": (gen.git_commit or "")[:8] + ("+" if gen.git_dirty else ""),
        "image": image_cell(images),
    }


def _columns(gens: list, rows: list[dict[str, str]]) -> list[str]:
    """The columns always shown, those some generation fills, and the cluster when there are several."""
    several = len({g.cluster for g in gens if g.cluster is not None}) > 1
    filled = [n for n in rows[0] if n in ("gen", "started", "outcome", "spec") or any(r[n] for r in rows)] if rows else []
    return [n for n in filled if n != "cluster" or several]


def render_history(gens: list, images: dict[int, dict[str, dict]]) -> str:
    """gens: conduit.state.history generations; images: {generation: {node: image}}. A `+` after a
    git commit: the checkout had uncommitted changes."""
    rows = [_row(g, images.get(g.id, {})) for g in gens]
    names = _columns(gens, rows)
    widths = {n: max(len(n), *(len(r[n]) for r in rows)) for n in names}
    # Too wide with the images (several clusters, a git commit): each generation's images go beneath it.
    beneath = "image" in names and sum(widths.values()) + 2 * (len(names) - 1) > WIDTH
    if beneath:
        names.remove("image")
    lines = ["  ".join(n.ljust(widths[n]) for n in names).rstrip()]
    for g, r in zip(gens, rows):
        lines.append("  ".join(r[n].ljust(widths[n]) for n in names).rstrip())
        if beneath and r["image"]:
            lines += textwrap.wrap(f"image {r['image']}", WIDTH, initial_indent="    ", subsequent_indent="      ")
        if g.reason:
            lines += textwrap.wrap(g.reason, WIDTH, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines)
