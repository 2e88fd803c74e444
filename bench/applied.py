"""A private Docker daemon with a cluster of stand-in nodes applied by conduit, for benchmarks
that measure something on a running cluster."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from compose_side import spec_text

from harness import DockerEngine, free_port_block
from helpers import CONDUIT, cli_env


@dataclass
class Applied:
    engine: DockerEngine
    spec: Path
    base: list[str]  # the conduit command line with its root and state directory
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True)


@contextmanager
def applied_cluster(containers: int) -> Iterator[Applied]:
    """`containers` running 2.0 stand-in nodes, applied; the engine logs its API calls (--debug)."""
    with DockerEngine(extra_args=("--debug",)) as engine, tempfile.TemporaryDirectory() as tmp:
        image = engine.build_standin("2.0.0")
        spec = Path(tmp) / "cluster.yaml"
        spec.write_text(spec_text(image, containers, free_port_block(containers)))  # a fixed block collides with another run
        cluster = Applied(engine, spec, [*CONDUIT, "--root", tmp, "--state-dir", f"{tmp}/state"], dict(cli_env(), DOCKER_HOST=engine.host))
        done = cluster.run("apply", "--auto-approve", str(spec))
        if done.returncode != 0:
            raise SystemExit(done.stdout + done.stderr)
        yield cluster
