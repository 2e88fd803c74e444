"""Rendering is deterministic, and a host that already matches its spec plans nothing."""

import yaml
from hypothesis import HealthCheck, given, settings

from conduit.spec.load import load_text
from conduit.engine.settle import settle
from conduit.plan.planner import make_plan
from conduit.render.desired import render
from conduit.spec.profiles import HostFacts
from tests.strategies import valid_specs

HOST = HostFacts(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=20000, primary_interface="eth0")


def load(data):
    doc = load_text(yaml.safe_dump(data, sort_keys=False), "c.yaml", HOST)
    return settle(doc).spec


@given(valid_specs())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_render_is_deterministic(data):
    first, second = render(load(data)), render(load(data))
    assert first == second
    assert [r.key for r in first] == [r.key for r in second]


@given(valid_specs())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_plan_of_a_converged_host_is_empty(data):
    desired = render(load(data))
    plan = make_plan(data["metadata"]["name"], desired, desired)
    assert plan.changes == []


@given(valid_specs(), valid_specs())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_applying_a_plan_converges(old_data, new_data):
    """Playing the plan's steps onto the old state gives exactly the new state."""
    old, new = render(load(old_data)), render(load(new_data))
    plan = make_plan("c", new, old)
    state = {r.key: r.props for r in old}
    for step in plan.steps:
        if step.action == "delete":
            del state[step.key]
        else:
            state[step.key] = step.desired
    kept = {r.key for r in old if r.keep}
    assert {k: v for k, v in state.items() if k not in kept or k in {r.key for r in new}} == {r.key: r.props for r in new}

