"""A plan written by `conduit plan --out` is carried out by the executor alone, against the real
engine, in a process that cannot import the spec loader: every step holds what its host call
needs (the keys backup its volumes, the replace its container), and the plan's target the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import free_port_block
from tests.helpers import cli_env
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Any import of the spec loader or of the planning engine fails in this process.
RUN_ALONE = """
import json, sys
from pathlib import Path

BLOCKED = ("conduit.spec.load", "conduit.engine")

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
            raise ImportError(f"{name} is not to be imported while a saved plan runs")
        return None

sys.meta_path.insert(0, Blocker())

from conduit.drivers.docker import CountingClient
from conduit.execute.executor import Executor
from conduit.plan.saved import read_saved

saved, docker_host, root, state = sys.argv[1:5]
plan = read_saved(saved).plan
ex = Executor(plan.target, Path(root), Path(state), CountingClient(docker_host), key_backups=Path(state) / "key-backups" / "alone")
ran = []
for step in plan.changes:
    ex.run(step)
    ran.append([step.kind, step.action, step.id])
for step in plan.changes:
    if step.kind == "container" and step.action == "replace":
        ex.drop_previous(step.id)  # as the engine does once the node passed its gate
print(json.dumps({"ran": ran, "loaded": sorted(m for m in sys.modules if m.startswith(BLOCKED))}))
"""


@pytest.fixture
def cluster(tmp_path, docker_engine, standin_image, docker_cleanup):
    return Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("sa"), free_port_block(12))


def test_a_saved_plan_from_the_cli_is_run_by_the_executor_with_no_spec_loaded(cluster, tmp_path):
    cluster.write(count=2, max_clients=40)
    assert cluster.apply().returncode == 0
    old_keys = cluster.keys()
    cluster.write(count=2, max_clients=50)  # forces a replacement: keys backed up first
    saved = tmp_path / "plan.json"
    made = cluster.run("plan", "--out", str(saved), str(cluster.spec))
    assert made.returncode == 0, made.stdout + made.stderr

    argv = [sys.executable, "-c", RUN_ALONE, str(saved), cluster.engine.host, str(cluster.root), str(cluster.state)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180, env=cli_env())
    assert done.returncode == 0, done.stdout + done.stderr
    said = json.loads(done.stdout)
    assert said["loaded"] == []
    nodes = [f"{cluster.prefix}-1", f"{cluster.prefix}-2"]
    assert said["ran"] == [["keys", "backup", ",".join(nodes)]] + [["container", "replace", n] for n in nodes]

    assert cluster.names() == {name: "running" for name in nodes}
    assert all(cluster.command_of(name)[cluster.command_of(name).index("-m") + 1] == "50" for name in nodes)
    assert cluster.keys() == old_keys  # the same keys: the nodes kept their identity
    backup = cluster.state / "key-backups" / "alone"
    assert sorted(p.name for p in backup.iterdir()) == ["SHA256SUMS"] + sorted(f"{v}.conduit_key.json" for v in old_keys)
