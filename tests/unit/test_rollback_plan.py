"""The plan a first apply's rollback runs: undo what it added, never adopt or rebuild a node."""

from __future__ import annotations

from conduit.engine.intent import Rollback
from conduit.engine.planning import Observed, plan
from conduit.spec.load import load_text
from conduit.spec.resources import Observation, Resource
from tests.helpers import SMALL_VPS, dump, minimal

DOC = load_text(dump(minimal()), "cluster.yaml", SMALL_VPS)


def undo_plan(doc, before, observed):
    """A first apply's rollback: back to `before`, from the host as observed now."""
    return plan(Rollback(None, before=tuple(before)), doc, Observed(Observation(resources=observed)))


def _v1_node(name: str) -> Resource:
    # What observe_docker makes of a bash manager's container: no labels, so no image or command.
    props = {"network": "host", "ip": None, "ports": [], "volume": f"{name}-data:/home/conduit/data", "cpus": 0.0, "memory": 0, "state": "running"}
    return Resource("container", name, props, frozenset(props) - {"cpus", "memory", "state"}, adopt=True)


def test_a_restored_v1_node_is_left_alone_not_adopted_without_an_image():
    before = [_v1_node("conduit"), Resource("volume", "conduit-data", {}, keep=True)]
    observed = [_v1_node("conduit"), Resource("volume", "conduit-data", {}, keep=True)]
    plan = undo_plan(DOC, before, observed)
    assert plan.changes == []  # before the fix: an adopt step whose desired props had no "image"


def test_what_the_failed_apply_added_is_removed():
    before = [_v1_node("conduit")]
    added = Resource("container", "conduit-2", {"image": "x", "state": "running"})
    plan = undo_plan(DOC, before, [_v1_node("conduit"), added])
    assert [(s.kind, s.id, s.action) for s in plan.changes] == [("container", "conduit-2", "delete")]
