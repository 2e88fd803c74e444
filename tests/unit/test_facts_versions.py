"""conduit.facts.versions and conduit.facts.registry on registry answers
(tests/fixtures/facts/registry/README.md says where each came from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

from conduit.facts import registry
from conduit.facts.registry import RegistryTextError
from conduit.facts.versions import flavor_of, highest, parse_tag, version_tags

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "registry"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def tags_of(name: str) -> list[str]:
    return registry.tags(fixture(name))


# ------------------------------------------------------------------ the official image's tags


def test_the_official_images_tags_are_bare_versions_and_latest():
    tags = tags_of("ghcr-psiphon-conduit-cli.json")
    assert [t.tag for t in version_tags(tags)] == ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0"]
    assert parse_tag("latest") is None


@pytest.mark.parametrize(
    ("versions", "expected"),
    [(">=2.0,<3", "2.0.0"), ("<2", "1.5.0"), ("~=1.2", "1.5.0"), ("==1.4.*", "1.4.0"), (">=3", None), (">=1.0", "2.0.0")],
)
def test_the_highest_official_tag_inside_a_range(versions, expected):
    found = highest(tags_of("ghcr-psiphon-conduit-cli.json"), versions)
    assert (found.tag if found else None) == expected


def test_a_new_patch_release_is_followed_but_not_the_next_major():
    tags = tags_of("ghcr-psiphon-conduit-cli.json") + ["2.0.1", "3.0.0"]
    assert highest(tags, ">=2.0,<3").tag == "2.0.1"


def test_the_community_image_has_no_version_tags():
    """ssmirr tags its images with short commits, -distroless twins, latest and experimental-prN."""
    tags = tags_of("ghcr-ssmirr-conduit.json")
    assert version_tags(tags) == []
    assert highest(tags, ">=0") is None


# ------------------------------------------------------------------ the local registry (Debian's docker-registry)


def test_the_local_registry_lists_tags_in_its_own_order():
    answer = json.loads(fixture("distribution-tags.json"))
    assert answer["name"] == "conduit/cli"
    tags = registry.tags(fixture("distribution-tags.json"))
    assert sorted(tags) == ["2.0.0", "2.0.1", "3.0.0", "latest"]
    assert highest(tags, ">=2.0,<3").tag == "2.0.1"


def test_an_unknown_repository_answers_an_error_document():
    with pytest.raises(RegistryTextError) as info:
        registry.tags(fixture("distribution-unknown.json"))
    assert str(info.value) == "the registry says: repository name not known to registry (NAME_UNKNOWN)"


def test_a_repository_without_tags():
    assert registry.tags('{"name": "x", "tags": null}') == []
    assert registry.tags('{"name": "x"}') == []


@pytest.mark.parametrize("text", ["<html>", "[]", '{"tags": "2.0.0"}', '{"tags": [2]}'])
def test_a_tag_list_that_is_not_one_is_a_one_line_error(text):
    with pytest.raises(RegistryTextError) as info:
        registry.tags(text)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ tags


@pytest.mark.parametrize(
    ("tag", "version", "flavor"),
    [
        ("2.0.1", "2.0.1", ""),
        ("v2.0.1", "2.0.1", ""),
        ("2.0", "2.0", ""),
        ("2.1.0-rc.1", "2.1.0rc1", ""),
        ("2.1.0rc1", "2.1.0rc1", ""),
        ("2.0.0-distroless", "2.0.0", "-distroless"),
        ("2.1.0-rc.1-distroless", "2.1.0rc1", "-distroless"),
    ],
)
def test_version_tags(tag, version, flavor):
    parsed = parse_tag(tag)
    assert parsed is not None and parsed.version == Version(version) and parsed.flavor == flavor and parsed.tag == tag


@pytest.mark.parametrize(
    "tag", ["latest", "distroless", "2fd31d4", "1234567", "20240101", "2", "experimental-pr11", "release-cli-2.0.0", "sha256-0a1b.sig", ""]
)
def test_tags_that_name_no_version(tag):
    assert parse_tag(tag) is None


def test_pre_releases_only_when_the_range_names_one():
    tags = ["2.0.0", "2.1.0-rc.1", "3.0.0-beta.1", "2.0.1.dev3"]
    assert highest(tags, ">=2.0,<3").tag == "2.0.0"
    assert highest(tags, ">=2.1.0rc1,<3").tag == "2.1.0-rc.1"
    assert highest(["2.1.0-rc.1"], ">=2.0") is None


def test_a_tag_follows_only_tags_of_its_own_flavor():
    tags = ["2.0.0", "2.0.3", "2.0.1-distroless", "2.0.2-distroless", "distroless"]
    assert flavor_of("2.0.0-distroless") == "-distroless" and flavor_of("latest") == ""
    assert highest(tags, ">=2.0,<3").tag == "2.0.3"
    assert highest(tags, ">=2.0,<3", flavor="-distroless").tag == "2.0.2-distroless"


def test_equal_versions_prefer_the_precise_bare_tag():
    assert highest(["2.0", "v2.0.0", "2.0.0"], "==2.0").tag == "2.0.0"


# ------------------------------------------------------------------ where a repository is asked


@pytest.mark.parametrize(
    ("image", "host", "name", "url"),
    [
        ("ghcr.io/psiphon-inc/conduit/cli:2.0.0", "ghcr.io", "psiphon-inc/conduit/cli", "https://ghcr.io/v2/psiphon-inc/conduit/cli/tags/list"),
        ("ghcr.io/ssmirr/conduit/conduit@sha256:" + "a" * 64, "ghcr.io", "ssmirr/conduit/conduit", None),
        ("debian:12", "registry-1.docker.io", "library/debian", "https://registry-1.docker.io/v2/library/debian/tags/list"),
        ("someone/conduit:2.0.0", "registry-1.docker.io", "someone/conduit", None),
        ("docker.io/library/debian", "registry-1.docker.io", "library/debian", None),
        ("index.docker.io/debian:12", "registry-1.docker.io", "library/debian", None),
        ("127.0.0.1:5000/conduit/cli:2.0.0", "127.0.0.1:5000", "conduit/cli", "http://127.0.0.1:5000/v2/conduit/cli/tags/list"),
        ("localhost:5000/cli:2.0.0", "localhost:5000", "cli", "http://localhost:5000/v2/cli/tags/list"),
        ("localhost/cli", "localhost", "cli", "http://localhost/v2/cli/tags/list"),
        ("registry.example:5000/cli:2.0.0", "registry.example:5000", "cli", "https://registry.example:5000/v2/cli/tags/list"),
    ],
)
def test_where_a_repository_is_asked(image, host, name, url):
    repo = registry.repository(image)
    assert (repo.host, repo.name) == (host, name)
    if url:
        assert repo.tags_url == url


@pytest.mark.parametrize(
    ("host", "plain"),
    [("127.0.0.1:5000", True), ("127.9.8.7", True), ("localhost:80", True), ("10.0.0.1:5000", False),
     ("128.0.0.1", False), ("ghcr.io", False), ("[::1]:5000", False), ("localhost.example", False)],
)
def test_plain_http_only_on_loopback(host, plain):
    assert registry.loopback(host) is plain


# ------------------------------------------------------------------ tokens and pages


def test_ghcr_and_docker_hub_ask_for_an_anonymous_bearer_token():
    assert registry.bearer_challenge(fixture("www-authenticate-ghcr.txt")) == {
        "realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:psiphon-inc/conduit/cli:pull",
    }
    hub = registry.bearer_challenge(fixture("www-authenticate-dockerhub.txt"))
    assert hub["realm"] == "https://auth.docker.io/token" and hub["service"] == "registry.docker.io"


def test_a_basic_challenge_or_none_is_no_bearer_challenge():
    assert registry.bearer_challenge(fixture("www-authenticate-basic.txt")) is None
    assert registry.bearer_challenge(None) is None
    assert registry.bearer_challenge("Bearer service=x") is None  # no realm to ask


def test_a_challenge_with_escapes_and_bare_values():
    parsed = registry.bearer_challenge('bearer realm="https://r/t?a=\\"b\\"", service=reg ,scope="repository:a/b:pull,push"')
    assert parsed == {"realm": 'https://r/t?a="b"', "service": "reg", "scope": "repository:a/b:pull,push"}


def test_a_token_answer():
    assert registry.token('{"token": "abc", "expires_in": 300}') == "abc"
    assert registry.token('{"access_token": "xyz"}') == "xyz"
    for bad in ("{}", "[]", "nope", '{"token": ""}'):
        with pytest.raises(RegistryTextError):
            registry.token(bad)


def test_the_next_page():
    assert registry.next_page('</v2/conduit/cli/tags/list?last=2.0.1&n=2>; rel="next"') == "/v2/conduit/cli/tags/list?last=2.0.1&n=2"
    assert registry.next_page('<https://x/a>; rel="prev", <https://x/b>; rel=next') == "https://x/b"
    assert registry.next_page('<https://x/a>; rel="prev"') is None
    assert registry.next_page(None) is None
