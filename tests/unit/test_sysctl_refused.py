"""Refused sysctl keys converge under on_refused: warn. A key this kernel lacks or serves read-only,
or whose very value it refused at the last apply, is held: a no-op with a warning, planned again
only when the host starts taking it or the spec changes the value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conduit.drivers.sysctl import observe_sysctl
from conduit.execute.executor import Executor
from conduit.engine.planning import target_of
from conduit.engine.intent import Apply
from conduit.engine.observe import recorded_refusals
from conduit.engine.planning import Observed, plan
from conduit.plan.planner import Step
from conduit.render.desired import render
from conduit.spec.load import load_text
from conduit.state.stores import open_state
from tests.helpers import SMALL_VPS, dump, minimal

# Read-only for root too: the kernel serves it 0444 (write: EACCES). Used as a key that refuses.
READ_ONLY = Path("/proc/sys/kernel/osrelease")


def doc_with(on_refused: str, overrides: dict | None = None):
    spec = minimal(containers={"count": 1, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0"},
                   conduit={"cli_version": "2.0", "build": "official"},
                   sysctl={"profile": "none", "on_refused": on_refused, "overrides": overrides or {"net.core.rmem_max": 33554432, "fs.nr_open": 1048576}})  # fmt: skip
    return load_text(dump(spec), "cluster.yaml", SMALL_VPS)


def proc_root(tmp_path: Path, values: dict[str, str]) -> Path:
    for key, value in values.items():
        path = tmp_path / "proc/sys" / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return tmp_path


def plan_for(doc, root: Path, before=None):
    keys = [r.id for r in render(doc) if r.kind == "sysctl"]
    return plan(Apply(), doc, Observed(observe_sysctl(doc, root, keys), has_image=True, refused_before=before or {}))


def sysctl_steps(plan):
    return {s.id: (s.action, s.reason) for s in plan.steps if s.kind == "sysctl"}


def test_a_key_the_kernel_lacks_is_held_under_warn(tmp_path):
    root = proc_root(tmp_path, {"fs.nr_open": "1048576"})  # net.core.rmem_max absent
    plan = plan_for(doc_with("warn"), root)
    assert sysctl_steps(plan)["net.core.rmem_max"] == ("no-op", "held: this kernel cannot take it now")
    assert [s for s in plan.changes if s.kind == "sysctl"] == []
    assert any("net.core.rmem_max does not exist on this kernel" in w for w in plan.warnings)


def test_under_fail_the_same_key_stops_the_plan(tmp_path):
    root = proc_root(tmp_path, {"fs.nr_open": "1048576"})
    plan = plan_for(doc_with("fail"), root)
    assert sysctl_steps(plan)["net.core.rmem_max"][0] == "update"
    assert any("net.core.rmem_max does not exist" in p for p in plan.problems)


def test_a_key_that_appears_is_planned_again(tmp_path):
    root = proc_root(tmp_path, {"fs.nr_open": "1048576", "net.core.rmem_max": "212992"})
    plan = plan_for(doc_with("warn"), root)
    assert sysctl_steps(plan)["net.core.rmem_max"][0] == "update"


def test_a_read_only_key_is_held(tmp_path):
    root = proc_root(tmp_path, {"fs.nr_open": "1048576"})
    link = root / "proc/sys/net/core/rmem_max"
    link.parent.mkdir(parents=True)
    link.symlink_to(READ_ONLY)
    assert not os.access(link, os.W_OK)
    assert sysctl_steps(plan_for(doc_with("warn"), root))["net.core.rmem_max"][0] == "no-op"


def test_a_value_the_kernel_refused_is_held_until_the_spec_changes_it(tmp_path):
    root = proc_root(tmp_path, {"fs.nr_open": "1048576", "net.core.rmem_max": "212992"})
    before = {"net.core.rmem_max": ("33554432", "Invalid argument")}
    plan = plan_for(doc_with("warn"), root, before)
    assert sysctl_steps(plan)["net.core.rmem_max"] == ("no-op", "held: the kernel refused 33554432 (Invalid argument)")
    assert any("was refused by the kernel at the last apply (Invalid argument)" in w for w in plan.warnings)
    changed = doc_with("warn", {"net.core.rmem_max": 16777216, "fs.nr_open": 1048576})
    assert sysctl_steps(plan_for(changed, root, before))["net.core.rmem_max"][0] == "update"
    assert sysctl_steps(plan_for(doc_with("fail"), root, before))["net.core.rmem_max"][0] == "update"


def test_the_executor_reports_what_the_kernel_answered(tmp_path):
    root = proc_root(tmp_path, {"fs.nr_open": "1024"})
    link = root / "proc/sys/net/core/rmem_max"
    link.parent.mkdir(parents=True)
    link.symlink_to(READ_ONLY)
    ex = Executor(target_of(doc_with("warn")), root, tmp_path / "state", None)
    ex.run(Step("sysctl", "sysctl", "net.core.rmem_max", "update", "", [], {"value": "33554432"}, on_error="warn"))
    ex.run(Step("sysctl", "sysctl", "fs.nr_open", "update", "", [], {"value": "1048576"}, on_error="warn"))
    assert ex.sysctl_answers == {"net.core.rmem_max": ("33554432", "Permission denied"), "fs.nr_open": ("1048576", None)}
    assert (root / "proc/sys/fs/nr_open").read_text() == "1048576\n"


def test_the_state_remembers_a_refusal_until_the_kernel_takes_the_key(tmp_path):
    state = open_state(tmp_path)
    state.kernel.record("net.core.rmem_max", "33554432", "Invalid argument")
    state.kernel.record("fs.nr_open", "1048576", None)
    assert recorded_refusals(tmp_path) == {"net.core.rmem_max": ("33554432", "Invalid argument")}
    state.kernel.record("net.core.rmem_max", "33554432", None)
    assert recorded_refusals(tmp_path) == {}


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_no_readable_state_means_nothing_is_held(tmp_path, broken):
    if broken == "garbage":
        (tmp_path / "state.db").write_bytes(b"not a database" * 100)
    assert recorded_refusals(tmp_path) == {}
