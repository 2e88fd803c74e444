"""spec.updates.versions: a version range checked where the spec is loaded, one line per problem
naming file, line, column and field, and a range only where the host allows every tag."""

from __future__ import annotations

import pytest

from conduit.errors import SpecError
from conduit.spec.load import load_text
from conduit.spec.policy import HostPolicy
from tests.helpers import SMALL_VPS, dump, minimal

IMAGE = "ghcr.io/psiphon-inc/conduit/cli:2.0.0"
DEFAULTS = (HostPolicy(), "the default host policy")


def spec(updates: dict) -> str:
    return dump(minimal(containers={"count": 1, "image": IMAGE}, updates=updates))


def problems(text: str, policy=DEFAULTS) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(text, "cluster.yaml", SMALL_VPS, policy)
    return info.value.lines()


@pytest.mark.parametrize("policy", ["report", "auto"])
def test_a_range_is_kept_as_written(policy):
    doc = load_text(spec({"policy": policy, "versions": ">=2.0,<3"}), "cluster.yaml", SMALL_VPS, DEFAULTS)
    assert doc.spec.updates.versions == ">=2.0,<3"


def test_no_range_by_default():
    doc = load_text(spec({"policy": "report"}), "cluster.yaml", SMALL_VPS, DEFAULTS)
    assert doc.spec.updates.versions is None


@pytest.mark.parametrize("bad", [">=2.0,<<3", "2.x", "latest", ">=two"])
def test_a_bad_range_is_one_line_naming_the_field(bad):
    (line,) = problems(spec({"policy": "report", "versions": bad}))
    assert line.startswith("cluster.yaml:") and ": spec.updates.versions: is not a version range (" in line
    assert line.endswith('write it like ">=2.0,<3"') and "\n" not in line


def test_an_empty_range_is_refused():
    (line,) = problems(spec({"policy": "report", "versions": " "}))
    assert line.endswith('spec.updates.versions: is empty: give a version range like ">=2.0,<3"')


def test_a_range_needs_a_policy_that_asks_the_registry():
    (line,) = problems(spec({"policy": "off", "versions": ">=2.0,<3"}))
    assert "spec.updates: versions needs policy report or auto" in line
    (line,) = problems(spec({"versions": ">=2.0,<3"}))  # off is the default
    assert "versions needs policy report or auto" in line


def test_a_host_that_allows_only_some_tags_refuses_a_range():
    policy = (HostPolicy(images=["ghcr.io/psiphon-inc/conduit/cli:2.0.*"]), "host policy p")
    load_text(spec({"policy": "report"}), "cluster.yaml", SMALL_VPS, policy)  # the pinned tag itself is allowed
    (line,) = problems(spec({"policy": "report", "versions": ">=2.0,<3"}), policy)
    assert "spec.updates.versions: the host allows only some tags of ghcr.io/psiphon-inc/conduit/cli " in line
    assert line.endswith("(host policy p: to allow it, root adds it to images there)")
