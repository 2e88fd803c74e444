#!/usr/bin/env python3
"""The state DB's timeline after DAYS simulated days of NODES nodes at the agent's sampling (one
point per node a minute, merged into 15-minute and hourly buckets, each resolution pruned to
its keep): the database's size, the rows per resolution, and how long a 30-day read takes.

    python3 bench/history_size.py [--nodes 40] [--days 30]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's conduit

from conduit.state.stores import open_state  # noqa: E402
from conduit.state.timeline import Minute, Timeline  # noqa: E402


def simulate(timeline: Timeline, nodes: int, days: float, end: float, every: int = 60, regions: int = 12) -> None:
    """`days` up to `end`, one record per `every` seconds (60: the agent's own), a daily wave of clients."""
    names = [f"conduit-{i}" for i in range(1, nodes + 1)]
    start = int(end - days * 86400)
    start -= start % every
    per = every // 2  # observations in a record at the agent's 2-second interval
    for at in range(start, int(end), every):
        wave = 1 + math.sin(at / 86400 * 2 * math.pi)
        minutes = {n: Minute(per, per if (i + at // 3600) % 97 else 0, 20 * wave + i % 7, 2 * wave, int(3e5 * wave * every), int(1.2e6 * wave * every))
                   for i, n in enumerate(names)}  # fmt: skip
        countries = {f"C{r}": (nodes * 20 * wave) / (r + 1) for r in range(regions)}
        timeline.record(at, minutes, countries)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--days", type=float, default=30)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="conduit-history-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    state = open_state(folder)
    now = time.time()
    began = time.perf_counter()
    simulate(state.timeline, args.nodes, args.days, now)
    took = time.perf_counter() - began
    with closing(state.db.connect()) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tiers = db.execute("SELECT tier, COUNT(*) FROM timeline GROUP BY tier ORDER BY tier").fetchall()
        countries = db.execute("SELECT COUNT(*) FROM timeline_countries").fetchone()[0]
        db.execute("VACUUM")
    size = (folder / "state.db").stat().st_size
    began = time.perf_counter()
    series = state.timeline.series("30d", now)
    read = time.perf_counter() - began
    print(f"{args.nodes} nodes, {args.days:g} days at one point a minute ({took:.0f} s to write)")
    for tier, count in tiers:
        print(f"  {tier:>5} s points: {count} rows")
    print(f"  country points: {countries} rows")
    print(f"  state.db: {size / 1048576:.1f} MiB (after VACUUM)")
    print(f"  30-day read: {len(series['points'])} points, {len(series['nodes'])} nodes, {read * 1000:.0f} ms")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
