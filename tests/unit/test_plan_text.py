"""The plan as a volunteer reads it: nodes that change alike on one line, sizes in binary units,
whole values with --verbose, a refused kernel key explained when it matters, not on every run."""

import dataclasses

from rich.text import Text

from conduit.plan.planner import Change, Plan, Step
from conduit.views.grouping import id_ranges
from conduit.views.report import render_plan
from conduit.spec.units import human_size
from tests.unit.test_plan_golden import applied, base, load, plan_for, sysctl_refused, with_front


def plain(plan, verbose=False) -> str:
    return Text.from_markup(render_plan(plan, verbose)).plain


def test_sizes_read_in_binary_units():
    assert human_size(512 << 20) == "512 MiB"
    assert human_size(3 << 29) == "1.5 GiB"
    assert human_size(402653184) == "384 MiB"
    assert human_size(1 << 30) == "1 GiB"
    assert human_size(1000) == "1000 B"
    assert human_size(1431655765) == "1.33 GiB"


def test_node_names_read_as_ranges():
    assert id_ranges(["conduit-1", "conduit-2", "conduit-3", "conduit-5"]) == "conduit-1..3, conduit-5"
    assert id_ranges(["conduit-7"]) == "conduit-7"
    assert id_ranges(["n-9", "n-10"]) == "n-9..10"


SMALL = {"cpus": 0.25, "memory": "384MiB", "ulimit_nofile": 16384}


def four_nodes_new_max_clients():
    old, _ = load(with_front(containers__count=4, containers__resources=SMALL))
    doc, _ = load(with_front(containers__count=4, containers__resources=SMALL, conduit__max_clients=150))
    return plan_for(doc, applied(old).obs)


def test_four_nodes_that_change_alike_are_one_line():
    text = plain(four_nodes_new_max_clients())
    assert "-/+ container conduit-1..4  (differs from the spec; forces replacement)" in text
    assert "replaced 1 at a time (batches 1..4); each batch leaves nginx 5s before it stops" in text
    assert text.count("~ command: -m 100 -> -m 150") == 1
    assert "drain backends" not in text and "..." not in text.replace("1..4", "")


def test_a_node_that_changes_otherwise_has_its_own_line():
    old, _ = load(base(containers__count=3))
    doc, _ = load(base(containers__count=3, containers__resources={"cpus": 0.5, "memory": "512MiB", "ulimit_nofile": 16384}))
    obs = applied(old).obs
    plan = plan_for(doc, obs)
    last = plan.steps[-1]  # conduit-3 was also stopped
    plan.steps[-1] = dataclasses.replace(last, changes=(*last.changes, Change("state", "exited", "running")))
    text = plain(plan)
    assert "~ container conduit-1..2  (differs from the spec)" in text
    assert "~ container conduit-3  (differs from the spec)" in text
    assert text.count("~ memory: 384 MiB -> 512 MiB") == 2


def test_verbose_shows_every_node_and_step_with_whole_values():
    text = plain(four_nodes_new_max_clients(), verbose=True)
    assert text.count("-/+ container conduit-") == 4 and text.count("|| drain backends conduit-") == 4
    assert "~ command: start -m 100 -b 5 -d /home/conduit/data --metrics-addr 0.0.0.0:9090 -> start -m 150" in text
    assert "volume conduit-data-4  (up to date)" in text


def test_creates_of_many_nodes_show_what_differs_per_node():
    doc, _ = load(base(containers__count=4, containers__resources=SMALL))
    text = plain(plan_for(doc, applied(load(base(containers__count=1, containers__resources=SMALL))[0]).obs))
    assert "+ container conduit-2..4  (not on the host)" in text
    assert "      volume: \"conduit-data-2:/home/conduit/data\"\n        .. conduit-4: \"conduit-data-4:/home/conduit/data\"" in text
    assert "      memory: 384 MiB" in text and "      cpus: 0.25" in text


def test_a_refused_key_is_one_line_on_a_run_with_nothing_to_do():
    doc, _, obs = sysctl_refused()
    plan = plan_for(doc, obs)
    quiet, verbose = plain(plan), plain(plan, verbose=True)
    assert "warning:" not in quiet
    assert "held: net.netfilter.nf_conntrack_max; `conduit plan --verbose` says why" in quiet
    assert "warning: sysctl net.netfilter.nf_conntrack_max does not exist on this kernel" in verbose


def test_a_refused_key_is_explained_when_the_plan_changes_the_host():
    doc, _, obs = sysctl_refused()
    obs.resources = [r for r in obs.resources if r.kind != "container"]
    text = plain(plan_for(doc, obs))
    assert "warning: sysctl net.netfilter.nf_conntrack_max does not exist on this kernel" in text


def test_other_warnings_are_always_said():
    plan = Plan("c", [Step("sysctl", "sysctl", "fs.file-max", "no-op", "up to date")], "f", warnings=["the registry was not asked"])
    assert "warning: the registry was not asked" in plain(plan)
