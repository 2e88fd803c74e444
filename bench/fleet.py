#!/usr/bin/env python3
"""How long `conduit fleet validate` and `conduit fleet diff --git-ref` take on a fleet of 100 hosts
(one repository: two levels of bases and a spec per host), and that the diff after a change to one
base lists exactly the hosts that extend it.

    python3 bench/fleet.py [--hosts 100] [--runs 3]
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

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ("eu", "us", "asia")
NODE = """\
apiVersion: conduit.psiphon.ca/v1alpha1
kind: ConduitCluster
spec:
  host: {vcpus: 4, memory: 8GiB, nic_mbps: 1000, profile: official}
  containers:
    count: 2
    image: ghcr.io/psiphon-inc/conduit/cli:2.0.0
  network: {mode: host}
  conduit:
    max_clients: 250
    bandwidth_mbps: 5
"""


def write_fleet(repo: Path, hosts: int) -> dict[str, list[str]]:
    """The repository's files; returns the hosts of each region."""
    (repo / "base").mkdir(parents=True)
    (repo / "hosts").mkdir()
    (repo / "base" / "node.yaml").write_text(NODE)
    for region in REGIONS:
        (repo / "base" / f"{region}.yaml").write_text(f"extends: [node.yaml]\nspec:\n  conduit:\n    bandwidth_mbps: {REGIONS.index(region) + 6}\n")
    lines = ["apiVersion: conduit.psiphon.ca/v1alpha1", "kind: ConduitFleet", "rings: {canary: main, stable: stable}",
             "default_ring: stable", "hosts:"]
    by_region: dict[str, list[str]] = {r: [] for r in REGIONS}
    for i in range(hosts):
        name, region = f"node-{i:03d}", REGIONS[i % len(REGIONS)]
        by_region[region].append(name)
        count = 1 + i % 2
        (repo / "hosts" / f"{name}.yaml").write_text(
            f"extends: [../base/{region}.yaml]\nmetadata: {{name: {name}}}\nspec:\n  containers: {{count: {count}}}\n")
        ring = "canary" if i % 10 == 0 else "stable"
        lines += [f"  - name: {name}", f"    spec: hosts/{name}.yaml", f"    agent: https://{name}.example.net:8443",
                  f"    labels: {{provider: p{i % 4}, region: {region}, ring: {ring}}}"]
    (repo / "fleet.yaml").write_text("\n".join(lines) + "\n")
    return by_region


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.net", *args],
                   check=True, capture_output=True)


def timed(repo: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "conduit", "fleet", *args], cwd=repo, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conduit-fleet-") as folder:
        repo = Path(folder)
        by_region = write_fleet(repo, args.hosts)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "fleet")
        eu = repo / "base" / "eu.yaml"
        eu.write_text(eu.read_text().replace("bandwidth_mbps: 6", "bandwidth_mbps: 12"))
        rows = []
        for label, command in (("fleet validate", ["validate", "fleet.yaml"]),
                               ("fleet diff --git-ref HEAD (eu.yaml changed)", ["diff", "--git-ref", "HEAD", "fleet.yaml"]),
                               ("fleet plan --offline", ["plan", "--offline", "fleet.yaml"])):
            times = []
            for _ in range(args.runs):
                seconds, done = timed(repo, *command)
                times.append(seconds)
                if done.returncode not in (0, 2) or done.stderr:
                    sys.exit(f"{label} failed ({done.returncode}): {done.stderr.strip()}")
            rows.append((label, statistics.median(times), done))
        touched = [line.split(" ", 1)[0] for line in rows[1][2].stdout.splitlines() if not line.startswith("unchanged:")]
        if touched != by_region["eu"]:
            sys.exit(f"the diff listed {touched}, not the {len(by_region['eu'])} hosts that extend base/eu.yaml")
        print(f"{args.hosts} hosts, {len(REGIONS) + 1} base files, median of {args.runs} runs (each a fresh `python -m conduit`):")
        for label, seconds, _ in rows:
            print(f"  {label:<45} {seconds:6.2f} s")
        print(f"  the diff listed exactly the {len(touched)} hosts that extend base/eu.yaml")


if __name__ == "__main__":
    main()
