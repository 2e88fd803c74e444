#!/usr/bin/env python3
"""CPU share of the tracker's sampled capture while UDP traffic flows, against a continuous capture.

Two network namespaces joined by a veth pair; a client sends UDP at a steady rate to the
node side, where `conduit tracker run --source capture` samples the interface. The CPU
time of the tracker and its tcpdump children is read after it stops.

    python3 bench/tracker_cpu.py [--seconds 40] [--rate 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.netns import veth_pair  # noqa: E402
from helpers import CONDUIT, cli_env  # noqa: E402

SEND = """
import socket, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + seconds
sent = 0
while time.time() < end:
    t0 = time.time()
    for _ in range(rate // 100):
        s.sendto(b"x" * 400, ("10.213.9.1", 40000 + sent % 1000))
        sent += 1
    time.sleep(max(0, 0.01 - (time.time() - t0)))
"""


def run_tracker(node: str, iface: str, seconds: float, sample: int, interval: int, state: str) -> tuple[float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = ["ip", "netns", "exec", node, *CONDUIT, "--state-dir", state, "tracker", "run", "--cluster", "bench",
            "--source", "capture", "--interface", iface, "--filter", "udp and (portrange 1024-65535)",
            "--sample-seconds", str(sample), "--interval-seconds", str(interval)]  # fmt: skip
    process = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    from conduit.state.stores import open_state

    seen = sum(row[1] + row[2] for row in open_state(state).samples.latest().values())
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / seconds, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=2000, help="UDP datagrams per second")
    args = parser.parse_args()
    with veth_pair("10.213.9") as pair:
        rows = []
        for label, sample, interval in (("sampled (2 s every 20 s)", 2, 20), ("continuous capture", int(args.seconds) + 5, 1)):
            sender = subprocess.Popen(["ip", "netns", "exec", pair.client, sys.executable, "-c", SEND, str(args.rate), str(args.seconds + 2)])
            with tempfile.TemporaryDirectory() as state:
                share, seen = run_tracker(pair.node, pair.node_if, args.seconds, sample, interval, state)
            sender.wait()
            rows.append((label, share, seen))
    print(f"tracker CPU share over {args.seconds:g} s with {args.rate} UDP datagrams/s flowing (one core = 100%)")
    for label, share, seen in rows:
        print(f"  {label:28} {share * 100:6.2f}%   (last window counted {seen} bytes)")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    main()
