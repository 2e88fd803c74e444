"""What an image speaks: the parsers of `conduit --version` / `conduit start --help`, and the
facts known without the image.

The fixtures in tests/fixtures/cli-help are `conduit start --help` as cobra/pflag print it,
written from the flag definitions of each upstream tag (Psiphon-Inc/conduit release-cli-1.1.0
.. release-cli-2.0.0 cli/cmd/start.go and cli/cmd/root.go; ssmirr/conduit master
cli/cmd/start.go:67-74).
"""

from pathlib import Path

import pytest

from conduit.spec.image import (
    PROFILES,
    ImageFacts,
    from_probe,
    parse_start_help,
    parse_version,
    static_facts,
    version_from_tag,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cli-help"
OFFICIAL = "ghcr.io/psiphon-inc/conduit/cli"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_help_fixture_lists_exactly_the_profiles_flags(name):
    assert parse_start_help((FIXTURES / f"{name}.txt").read_text()) == PROFILES[name].flags


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("conduit version 2.0.0\n", "2.0.0"),  # cobra's template, release-cli.yml:75,94
        ("conduit version 1.1.0\n", "1.1.0"),
        ("conduit version release-cli-1.4.0-3-gabcdef\n", "1.4.0"),  # Makefile: git describe
        ("conduit version dev\n", None),  # root.go: version = "dev"
        ("conduit version cc08a09\n", None),  # ssmirr master: the commit (release-cli.yml:115)
        ("conduit version experimental-pr11\n", None),
        ("", None),
    ],
)
def test_version_line(text, version):
    assert parse_version(text) == version


@pytest.mark.parametrize(
    ("name", "cli", "metrics", "personal", "stats", "idle", "build"),
    [
        ("official-1.1", "1.x", False, False, True, False, "official"),
        ("official-1.2", "1.x", True, False, True, False, "official"),
        ("official-1.4", "1.x", True, False, True, False, "official"),
        ("official-1.5", "1.x", True, False, True, False, "official"),
        ("official-2.0", "2.x", True, True, False, False, "official"),
        ("community", "1.x", True, False, True, True, "community"),
    ],
)
def test_probe_answer_gives_capabilities(name, cli, metrics, personal, stats, idle, build):
    version = PROFILES[name].version or "cc08a09"
    facts = from_probe("img", "sha256:1", f"conduit version {version}\n", (FIXTURES / f"{name}.txt").read_text(), PROFILES[name].has_monitor)
    assert (facts.cli, facts.has_metrics_addr, facts.has_personal, facts.has_stats_file, facts.has_idle_restart) == (
        cli, metrics, personal, stats, idle
    )
    assert facts.build == build and facts.exact and facts.source == "image"
    assert facts.has_set is (name == "official-2.0") and facts.has_compartment is (name == "official-2.0")


def test_dev_binary_is_known_by_its_flags():
    facts = from_probe("img", None, "conduit version dev\n", (FIXTURES / "official-2.0.txt").read_text(), True)
    assert facts.version is None and facts.cli == "2.x" and facts.describe() == "a 2.x CLI"


def test_a_help_without_flags_leaves_the_image_unknown():
    facts = from_probe("img", None, "", "exec: conduit: not found", False)
    assert not facts.known and facts.cli is None and facts.has_metrics_addr is None


def test_facts_survive_the_cache():
    facts = from_probe("img", "sha256:1", "conduit version 2.0.0", (FIXTURES / "official-2.0.txt").read_text(), True)
    assert ImageFacts.from_json(facts.to_json()) == facts
    unknown = static_facts("x:latest")
    assert ImageFacts.from_json(unknown.to_json()) == unknown


@pytest.mark.parametrize(
    ("image", "version"),
    [
        (f"{OFFICIAL}:2.0.0", "2.0"),
        (f"{OFFICIAL}:v1.4.0", "1.4"),
        (f"{OFFICIAL}:latest", None),
        (OFFICIAL, None),
        ("localhost:5000/conduit", None),
        ("localhost:5000/conduit:1.5.0", "1.5"),
        ("conduit-standin:2.0.0-abc123", "2.0"),
        ("ghcr.io/ssmirr/conduit/conduit:cc08a09", None),
    ],
)
def test_version_from_tag(image, version):
    assert version_from_tag(image) == version


def test_a_pinned_official_tag_is_that_release():
    facts = static_facts(f"{OFFICIAL}:1.1.0")
    assert facts.source == "tag" and facts.exact and facts.has_metrics_addr is False and facts.has_monitor is False
    assert static_facts(f"{OFFICIAL}:1.5.0").has_monitor is True


def test_latest_without_a_version_is_unknown():
    facts = static_facts(f"{OFFICIAL}:latest")
    assert facts.source == "unknown" and facts.cli is None
    assert facts.has_metrics_addr is None and facts.has_stats_file is None and facts.has_monitor is None


def test_the_community_repository_is_the_community_build():
    facts = static_facts("ghcr.io/ssmirr/conduit/conduit:latest")
    assert facts.build == "community" and facts.cli == "1.x" and facts.has_monitor is False and facts.has_idle_restart


def test_coarse_versions_say_what_every_image_of_that_family_has():
    one = static_facts(f"{OFFICIAL}:latest", "1.x")
    assert one.cli == "1.x" and one.has_metrics_addr and one.has_stats_file  # 1.x means 1.2 or later
    assert one.has_monitor is None and one.has_idle_restart is None and not one.exact
    assert one.has_personal is False
    two = static_facts(f"{OFFICIAL}:latest", "2.x")
    assert two.cli == "2.x" and two.has_personal and two.has_monitor is True and two.has_stats_file is False


def test_spec_override_wins_over_the_tag():
    assert static_facts(f"{OFFICIAL}:2.0.0", "1.1").has_metrics_addr is False
    assert static_facts(f"{OFFICIAL}:2.0.0", "auto", "community").build == "community"
    assert static_facts(f"{OFFICIAL}:latest", "1.x", "official").has_idle_restart is False


def test_versions_the_tool_does_not_know():
    newer = static_facts(f"{OFFICIAL}:2.1.0")
    assert newer.cli == "2.x" and not newer.exact and newer.version == "2.1"
    assert static_facts(f"{OFFICIAL}:3.0.0").cli is None


def test_init_pins_a_release_the_tool_knows():
    from conduit.render.init_spec import render_init
    from conduit.spec.image import RECOMMENDED_IMAGE
    from tests.helpers import SMALL_VPS

    text = render_init(SMALL_VPS, "h")
    assert f"image: {RECOMMENDED_IMAGE}" in text and ":latest" not in text
    assert static_facts(RECOMMENDED_IMAGE).exact and static_facts(RECOMMENDED_IMAGE).source == "tag"
