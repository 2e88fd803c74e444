"""conduit.plan.schedule: the steps apply runs besides the diff (pulls, drains, key backups, compartments), and their order."""

import yaml
from hypothesis import HealthCheck, given, settings

from conduit.engine.settle import settle
from tests.helpers import plan_between
from conduit.plan.planner import make_plan
from conduit.render.desired import render
from conduit.spec.load import load_text
from conduit.spec.resources import PHASES
from tests.property.test_plan_properties import HOST
from tests.strategies import valid_specs


def load(data):
    doc = load_text(yaml.safe_dump(data, sort_keys=False), "c.yaml", HOST)
    return settle(doc).spec


ADDED_BY_SCHEDULE = {("image", "pull"), ("backends", "drain"), ("backends", "restore"), ("keys", "backup"), ("compartment", "create")}


@given(valid_specs(), valid_specs())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_the_schedule_adds_only_its_own_steps_and_keeps_every_change(old_data, new_data):
    old, new = load(old_data), load(new_data)
    diff = make_plan("c", render(new), render(old))
    scheduled = plan_between(old, new)
    added = [s for s in scheduled.steps if (s.kind, s.action) in ADDED_BY_SCHEDULE]
    kept = [s for s in scheduled.steps if (s.kind, s.action) not in ADDED_BY_SCHEDULE]
    assert sorted((s.kind, s.id, s.action) for s in kept) == sorted((s.kind, s.id, s.action) for s in diff.steps)
    assert [s.phase for s in scheduled.steps] == sorted((s.phase for s in scheduled.steps), key=PHASES.index)
    if not new.spec.loadbalancer.enabled:
        assert not [s for s in added if s.kind == "backends"]


@given(valid_specs(), valid_specs())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_the_schedule_orders_the_containers_phase_as_apply_runs_it(old_data, new_data):
    """Pull before any node is made; replacements in batches of at most max_unavailable, each
    between its drain and its restore; deletes of containers before those of networks."""
    old, new = load(old_data), load(new_data)
    steps = [s for s in plan_between(old, new).steps if s.phase == "containers" and s.action != "no-op"]
    order = [(s.kind, s.action) for s in steps]
    made = [i for i, s in enumerate(steps) if s.kind == "container" and s.action in ("create", "replace", "adopt")]
    pulls = [i for i, (kind, _) in enumerate(order) if kind == "image"]
    assert len(pulls) <= 1 and all(p < min(made) for p in pulls)
    assert bool(pulls) == (bool(made) and old.spec.containers.image != new.spec.containers.image)
    replaced = [s for s in steps if s.kind == "container" and s.action in ("replace", "adopt")]
    for number in {s.batch for s in replaced}:
        members = [i for i, s in enumerate(steps) if s.batch == number]
        nodes = [steps[i] for i in members if steps[i].kind == "container"]
        assert 1 <= len(nodes) <= new.spec.rollout.max_unavailable
        assert members == list(range(members[0], members[-1] + 1))  # one run, nothing in between
        if new.spec.loadbalancer.enabled:
            assert order[members[0]] == ("backends", "drain") and order[members[-1]] == ("backends", "restore")
            assert steps[members[0]].desired["nodes"] == [s.id for s in nodes]
    deletes = [i for i, s in enumerate(steps) if s.action == "delete"]
    assert all(i > j for i in deletes for j, s in enumerate(steps) if s.action != "delete")
    kinds = [steps[i].kind for i in deletes]
    assert kinds == sorted(kinds, key=lambda k: k != "container")
