#!/usr/bin/env python3
"""Failed client connections while every container behind the nginx front is replaced.

A client opens short TCP connections through the front without pause while
`conduit apply` replaces all backends, first rolling (one at a time, drained from
nginx first), then all at once. Prints the failures of each.

    python3 bench/rolling_replace.py [--containers 4] [--drain 2]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from harness import DockerEngine, NginxServer, free_port  # noqa: E402
from helpers import CONDUIT, cli_env  # noqa: E402


class Client(threading.Thread):
    """Connects through the front every few milliseconds; a connection that gets no banner failed."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.ok, self.failed, self.running = port, 0, 0, True

    def run(self) -> None:
        while self.running:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                    conn.settimeout(2)
                    if conn.recv(64).startswith(b"standin "):
                        self.ok += 1
                    else:
                        self.failed += 1
            except OSError:
                self.failed += 1
            time.sleep(0.01)


def spec(image: str, count: int, listen: int, nginx: NginxServer, max_clients: int, max_unavailable: int, drain: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "conduit.psiphon.ca/v1alpha1",
            "kind": "ConduitCluster",
            "metadata": {"name": "rolling"},
            "spec": {
                "host": {"vcpus": 4, "memory": "8GiB"},
                "containers": {
                    "count": count,
                    "image": image,
                    "naming": {"prefix": "roll", "volume_prefix": "roll-data"},
                    "resources": {"cpus": 0.2, "memory": "64MiB", "ulimit_nofile": 4096},
                    "env": {"STANDIN_LISTEN": "tcp:8443"},
                },
                "network": {"mode": "bridge", "name": "roll-net", "backends": "published"},
                "conduit": {"max_clients": max_clients, "bandwidth_mbps": 2, "metrics_port_base": 23000},
                "loadbalancer": {
                    "enabled": True,
                    "listeners": [{"name": "tcp", "port": listen, "protocol": "tcp", "backend_port": 8443, "host_port_base": 23100}],
                    "access_log": None,
                    "nginx": {
                        "binary": nginx.binary,
                        "main_config": str(nginx.main_conf),
                        "include_file": f"{nginx.prefix}/conduit/stream.conf",
                        "pid_file": str(nginx.pid_file),
                    },
                },
                "sysctl": {"enabled": False},
                "tracker": {"enabled": False},
                "health": {"gate_timeout_seconds": 30, "settle_seconds": 1},
                "rollout": {"max_unavailable": max_unavailable, "drain_seconds": drain},
            },
        },
        sort_keys=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--drain", type=int, default=2)
    args = parser.parse_args()

    with DockerEngine() as engine, NginxServer() as nginx, tempfile.TemporaryDirectory() as tmp:
        image = engine.build_standin("2.0.0")
        listen = free_port()
        path = Path(tmp) / "cluster.yaml"
        env = dict(cli_env(), DOCKER_HOST=engine.host)
        cli = [*CONDUIT, "--state-dir", f"{tmp}/state", "apply", "--auto-approve", str(path)]

        def apply(max_clients: int, max_unavailable: int, drain: int) -> float:
            path.write_text(spec(image, args.containers, listen, nginx, max_clients, max_unavailable, drain))
            t0 = time.perf_counter()
            result = subprocess.run(cli, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"apply failed:\n{result.stdout}{result.stderr}")
            return time.perf_counter() - t0

        apply(40, 1, args.drain)
        rows = []
        for label, max_clients, unavailable, drain in (
            ("rolling, 1 at a time, drained", 50, 1, args.drain),
            (f"all {args.containers} at once", 60, args.containers, 0),
        ):
            client = Client(listen)
            client.start()
            time.sleep(1)
            seconds = apply(max_clients, unavailable, drain)
            time.sleep(1)
            client.running = False
            client.join()
            rows.append((label, client.failed, client.ok + client.failed, seconds))

    print(f"replacing {args.containers} containers behind the nginx front while a client connects continuously")
    for label, failed, total, seconds in rows:
        print(f"  {label:32} {failed:5d} failed of {total:6d} connections   apply took {seconds:5.1f} s")


if __name__ == "__main__":
    main()
