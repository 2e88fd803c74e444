from dataclasses import replace

from conduit.plan.planner import make_plan
from conduit.spec.resources import Resource
from conduit.render.container import render_containers
from conduit.spec.load import load_text
from conduit.spec.resolve import with_cli_version
from tests.helpers import EXAMPLE, SMALL_VPS


def desired(text=None):
    doc = load_text(text or EXAMPLE.read_text(), "c.yaml", SMALL_VPS)
    return render_containers(with_cli_version(doc, "2.x"))


def test_empty_host_creates_everything():
    plan = make_plan("edge-1", desired(), [])
    assert {s.action for s in plan.steps} == {"create"}
    assert plan.summary() == {"add": 17, "change": 0, "destroy": 0, "adopt": 0, "pull": 0, "batches": 0, "new_identity": 0}  # network + 8 volumes + 8 containers


def test_converged_host_plans_nothing():
    want = desired()
    plan = make_plan("edge-1", want, want)
    assert plan.changes == []
    assert all(s.reason == "up to date" for s in plan.steps)


def test_memory_change_updates_one_container_in_place():
    new = desired(EXAMPLE.read_text().replace("        memory: 512MiB", "        memory: 448MiB"))
    plan = make_plan("edge-1", new, desired())
    (step,) = plan.changes
    assert (step.action, step.id, step.reason) == ("update", "conduit-8", "differs from the spec")
    assert [(c.field, c.old, c.new, c.forces_replacement) for c in step.changes] == [
        ("memory", 512 << 20, 448 << 20, False)
    ]


def test_max_clients_change_replaces_every_container():
    new = desired(EXAMPLE.read_text().replace("max_clients: 250", "max_clients: 300"))
    plan = make_plan("edge-1", new, desired())
    assert [s.action for s in plan.changes] == ["replace"] * 8
    assert all(c.field == "command" and c.forces_replacement for s in plan.changes for c in s.changes)
    assert plan.summary() == {"add": 8, "change": 0, "destroy": 8, "adopt": 0, "pull": 0, "batches": 0, "new_identity": 0}


def test_fewer_containers_deletes_the_rest_and_keeps_volumes():
    new = desired(EXAMPLE.read_text().replace("count: 8", "count: 6").replace("      8:  ", "      6:  "))
    plan = make_plan("edge-1", new, desired())
    deletes = [s for s in plan.changes if s.action == "delete"]
    assert [s.id for s in deletes] == ["conduit-7", "conduit-8"]
    assert not any(s.kind == "volume" for s in plan.changes)


def test_drift_is_named():
    want = desired()
    stopped = [replace(r, props=dict(r.props, state="exited")) if r.id == "conduit-2" else r for r in want]
    plan = make_plan("edge-1", want, stopped, drifted={("container", "conduit-2")})
    (step,) = plan.changes
    assert (step.action, step.reason) == ("update", "drift")


def test_steps_follow_phase_order():
    want = [
        Resource("tracker", "tracker", {"command": ["x"], "running": True}),
        Resource("container", "conduit-10", {"a": 1}),
        Resource("container", "conduit-2", {"a": 1}),
        Resource("sysctl", "net.core.rmem_max", {"value": "1"}),
        Resource("nginx_conf", "/etc/nginx/conduit/stream.conf", {"content": "x"}),
    ]
    order = [(s.kind, s.id) for s in make_plan("c", want, []).steps]
    assert order == [
        ("sysctl", "net.core.rmem_max"),
        ("nginx_conf", "/etc/nginx/conduit/stream.conf"),
        ("container", "conduit-2"),
        ("container", "conduit-10"),
        ("tracker", "tracker"),
    ]


def test_fingerprint_moves_with_the_host():
    want = desired()
    a = make_plan("edge-1", want, want).fingerprint
    b = make_plan("edge-1", want, want[:-1]).fingerprint
    assert a != b and a == make_plan("edge-1", want, list(reversed(want))).fingerprint


def test_a_plan_of_another_spec_settles_its_own_not_the_one_observed():
    from conduit.engine.intent import Apply
    from conduit.engine.planning import Observed, plan
    from conduit.engine.settle import settle

    eight = load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS)
    nine = load_text(EXAMPLE.read_text().replace("count: 8", "count: 9"), "c.yaml", SMALL_VPS)
    seen = Observed(settled=settle(eight))
    made = {s.id for s in plan(Apply(), nine, seen).steps if s.kind == "container"}
    assert len(made) == 9 and "conduit-9" in made
    assert len([s for s in plan(Apply(), eight, seen).steps if s.kind == "container"]) == 8
