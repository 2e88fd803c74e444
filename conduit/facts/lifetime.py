"""Lifetime byte totals of a node, from gauges that start again at 0 when it restarts.

conduit_bytes_uploaded/downloaded are gauges of the current run (Psiphon-Inc/conduit
metrics.go:138-153 at release-cli-2.0.0; service.go:259-263 sets them from the run's own
totals), as are the 1.x stats file's totalBytesUp/Down. Each reading adds what the run
moved since the last one; a reading below the last (or an uptime below the last) is a new
run, whose whole count is new. Bytes a run moved after the last reading before it ended
are not seen by anyone, so read often (status, watch) for close totals.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteReading:
    up: int
    down: int
    uptime: float | None = None  # seconds, when the node says: a drop means a restart


def restarted(last: ByteReading, now: ByteReading) -> bool:
    if now.up < last.up or now.down < last.down:
        return True
    return last.uptime is not None and now.uptime is not None and now.uptime < last.uptime


def delta(last: ByteReading | None, now: ByteReading) -> tuple[int, int]:
    """Bytes (up, down) moved between two readings of the same node."""
    if last is None or restarted(last, now):
        return now.up, now.down
    return now.up - last.up, now.down - last.down
