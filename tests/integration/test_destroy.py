"""destroy runs the one reconcile: its volume purge is plan steps, printed, executed and journalled."""

from __future__ import annotations

import pytest

from conduit.state.stores import open_state
from tests.integration.test_adopt_v1 import v1_host, write_v1_spec  # noqa: F401 - v1_host is a fixture

pytestmark = pytest.mark.integration


def test_volumes_are_kept_without_purge_and_deleted_as_plan_steps_with_it(v1_host):  # noqa: F811
    host = v1_host
    write_v1_spec(host)
    keys = host.keys()

    kept = host.run("destroy", "--auto-approve", str(host.spec))
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert not any(f"- volume {v}" in kept.stdout for v in host.volumes())
    assert "Data volumes and node keys were kept." in kept.stdout
    assert host.keys() == keys

    purged = host.run("destroy", "--purge-data", "--confirm-name", host.prefix, str(host.spec))
    assert purged.returncode == 0, purged.stdout + purged.stderr
    for volume in host.volumes():
        assert f"- volume {volume}" in purged.stdout  # in the plan it printed
        assert f"delete volume {volume}" in " ".join(purged.stdout.split())  # and as the step it ran
    assert not {v.name for v in host.engine.client.volumes.list()} & set(host.volumes())
    state = open_state(host.state)
    last = state.history.generations()[-1]
    assert last.outcome == "destroyed"
    deleted = {(kind, resource) for _phase, kind, resource, action, status, _ in state.history.journal(last.id) if action == "delete" and status == "done"}
    assert {("volume", v) for v in host.volumes()} <= deleted
    assert list((host.state / "key-backups").glob(f"*-gen{last.id}/SHA256SUMS")), "the last copy of the keys stays"
