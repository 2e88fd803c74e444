"""Another cluster on the same host: its containers are never ours to take, and a node of ours
never starts on a volume one of them runs on (the two would share one key)."""

from __future__ import annotations

from conduit.drivers.docker import _observe_other_container
from conduit.render.container import CLUSTER, MANAGED_BY, MANAGER
from conduit.spec.load import load_text
from conduit.spec.resources import Observation
from tests.helpers import SMALL_VPS, dump, minimal


def spec(prefix: str, volume_prefix: str):
    doc = minimal(containers={"count": 2, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0", "naming": {"prefix": prefix, "volume_prefix": volume_prefix}},
                  conduit={"cli_version": "2.0", "build": "official"})  # fmt: skip
    doc["metadata"]["name"] = prefix
    return load_text(dump(doc), "cluster.yaml", SMALL_VPS)


def entry(name: str, volume: str, cluster: str | None) -> dict:
    labels = {MANAGED_BY: MANAGER, CLUSTER: cluster} if cluster else {}
    return {"Id": name, "Names": [f"/{name}"], "Labels": labels, "State": "running",
            "Mounts": [{"Type": "volume", "Name": volume, "Destination": "/home/conduit/data"}]}  # fmt: skip


def observed(doc, *entries: dict) -> Observation:
    obs = Observation()
    for e in entries:
        _observe_other_container(doc, None, e, e["Names"][0][1:], obs)
    return obs


def test_a_node_name_held_by_another_cluster_names_that_cluster_and_the_prefix():
    obs = observed(spec("a", "b-data"), entry("a-1", "a-data-1", "other"))
    assert obs.problems == ["container a-1 belongs to cluster other on this host; give this cluster another containers.naming.prefix"]
    assert obs.foreign == ["container a-1 (conduit cluster other)"] and obs.resources == []


def test_a_volume_another_cluster_runs_on_is_refused():
    obs = observed(spec("d", "a-data"), entry("a-2", "a-data-2", "a"))
    assert obs.problems == [
        "volume a-data-2 is the data volume of container a-2 (cluster a); two nodes on one volume would share one key: "
        "give this cluster another containers.naming.volume_prefix"
    ]


def test_a_volume_a_stranger_runs_on_is_refused_too():
    (problem,) = observed(spec("d", "data"), entry("mine", "data-1", None)).problems
    assert problem.startswith("volume data-1 is the data volume of container mine (not managed by conduit);")


def test_neighbours_on_their_own_names_and_volumes_are_left_alone():
    obs = observed(spec("d", "d-data"), entry("a-1", "a-data-1", "a"), entry("web", "web-data", None))
    assert obs.problems == [] and obs.foreign == [] and obs.resources == []
