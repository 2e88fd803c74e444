"""A new digest Docker does not have yet: the plan renders its nodes as expected, pulls it and
asks it as steps, and the probe step refuses an image that says otherwise (pure parts; the real
registry and engine are tests/integration/test_updates.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from conduit.engine.settle import Choice, ImageSeen, Update, expected_facts, new_version_said, settle
from conduit.execute.image_probe import verdict
from conduit.plan.planner import Step
from conduit.plan.schedule import Rollout, pull
from conduit.spec.image import static_facts
from conduit.spec.resolve import image_facts
from conduit.spec.load import load_text
from conduit.spec.policy import HostPolicy
from tests.helpers import SMALL_VPS, dump, minimal

REPO = "ghcr.io/psiphon-inc/conduit/cli"
REF = f"{REPO}@sha256:" + "1" * 64
OLD_ID = "sha256:" + "a" * 64


def spec(tag: str = "latest"):
    text = dump(minimal(containers={"count": 2, "image": f"{REPO}:{tag}"}, updates={"policy": "report"}))
    return load_text(text, "cluster.yaml", SMALL_VPS, (HostPolicy(), "p"))


def said(version: str):
    """What an image of this version said when it was asked."""
    return replace(static_facts(f"{REPO}:{version}"), source="image", image_id=OLD_ID, version=version)


def to_pull(tag: str, running):
    update = Update(f"{REPO}:{tag}", OLD_ID, "sha256:" + "0" * 64, REF, "sha256:" + "1" * 64, True, pulled=False)
    return settle(spec(tag), ImageSeen(Choice(REF, update, pull=True), docker_asked=True, running=running))


def test_an_unversioned_tag_is_planned_as_what_the_nodes_image_said():
    settled = to_pull("latest", said("1.5.0"))
    facts = image_facts(settled.spec)
    assert facts.image_id == REF and facts.describe() == "official 1.5.0"  # nodes pinned to the digest, rendered as 1.x
    assert settled.probe == {"image": REF, "cli": "1.x", "build": "official", "rendered_for": "official 1.5.0", "floor": "1.5.0"}
    assert not settled.image_present and settled.problems == []
    assert any(w.startswith(f"{REF} is not on this host yet: its nodes are planned as official 1.5.0 (what the nodes' image said)")
               and "asked what it speaks once it is pulled" in w for w in settled.warnings)


def test_a_tag_of_another_family_is_planned_as_its_tag_says():
    settled = to_pull("2.0.0", said("1.5.0"))
    assert image_facts(settled.spec).describe() == "official 2.0.0" and settled.probe["cli"] == "2.x"
    assert settled.probe["floor"] == "1.5.0"


def test_a_tag_of_the_same_family_keeps_what_the_nodes_image_said():
    running = replace(said("2.0.0"), has_monitor=True)
    assert expected_facts(static_facts(f"{REPO}:2.0.1"), running).has_monitor is True


def test_with_nothing_known_only_the_flags_every_version_accepts():
    settled = to_pull("latest", None)
    assert settled.probe["cli"] is None and settled.probe["floor"] is None
    assert any("it is not on this host yet; it is asked once it is pulled" in w for w in settled.warnings)


def test_the_pull_is_followed_by_its_probe_before_any_node():
    node = Step("containers", "container", "n-1", "replace", "image", desired={"image": f"{REPO}:latest", "image_id": REF})
    probe = {"image": REF, "cli": "2.x", "build": "official", "rendered_for": "official 2.0.0", "floor": "2.0.0"}
    steps = pull([node], Rollout(image=f"{REPO}:latest", image_present=False, max_unavailable=1, drain_seconds=0, front=False, probe=probe))
    assert [(s.kind, s.action, s.id) for s in steps] == [("image", "pull", REF), ("image", "probe", REF)]
    assert steps[1].desired == probe
    assert pull([replace(node, action="no-op")], Rollout(f"{REPO}:latest", False, 1, 0, False, probe=probe)) == []


EXPECTED = {"image": REF, "cli": "2.x", "build": "official", "rendered_for": "official 2.0.0", "floor": "2.0.0"}


@pytest.mark.parametrize("version", ["2.0.0", "2.0.3", "2.1.0"])
def test_an_image_as_expected_or_higher_passes(version):
    assert verdict(EXPECTED, said(version)) is None


def test_a_lower_version_is_refused():
    assert verdict(EXPECTED, said("1.5.0")) == (
        f"{REF} says it is official 1.5.0, below 2.0.0 that the nodes run: versions move up only; "
        "no node was touched (`conduit rollback` is the way down)"
    )
    assert verdict(EXPECTED | {"floor": "2.0.1"}, said("2.0.0")).endswith("(`conduit rollback` is the way down)")


def test_another_family_or_build_is_run_plan_again():
    higher_1x = EXPECTED | {"cli": "1.x", "rendered_for": "official 1.5.0", "floor": "1.5.0"}
    assert verdict(higher_1x, said("2.0.0")) == (
        "the new image speaks official 2.0.0, not official 1.5.0 that the plan was rendered for; no node was touched: run plan again"
    )
    community = replace(static_facts(f"{REPO}:2.0.0", build="community"), source="image")
    assert verdict(EXPECTED | {"floor": None}, community).endswith("run plan again")


def test_an_image_that_does_not_answer_is_refused_only_when_a_cli_was_assumed():
    silent = replace(static_facts(f"{REPO}:latest"), source="image")
    assert "did not answer `conduit start --help`" in verdict(EXPECTED, silent)
    assert verdict(EXPECTED | {"cli": None, "build": None, "floor": None}, silent) is None


def test_the_check_says_a_new_version_is_known_once_pulled():
    assert new_version_said({"new_version": None, "pulled": False}) == "its version is known once pulled"
    assert new_version_said({"new_version": "official 2.0.0", "pulled": True}) == "official 2.0.0"
    assert new_version_said({"new_version": None}) is None  # a plan saved before images were pulled as steps


releases = st.tuples(st.sampled_from([1, 2]), st.integers(0, 12), st.integers(0, 12)).map(lambda v: "%d.%d.%d" % v)


@settings(max_examples=80, deadline=None)
@given(releases, releases)
def test_the_probe_refuses_exactly_a_lower_version(floor, version):
    """Whatever the nodes run and the image says: refused as lower iff it is lower; otherwise only
    another CLI family than the plan was rendered for stops it."""
    expected = {"image": REF, "cli": said(floor).cli, "build": "official", "rendered_for": f"official {floor}", "floor": floor}
    answer = verdict(expected, said(version))
    if Version(version) < Version(floor):
        assert answer is not None and "versions move up only" in answer
    elif version.split(".")[0] != floor.split(".")[0]:
        assert answer is not None and answer.endswith("run plan again")
    else:
        assert answer is None
