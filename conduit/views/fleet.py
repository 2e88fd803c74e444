"""The fleet's status as a table: one row per host."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from conduit.features.fleetstatus import Row


def _commit(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return "-"


def cells(row: Row) -> list[str]:
    """The row's cells as the table (and the fleet page) show them."""
    nodes = f"{row.nodes_up}/{row.nodes}" if row.nodes is not None else "-"
    drift = "-" if row.drift is None else (str(len(row.drift)) if row.drift else "none")
    ready = "ready" if row.ready else ("no answer" if not row.answered else "not ready")
    return [row.host, row.ring or "-", _commit(row.applied), _commit(row.attempted), ready, row.why or "", nodes,
            "-" if row.clients is None else str(row.clients), _bytes(row.bytes), drift, row.last_error or ""]  # fmt: skip


HEADERS = ["host", "ring", "applied", "attempted", "ready", "why", "nodes up", "clients", "bytes", "drift", "last error"]


def status_table(rows: list[Row]) -> Table:
    table = Table(*HEADERS, box=None, pad_edge=False)
    for row in rows:
        values = [escape(v) for v in cells(row)]
        values[4] = f"[green]{values[4]}[/green]" if row.ready else f"[red]{values[4]}[/red]"
        table.add_row(*values)
    return table
