"""`conduit plan` reads the host and writes nothing: the state database is the same, byte for byte,
before and after a plan that asks the image what it speaks and the registry what its tag means,
and Docker has the same images (a new digest is pulled by the apply that takes it, never by a plan)."""

from __future__ import annotations

import hashlib

import pytest

from harness import free_port_block
from tests.integration.test_apply import Cluster
from tests.integration.test_updates import push

pytestmark = pytest.mark.integration


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plan_leaves_the_state_database_byte_identical(registry, docker_engine, docker_cleanup, tmp_path, standin_image):
    tag = f"{registry.address}/{docker_cleanup.name('ro')}:stable"
    push(docker_engine, registry, tag, standin_image)
    cluster = Cluster(tmp_path, docker_engine, tag, docker_cleanup.name("ro"), free_port_block(4))
    cluster.write(count=1, updates={"policy": "report"})
    applied = cluster.apply()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    new = push(docker_engine, registry, tag, standin_image, STANDIN_CLIENTS="3")  # a new digest: the plan asks the registry
    db = cluster.state / "state.db"
    before = sorted(p.name for p in cluster.state.iterdir()), _digest(db)
    images = sorted(i.id for i in docker_engine.client.images.list(all=True))

    planned = cluster.run("plan", str(cluster.spec))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "Image update:" in planned.stdout and f"{new[:19]} (its version is known once pulled)" in planned.stdout
    assert (sorted(p.name for p in cluster.state.iterdir()), _digest(db)) == before
    assert sorted(i.id for i in docker_engine.client.images.list(all=True)) == images

    # The apply records what the plan learned: the registry's answer.
    again = cluster.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert _digest(db) != before[1]
