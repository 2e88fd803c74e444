"""Properties of following a version range: the tag chosen is the highest inside it, whatever the
registry's order and whatever else the repository holds; pre-releases only when the range names one."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from conduit.facts import registry
from conduit.facts.versions import highest, parse_tag

parts = st.integers(0, 12)
releases = st.tuples(parts, parts, parts).map(lambda t: ".".join(map(str, t)))
pre = st.tuples(st.sampled_from(["-rc.", "-beta.", "-alpha.", "rc", "b"]), st.integers(0, 5)).map(lambda t: f"{t[0]}{t[1]}")
prereleases = st.tuples(releases, pre).map("".join)
noise = st.sampled_from(["latest", "distroless", "2fd31d4", "1234567", "experimental-pr11", "edge", "sha256-ab.sig"])
flavored = st.tuples(releases, st.sampled_from(["-distroless", "-slim"])).map("".join)
ranges = st.tuples(st.tuples(parts, parts), st.tuples(parts, parts)).map(
    lambda t: (f"{min(t)[0]}.{min(t)[1]}", f"{max(t)[0]}.{max(t)[1]}")
)


def naive(tags: list[str], low: str, high: str) -> Version | None:
    inside = [Version(t) for t in tags if Version(low) <= Version(t) < Version(high)]
    return max(inside, default=None)


@given(st.lists(releases, max_size=30), st.lists(prereleases | noise | flavored, max_size=15), ranges, st.randoms())
def test_the_highest_final_release_inside_the_range_whatever_the_order(finals, others, bounds, rnd):
    low, high = bounds
    tags = finals + others
    rnd.shuffle(tags)
    found = highest(tags, f">={low},<{high}")
    expected = naive(finals, low, high)
    assert (found.version if found else None) == expected
    if found is not None:
        assert found.tag in finals and not found.version.is_prerelease and found.flavor == ""


@given(st.lists(releases | prereleases, min_size=1, max_size=30), st.randoms())
def test_a_range_that_names_a_pre_release_admits_them(tags, rnd):
    floor = rnd.choice(tags)
    pre_floor = Version(floor) if Version(floor).is_prerelease else Version(f"{floor}rc0")
    found = highest(tags, f">={pre_floor}")
    assert found is not None and found.version == max(Version(t) for t in tags if Version(t) >= pre_floor)


@given(releases, st.booleans(), st.sampled_from(["", "-distroless", "-slim"]))
def test_a_version_tag_reads_back_as_its_version_and_flavor(release, v, flavor):
    tag = ("v" if v else "") + release + flavor
    parsed = parse_tag(tag)
    assert parsed is not None and parsed.version == Version(release) and parsed.flavor == flavor and parsed.tag == tag


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", max_size=20))
def test_any_tag_text_parses_or_is_none_never_raises(tag):
    parsed = parse_tag(tag)
    assert parsed is None or parsed.tag == tag


segment = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)


@given(st.lists(segment, min_size=1, max_size=3), st.one_of(st.none(), releases))
def test_a_name_without_a_registry_is_on_docker_hub(path, tag):
    image = "/".join(path) + (f":{tag}" if tag else "")
    repo = registry.repository(image)
    assert repo.host == registry.DOCKER_HUB and repo.tags_url.startswith("https://registry-1.docker.io/v2/")
    assert repo.name == ("/".join(path) if len(path) > 1 else f"library/{path[0]}")


@given(st.sampled_from(["ghcr.io", "127.0.0.1:5000", "localhost:5000", "registry.example:443"]), st.lists(segment, min_size=1, max_size=3), releases)
def test_a_registry_host_keeps_the_whole_path(host, path, tag):
    repo = registry.repository(f"{host}/{'/'.join(path)}:{tag}")
    assert (repo.host, repo.name) == (host, "/".join(path))
    assert repo.tags_url.startswith("https://" if host in ("ghcr.io", "registry.example:443") else "http://")


@given(st.lists(releases, max_size=20), releases, ranges, st.booleans())
def test_below_is_exactly_a_lower_version(tags, running, bounds, spelled_v):
    from conduit.facts.versions import below

    for tag in tags + ["latest", "2fd31d4"]:
        named = ("v" + tag) if spelled_v and tag[0].isdigit() else tag
        parsed = parse_tag(named)
        assert below(named, Version(running)) == (parsed is not None and parsed.version < Version(running))
    assert not any(below(t, None) for t in tags)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(releases, max_size=12), releases, ranges, st.booleans(), st.booleans())
def test_an_update_never_takes_the_nodes_below_the_version_they_run(listed, running, bounds, yanked, take):
    """Whatever the registry lists (the nodes' own tag or not) and whatever the range: the image
    chosen is the nodes' own, or one whose tag is not below theirs."""
    import hashlib
    import tempfile

    import pytest

    from conduit.drivers.docker import RegistryError
    from conduit.engine import updates
    from conduit.engine.updates import UpdateRequest, choose_image
    from conduit.spec.load import load_text
    from conduit.spec.policy import HostPolicy
    from conduit.state.images import NodeImage
    from conduit.state.stores import open_state
    from tests.helpers import SMALL_VPS, dump, minimal

    repo = "ghcr.io/psiphon-inc/conduit/cli"
    low, high = bounds
    tags = sorted(set(listed) - {running}) if yanked else sorted(set(listed) | {running})

    def digest(tag: str) -> str:
        return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()

    def image_id(d: str) -> str:
        return "sha256:" + hashlib.sha256(d.encode()).hexdigest()

    images = {image_id(digest(running)): {"Id": image_id(digest(running)), "RepoTags": [], "RepoDigests": [f"{repo}@{digest(running)}"]}}
    by_digest = {f"{repo}@{digest(t)}": t for t in tags}  # a new digest is named so until the plan's pull step has it

    def registry_digest(client, image):
        tag = image.rsplit(":", 1)[1]
        if tag not in tags:
            raise RegistryError(f"the registry does not say what {image} is now: manifest unknown")
        return digest(tag)

    text = dump(minimal(containers={"count": 1, "image": f"{repo}:{low}.0"}, updates={"policy": "auto", "versions": f">={low},<{high}"}))
    spec = load_text(text, "cluster.yaml", SMALL_VPS, (HostPolicy(), "p"))
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        state = open_state(tmp)
        state.images.record_check(f"{repo}:{running}", digest(running))
        state.images.record_nodes(1, {"n-1": NodeImage(f"{repo}:{low}.0", image_id(digest(running)), digest(running), None)})
        mp.setattr(updates, "inspect_image", lambda client, ref: images.get(ref))
        mp.setattr(updates, "list_tags", lambda image: tags)
        mp.setattr(updates, "registry_digest", registry_digest)
        choice = choose_image(spec, object(), state.images, UpdateRequest(take=True if take else None))
    if choice.ref != image_id(digest(running)):
        assert choice.pull and Version(by_digest[choice.ref]) >= Version(running)
