"""What the read-only commands load on a converged host, read from sys.modules of a real run (never
timed): a plan loads no executor and no structlog (it sends no event) and looks for no pydantic
plugin, status --json loads no rich."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import free_port_block
from helpers import cli_env
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration

# conduit's CLI in this process, then every module it loaded, written to the file named first.
RUN = """
import sys
out = sys.argv.pop(1)
from conduit.cli.root import main
try:
    main(sys.argv[1:], prog_name="conduit")
except SystemExit as exc:
    code = exc.code
loader = sys.modules.get("pydantic.plugin._loader")
scanned = ["(pydantic plugins scanned)"] if loader is not None and loader._plugins is not None else []
with open(out, "w") as f:
    f.write(" ".join(sorted(sys.modules) + scanned))
sys.exit(code)
"""


def loaded(cluster: Cluster, tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    out = tmp_path / "modules.txt"
    argv = [sys.executable, "-c", RUN, str(out), *cluster.argv(*args)[3:]]  # argv without `python -m conduit`
    env = {k: v for k, v in cli_env().items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, env=env)
    return done, set(out.read_text().split())


def roots(modules: set[str]) -> set[str]:
    return {m.partition(".")[0] for m in modules}


@pytest.fixture
def converged(tmp_path, docker_engine, standin_image, docker_cleanup) -> Cluster:
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("ci"), free_port_block(2))
    cluster.write(count=2)
    applied = cluster.apply()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return cluster


def test_a_plan_of_a_converged_host_loads_no_executor_and_no_structlog(converged, tmp_path):
    done, modules = loaded(converged, tmp_path, "plan", "--detailed-exitcode", str(converged.spec))
    assert done.returncode == 0 and "No changes" in done.stdout, done.stdout + done.stderr
    assert {"conduit.engine.observe", "conduit.drivers.dockerapi", "conduit.log"} <= modules  # it did read the host
    assert not modules & {"conduit.engine.apply", "conduit.engine.reconcile", "conduit.execute.executor", "conduit.cli.apply"}
    assert not roots(modules) & {"structlog", "asyncio", "docker", "requests"}
    assert "(pydantic plugins scanned)" not in modules  # conduit uses none: the installed packages are not read for one


def test_status_json_loads_no_rich(converged, tmp_path):
    done, modules = loaded(converged, tmp_path, "status", "--json", str(converged.spec))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["drift"] == []
    assert "conduit.features.status" in modules
    assert not roots(modules) & {"rich", "pygments", "docker", "requests"}


def test_an_apply_that_creates_nodes_loads_no_structlog(tmp_path, docker_engine, standin_image, docker_cleanup):
    """Its step and phase events are info, below the console's warning level: dropped unloaded."""
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("ci"), free_port_block(2))
    cluster.write(count=2)
    done, modules = loaded(cluster, tmp_path, "apply", "--auto-approve", str(cluster.spec))
    assert done.returncode == 0 and "create container" in done.stdout, done.stdout + done.stderr
    assert "conduit.engine.apply" in modules
    assert not roots(modules) & {"structlog", "asyncio"}
