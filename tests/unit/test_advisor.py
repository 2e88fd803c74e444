"""The capacity advisor: what it refuses, what it warns of, and what it says a host carries."""

from __future__ import annotations

import pytest

from conduit.render.init_spec import render_init
from conduit.errors import SpecError
from conduit.spec.advisor import capacity
from conduit.spec.load import load_text
from conduit.spec.policy import HostPolicy
from conduit.spec.profiles import HostFacts
from conduit.spec.resolve import nodes
from tests.helpers import EXAMPLE, SMALL_VPS, dump, minimal

POLICY = (HostPolicy(), "host.yaml")
# The machine the first week was tried on: 2 cores, 23.5 GiB.
TWO_CORES = HostFacts(vcpus=2.0, memory=24683784 << 10, nic_mbps=1000, nofile_limit=1 << 20, primary_interface="eth0")


def load(text: str, facts: HostFacts = SMALL_VPS):
    return load_text(text, "c.yaml", facts, POLICY)


def refused(text: str, facts: HostFacts = SMALL_VPS) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(text, facts)
    return info.value.lines()


def warnings(text: str, facts: HostFacts = SMALL_VPS) -> list[str]:
    return capacity(load(text, facts)).warnings


def init_with_count(count: int, facts: HostFacts = SMALL_VPS) -> str:
    return render_init(facts, "h").replace("    count: 1\n", f"    count: {count}\n")


def test_init_then_count_4_is_valid_and_follows_the_host():
    doc = load(init_with_count(4))
    assert capacity(doc).warnings == []
    # (2 CPUs - 0.2) / 4 and (4 GiB - 512 MiB) / 4; 1.75 units x 250 clients shared by the four
    assert {(n.cpus, n.memory, n.max_clients) for n in nodes(doc)} == {(0.45, 896 << 20, 109)}
    assert capacity(doc).summary[0] == (
        "capacity: 4 nodes x 109 clients = 436 clients, each node 0.45 CPU and 896 MiB (cpus and memory: the default "
        "even share): 242 clients per CPU and 249 per 2 GiB of memory (Psiphon: 150-350 per CPU and 2 GB)"
    )
    assert capacity(doc).summary[1] == (
        "capacity: this host has 1.8 CPUs and 3.5 GiB after its reserve: 262-612 clients by Psiphon's guidance, "
        "which 1 node can serve (a node takes up to 1000); at most 56 nodes fit, at the least a node runs with (0.01 CPU, 64 MiB)"
    )


def test_init_writes_no_frozen_limits():
    text = render_init(SMALL_VPS, "h")
    live = [line.split("#")[0].strip() for line in text.splitlines()]
    assert not [line for line in live if line.startswith(("cpus:", "max_clients:", "memory:")) and line != "memory: auto"]
    assert "# cpus: 1.8" in text and "# memory: 3.5GiB" in text and "# max_clients: 438" in text


def test_100_nodes_on_2_cores_warn_past_the_guidance():
    text = init_with_count(100, TWO_CORES).replace("    # max_clients: 450\n", "    max_clients: 250\n")
    assert warnings(text, TWO_CORES) == [
        "c.yaml:44:5: spec.conduit.max_clients: 250 clients on 0.018 CPU (the default even share) per node is 13889 "
        "clients per CPU, past Psiphon's guidance of 150-350; lower count to 2 or max_clients to 6",
        "c.yaml:44:5: spec.conduit.max_clients: 250 clients on 235 MiB (the default even share) per node is 2179 "
        "clients per 2 GiB, past Psiphon's guidance of 150-350; lower count to 16 or max_clients to 40",
    ]


def test_100_nodes_with_the_default_clients_stay_inside_the_guidance():
    assert warnings(init_with_count(100, TWO_CORES), TWO_CORES) == []


def test_a_share_below_what_docker_takes_is_refused_at_count():
    assert refused(init_with_count(200, TWO_CORES), TWO_CORES) == [
        "c.yaml:22:5: spec.containers.count: 200 nodes would get 0.009 CPU each (the default even share of the 1.8 CPUs "
        "left after the reserve), below the 0.01 CPU a node needs (Docker takes no less); lower count to 180"
    ]
    assert capacity(load(init_with_count(180, TWO_CORES), TWO_CORES)).warnings == []


def test_pinned_cpus_above_the_host_are_refused_in_one_line():
    text = dump(minimal(containers={"count": 8, "resources": {"cpus": 0.5}}))
    assert refused(text) == [
        "c.yaml:9:7: spec.containers.resources.cpus: 8 nodes ask for 4 CPUs in all, more than the host's 2 CPUs; "
        "lower cpus to 0.225 or count to 3"
    ]


def test_pinned_cpus_into_the_reserve_warn():
    text = dump(minimal(containers={"count": 8, "resources": {"cpus": 0.24}}))
    assert warnings(text) == [
        "c.yaml:9:7: spec.containers.resources.cpus: 8 nodes ask for 1.92 CPUs in all, more than the 1.8 CPUs left "
        "after host.reserve_cpus: they compete with the OS, nginx and the tracker; lower cpus to 0.225 or count to 7"
    ]


def test_memory_past_the_reserve_is_refused_in_human_units():
    text = dump(minimal(containers={"count": 3, "resources": {"memory": "1.5GiB"}}))
    assert refused(text) == [
        "c.yaml:9:7: spec.containers.resources.memory: 3 nodes ask for 4.5 GiB in all, more than the 3.5 GiB left after "
        "host.reserve_memory of the host's 4 GiB; lower memory to 1.16 GiB or count to 2"
    ]


def test_an_override_is_named_where_it_was_written():
    text = dump(minimal(containers={"count": 2, "overrides": {2: {"memory": "3.5GiB"}}}))
    (line,) = refused(text)
    assert line.startswith("c.yaml:10:9: spec.containers.overrides.2.memory: 2 nodes ask for 5.25 GiB in all")


def test_a_size_needs_a_unit():
    assert refused(dump(minimal(containers={"count": 2, "resources": {"memory": 512}}))) == [
        "c.yaml:9:7: spec.containers.resources.memory: give a unit, e.g. 512MiB or 2GiB"
    ]
    assert refused(dump(minimal(host={"memory": "4096"})))[0].endswith("spec.host.memory: give a unit, e.g. 512MiB or 2GiB, or 'auto'")


def test_a_pinned_value_below_the_least_a_node_runs_with():
    assert refused(dump(minimal(containers={"count": 2, "resources": {"memory": "32MiB", "cpus": 0.005}}))) == [
        "c.yaml:9:7: spec.containers.resources.memory: 32 MiB is below the 64 MiB a node needs (a Conduit process needs "
        "that to start); raise memory to 64 MiB",
        "c.yaml:10:7: spec.containers.resources.cpus: 0.005 CPU is below the 0.01 CPU a node needs (Docker takes no less); "
        "raise cpus to 0.01",
    ]


def test_a_reserve_that_takes_the_whole_host():
    assert refused(dump(minimal(host={"reserve_cpus": 2}))) == [
        "c.yaml:7:5: spec.host.reserve_cpus: the host has 2 CPUs and host.reserve_cpus keeps 2 CPUs of it: too little "
        "is left for one node; lower reserve_cpus"
    ]


def test_pinned_cpus_and_clients_past_the_guidance_say_what_to_raise():
    text = dump(minimal(containers={"count": 2, "resources": {"cpus": 0.5}}, conduit={"max_clients": 400}))
    assert warnings(text)[0] == (
        "c.yaml:11:5: spec.conduit.max_clients: 400 clients on 0.5 CPU per node is 800 clients per CPU, past Psiphon's "
        "guidance of 150-350; lower max_clients to 175 or raise cpus to 1.15"
    )


def test_the_worst_node_is_named_and_a_profile_default_points_at_the_profile():
    found = warnings(EXAMPLE.read_text())  # cluster-v2's 250 clients on 0.22 CPU; node 8 has 0.2
    assert found[0] == (
        "c.yaml:58:5: spec.conduit.max_clients: 250 clients on 0.2 CPU per node is 1250 clients per CPU, past Psiphon's "
        "guidance of 150-350; lower max_clients to 70 or raise cpus to 0.72"
    )
    (cpu, memory) = warnings(dump(minimal(host={"profile": "cluster-v2"})))
    assert cpu == (
        "c.yaml:7:5: spec.host.profile: 250 clients on 0.22 CPU (the cluster-v2 profile's) per node is 1136 clients per "
        "CPU, past Psiphon's guidance of 150-350; set max_clients to 77"
    )


def test_a_plan_carries_the_summary_as_notes_only_when_there_is_one():
    from conduit.plan.planner import Plan, plan_from_json

    bare = Plan("c", [], "f")
    assert "notes" not in bare.to_json() and plan_from_json(bare.to_json()).notes == []
    noted = Plan("c", [], "f", notes=capacity(load(init_with_count(4))).summary)
    assert plan_from_json(noted.to_json()).notes == noted.notes and len(noted.notes) == 2


def host_sized(**spec) -> tuple[str, ...]:
    return capacity(load(dump(minimal(**spec)))).host_sized


def test_the_loaded_spec_records_the_sizing_it_leaves_to_defaults_counted_from_the_whole_host():
    assert host_sized() == ("containers.count", "containers.resources.cpus", "containers.resources.memory", "conduit.max_clients")
    given = {"count": 2, "resources": {"cpus": 0.5, "memory": "1GiB"}}
    assert host_sized(containers=given, conduit={"max_clients": 100}) == ()
    # One node given its own clients: the other still takes the host's default.
    assert host_sized(containers=given | {"overrides": {2: {"max_clients": 10}}}) == ("conduit.max_clients",)
    assert host_sized(containers=given | {"overrides": {1: {"max_clients": 10}, 2: {"max_clients": 20}}}) == ()
    # cluster-v2 gives each node fixed memory and clients: only its CPU share counts the host.
    assert host_sized(host={"profile": "cluster-v2"}, containers={"count": 2}) == ("containers.resources.cpus",)
    # A host the spec describes is this cluster's part of the machine: only what it leaves to the machine counts.
    assert host_sized(host={"vcpus": 1, "memory": "2GiB"}) == ()
    assert host_sized(host={"vcpus": 1}) == ("containers.count", "containers.resources.memory", "conduit.max_clients")
    assert host_sized(host={"memory": "2GiB"}, containers={"count": 2}) == ("containers.resources.cpus", "conduit.max_clients")
    assert host_sized(host={"profile": "cluster-v2", "memory": "2GiB"}, containers={"count": 2}) == ("containers.resources.cpus",)
    assert host_sized(host={"profile": "cluster-v2", "vcpus": 1}) == ("containers.count",)


def test_a_spec_made_otherwise_records_no_default_sizing():
    from conduit.spec.spec import ClusterSpec

    assert capacity(ClusterSpec.model_validate(minimal())).host_sized == ()


def test_the_shared_host_warning_names_the_other_cluster_and_the_fields_to_set():
    from conduit.spec.advisor import shared_host

    assert shared_host("edge", 3, ("containers.resources.cpus", "containers.resources.memory", "conduit.max_clients")) == (
        "cluster edge has 3 nodes on this host too, but this spec leaves containers.resources.cpus, containers.resources.memory "
        "and conduit.max_clients to defaults sized for the whole host: set them, or host.vcpus and host.memory, to this "
        "cluster's part of the host so that both clusters fit"
    )
    assert shared_host("edge", 1, ("conduit.max_clients",)) == (
        "cluster edge has 1 node on this host too, but this spec leaves conduit.max_clients to a default sized for the whole "
        "host: set it, or host.vcpus and host.memory, to this cluster's part of the host so that both clusters fit"
    )


def test_one_warning_per_other_conduit_cluster_only_for_a_spec_sized_by_default():
    from conduit.drivers.docker import shared_host_warnings
    from conduit.render.container import CLUSTER, MANAGED_BY, MANAGER

    def listed(cluster: str | None) -> dict:
        return {"Labels": {MANAGED_BY: MANAGER, CLUSTER: cluster} if cluster else {}}

    entries = [listed("b"), listed("test"), listed("a"), listed("b"), listed(None)]  # ours is "test"
    said = shared_host_warnings(load(dump(minimal())), entries)
    assert [line.split(" on this host")[0] for line in said] == ["cluster a has 1 node", "cluster b has 2 nodes"]
    explicit = minimal(containers={"count": 1, "resources": {"cpus": 0.5, "memory": "1GiB"}}, conduit={"max_clients": 100})
    assert shared_host_warnings(load(dump(explicit)), entries) == []
    assert shared_host_warnings(load(dump(minimal())), [listed("test"), listed(None)]) == []
