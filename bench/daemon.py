#!/usr/bin/env python3
"""The host's one daemon under load: `conduit serve SPEC --watch` with the spec's tracker on, 40
converged stand-in nodes and 50 clients on the event stream; the resident memory (VmRSS) of
every conduit process the host then runs (a tracker process apply started and the daemon did not
take over counts too).

    PYTHONPATH=tests:. python3 bench/daemon.py [--containers 40] [--requests 1000] [--streams 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from applied import applied_cluster  # noqa: E402
from serve import get, nodes_up, open_streams, rss_mib  # noqa: E402

from harness import free_port_block, wait_for  # noqa: E402


def tracker_pid(state: Path, cluster: str) -> int | None:
    try:
        pid = int((state / f"tracker-{cluster}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, name) of the processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append((int(entry.name), stat[stat.index("(") + 1 : stat.rindex(")")]))
    return found


def converged(cluster, state: Path, name: str) -> bool:
    """The watch loop's apply done and the tracker running (in the daemon or on its own)."""
    watch = state / "watch.json"
    return watch.exists() and '"last_result": "unchanged"' in watch.read_text() and tracker_pid(state, name) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=50)
    args = parser.parse_args()

    with applied_cluster(args.containers) as cluster:
        doc = yaml.safe_load(cluster.spec.read_text())
        doc["spec"]["tracker"] = {"enabled": True, "interval_seconds": 10}
        cluster.spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        name, state = doc["metadata"]["name"], Path(cluster.base[cluster.base.index("--state-dir") + 1])
        token = cluster.run("tokens", "create", "bench", "--role", "viewer").stdout.strip()
        port = free_port_block(1)
        daemon = subprocess.Popen([*cluster.base, "serve", str(cluster.spec), "--watch", "--watch-interval", "5", "--port", str(port),
                                   "--rate", "1000000"], env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/api/v1/nodes"
            wait_for(lambda: nodes_up(url, token, args.containers), timeout=120, interval=0.5, message="every node up in the agent")
            wait_for(lambda: converged(cluster, state, name), timeout=180, interval=0.5, message="the spec applied and the tracker running")
            time.sleep(5)  # past the tracker's take-over and the first interval of the watch loop
            tracker = tracker_pid(state, name)
            idle = rss_mib(daemon.pid)
            stop = open_streams(port, token, args.streams)
            with ThreadPoolExecutor(10) as pool:
                list(pool.map(lambda _: get(url, token), range(args.requests)))
            loaded = rss_mib(daemon.pid)
            parts = rss_mib(daemon.pid, "RssAnon"), rss_mib(daemon.pid, "RssFile")
            separate = rss_mib(tracker) if tracker and tracker != daemon.pid else 0.0
            kids = [(pid, comm, rss_mib(pid)) for pid, comm in children(daemon.pid)]
            stop.set()
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)

    print(f"conduit serve --watch with the tracker on, {args.containers} running nodes, {args.streams} clients on the event stream")
    print(f"  daemon resident memory: {idle:.0f} MiB idle, {loaded:.0f} MiB with the streams open and {args.requests} requests done")
    print(f"    of which, loaded: {parts[0]:.1f} MiB its own (heap), {parts[1]:.1f} MiB mapped files (interpreter, libraries)")
    where = "in the daemon" if tracker == daemon.pid else f"its own process, {separate:.0f} MiB"
    print(f"  tracker: {where}; the daemon's children: {', '.join(f'{c} {m:.0f} MiB' for _, c, m in kids) or 'none'}")
    print(f"  conduit processes together: {loaded + separate:.0f} MiB")


if __name__ == "__main__":
    main()
