#!/usr/bin/env python3
"""The agent under load: GET /api/v1/nodes latency with 40 nodes while 50 clients follow the
event stream, the agent's resident memory, and the Docker calls the requests cost.

    python3 bench/serve.py [--containers 40] [--requests 1000] [--streams 50] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from applied import applied_cluster  # noqa: E402
from compose_side import api_calls  # noqa: E402

from harness import free_port_block, wait_for  # noqa: E402


def get(url: str, token: str) -> float:
    t0 = time.perf_counter()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()
    return time.perf_counter() - t0


def stream(port: int, token: str, stop: threading.Event, opened: list) -> None:
    """One event-stream client: reads whatever comes until told to stop."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        s.settimeout(0.5)
        opened.append(1)
        while not stop.is_set():
            try:
                if not s.recv(65536):
                    return
            except socket.timeout:
                continue


def open_streams(port: int, token: str, count: int) -> threading.Event:
    """`count` clients on the agent's event stream, all open on return; set the event to end them."""
    stop, opened = threading.Event(), []
    for _ in range(count):
        threading.Thread(target=stream, args=(port, token, stop, opened), daemon=True).start()
    wait_for(lambda: len(opened) == count, timeout=30, message="every stream open")
    return stop


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory (VmRSS), or one of its parts: RssAnon (its heap), RssFile (mapped files)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def nodes_up(url: str, token: str, count: int) -> bool:
    try:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            rows = json.loads(answer.read())
    except OSError:
        return False
    return len(rows) == count and all(r["up"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()

    with applied_cluster(args.containers) as cluster:
        engine = cluster.engine
        token = cluster.run("tokens", "create", "bench", "--role", "viewer").stdout.strip()
        port = free_port_block(1)
        agent = subprocess.Popen([*cluster.base, "serve", str(cluster.spec), "--port", str(port), "--rate", "1000000"], env=cluster.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/api/v1/nodes"
            wait_for(lambda: nodes_up(url, token, args.containers), timeout=120, interval=0.5, message="every node up in the agent")
            idle_rss = rss_mib(agent.pid)
            stop = open_streams(port, token, args.streams)
            start_at = engine.log_path.stat().st_size
            began = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                times = sorted(pool.map(lambda _: get(url, token), range(args.requests)))
            took = time.perf_counter() - began
            calls = api_calls(engine.log_path, start_at)
            loaded_rss = rss_mib(agent.pid)
            stop.set()
        finally:
            agent.terminate()
            agent.wait(timeout=30)

    p = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000  # noqa: E731
    print(f"conduit serve with {args.containers} running nodes and {args.streams} clients on the event stream")
    print(f"  GET /api/v1/nodes x{args.requests}, {args.concurrency} at a time: p50 {p(0.5):.1f} ms  p95 {p(0.95):.1f} ms  "
          f"max {times[-1] * 1000:.1f} ms  ({args.requests / took:.0f} requests/s)")
    print(f"  Docker API calls meanwhile: {calls} in {took:.1f} s (the background observation's, not the requests')")
    print(f"  agent resident memory: {idle_rss:.0f} MiB idle, {loaded_rss:.0f} MiB with the streams open and the requests done")


if __name__ == "__main__":
    main()
