#!/usr/bin/env python3
"""How long `conduit status` takes on a 40-node cluster, and how many Docker API calls it makes.

    python3 bench/status_40.py [--containers 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from applied import applied_cluster  # noqa: E402
from plan_vs_compose import api_calls  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with applied_cluster(args.containers) as cluster:
        rows = []
        for label, extra in (("status (with drift check)", []), ("status --no-drift", ["--no-drift"])):
            times, calls, own = [], [], []
            for _ in range(args.runs):
                start_at = cluster.engine.log_path.stat().st_size
                t0 = time.perf_counter()
                out = cluster.run("status", "--json", *extra, str(cluster.spec))
                times.append(time.perf_counter() - t0)
                time.sleep(0.3)
                calls.append(api_calls(cluster.engine.log_path, start_at))
                own.append(json.loads(out.stdout)["api_calls"])
            rows.append((label, statistics.median(times), int(statistics.median(calls)), int(statistics.median(own))))

    print(f"conduit status on {args.containers} running nodes, median of {args.runs} runs")
    for label, seconds, calls, own in rows:
        print(f"  {label:28} {seconds * 1000:7.0f} ms  {calls:4d} Docker API calls (the tool counted {own})")


if __name__ == "__main__":
    main()
