#!/usr/bin/env python3
"""How long `conduit fleet status` takes over three local agents, each a host of its own (state
directory, two stand-in nodes applied on a private Docker daemon, `conduit serve` on 127.0.0.2,
.3 and .4), and with a fourth host whose agent accepts connections but never answers.

    python3 bench/fleet_status.py [--runs 5] [--timeout 2]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from harness import DockerEngine, free_port_block, wait_for  # noqa: E402
from helpers import CONDUIT, cli_env  # noqa: E402

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PORTS_PER_HOST = 10  # each host's block of metrics ports


def spec_text(name: str, image: str, metrics_port_base: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "conduit.psiphon.ca/v1alpha1", "kind": "ConduitCluster", "metadata": {"name": name},
        "spec": {
            "host": {"vcpus": 4, "memory": "8GiB"},
            "containers": {"count": 2, "image": image, "naming": {"prefix": name, "volume_prefix": f"{name}-data"},
                           "resources": {"cpus": 0.1, "memory": "64MiB", "ulimit_nofile": 4096}},
            "conduit": {"max_clients": 40, "bandwidth_mbps": 2, "metrics_port_base": metrics_port_base},
            "sysctl": {"enabled": False},
            "tracker": {"enabled": False},
        },
    }, sort_keys=False)  # fmt: skip


class Host:
    """One host: its own root, state directory and spec, the CLI pointed at the shared private engine."""

    def __init__(self, folder: Path, name: str, engine: DockerEngine, address: str, port: int):
        self.name, self.address, self.port = name, address, port
        self.root, self.state, self.spec = folder / "root", folder / "state", folder / "cluster.yaml"
        self.root.mkdir(parents=True)
        self.base = [*CONDUIT, "--docker-host", engine.host, "--state-dir", str(self.state), "--root", str(self.root)]

    def run(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], env=cli_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: conduit {' '.join(args[:2])} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
        return done.stdout.strip()

    def serve(self) -> subprocess.Popen:
        return subprocess.Popen([*self.base, "serve", str(self.spec), "--listen", self.address, "--port", str(self.port), "--interval", "1"],
                                env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip


def write_fleet(path: Path, hosts: list[Host], silent_port: int | None) -> None:
    entries = [{"name": h.name, "spec": f"{h.name}/cluster.yaml", "agent": f"http://{h.address}:{h.port}"} for h in hosts]
    if silent_port is not None:
        entries.append({"name": "h4", "spec": "h1/cluster.yaml", "agent": f"http://127.0.0.1:{silent_port}"})
    path.write_text(yaml.safe_dump({"apiVersion": "conduit.psiphon.ca/v1alpha1", "kind": "ConduitFleet", "hosts": entries}, sort_keys=False))


def fleet_status(fleet: Path, tokens: Path, timeout: float) -> tuple[float, int, dict]:
    argv = [*CONDUIT, "fleet", "status", str(fleet), "--tokens", str(tokens), "--timeout", f"{timeout:g}", "--json"]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=cli_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1) or done.stderr:
        raise SystemExit(f"conduit fleet status failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, done.returncode, {row["host"]: row for row in json.loads(done.stdout)["hosts"]}


def every_host_ready(fleet: Path, tokens: Path) -> bool:
    _, code, rows = fleet_status(fleet, tokens, 5)
    return code == 0 and len(rows) == len(ADDRESSES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()

    with ExitStack() as stack:  # whatever happens, the agents, the silent socket, the engine and the files go
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conduit-fleet-status-")))
        engine = stack.enter_context(DockerEngine())
        image = engine.build_standin("2.0.0")
        agent_ports, metrics_ports = free_port_block(len(ADDRESSES)), free_port_block(PORTS_PER_HOST * len(ADDRESSES))
        hosts = [Host(folder / f"h{i + 1}", f"h{i + 1}", engine, address, agent_ports + i) for i, address in enumerate(ADDRESSES)]
        lines = []
        for i, host in enumerate(hosts):
            host.spec.write_text(spec_text(f"fs{i + 1}", image, metrics_ports + PORTS_PER_HOST * i))
            host.run("apply", "--auto-approve", str(host.spec))
            lines.append(f"{host.name}: {{viewer: {host.run('tokens', 'create', 'fleet', '--role', 'viewer')}, agent: 'http://{host.address}:{host.port}'}}")
        for host in hosts:
            agent = host.serve()
            stack.callback(stop, agent)
        silent = stack.enter_context(socket.socket())
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody ever answers
        tokens = folder / "fleet-tokens.yaml"
        tokens.write_text("\n".join(lines) + f"\nh4: {{viewer: nobody-answers, agent: 'http://127.0.0.1:{silent.getsockname()[1]}'}}\n")
        tokens.chmod(0o600)
        three, four = folder / "fleet.yaml", folder / "fleet-4.yaml"
        write_fleet(three, hosts, None)
        write_fleet(four, hosts, silent.getsockname()[1])
        wait_for(lambda: every_host_ready(three, tokens), timeout=120, interval=1, message="every agent answering, every host ready")
        times, with_silent, why = measure(three, four, tokens, args.runs, args.timeout)

    print(f"conduit fleet status over {len(hosts)} local agents (2 stand-in nodes each), each run a fresh `python -m conduit`:")
    print(f"  3 hosts, {args.runs} runs:               median {statistics.median(times):5.2f} s   slowest {max(times):5.2f} s")
    print(f"  3 hosts + 1 that never answers: {with_silent:5.2f} s   (--timeout {args.timeout:g}; h4: {why})")


def measure(three: Path, four: Path, tokens: Path, runs: int, timeout: float) -> tuple[list[float], float, str]:
    """The seconds of each run over the three ready hosts, of the one with the silent fourth, and why h4 is not ready."""
    times = []
    for _ in range(runs):
        seconds, code, rows = fleet_status(three, tokens, timeout)
        if code != 0:
            raise SystemExit(f"a host was not ready: {[r['why'] for r in rows.values() if not r['ready']]}")
        times.append(seconds)
    with_silent, code, rows = fleet_status(four, tokens, timeout)
    if code != 1 or rows["h4"]["answered"] or not all(r["ready"] for name, r in rows.items() if name != "h4"):
        raise SystemExit(f"the four-host run was not three ready hosts and one silent: {rows}")
    return times, with_silent, rows["h4"]["why"]


def stop(agent: subprocess.Popen) -> None:
    agent.terminate()
    try:
        agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


if __name__ == "__main__":
    main()
