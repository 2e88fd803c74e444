"""Which of an image repository's tags are versions, and the highest inside a version range.

Pure functions (conduit.drivers.registry lists the tags; conduit.engine.updates follows the answer).

The Conduit images are tagged with the bare version and `latest`: the release workflow of
Psiphon-Inc/conduit pushes `ghcr.io/psiphon-inc/conduit/cli:<git tag without "release-cli-">`,
so git tag release-cli-2.0.0 is image tag 2.0.0. The ssmirr community build tags its images
with the commit (`2fd31d4`) or `experimental-prN`, each with a `-distroless` twin, plus `latest`
and `distroless`; only a release-cli-* git tag would give it a version tag (it has none).
A version tag here is `[v]N.N[.N…]` with an optional pre-release (2.1.0-rc.1, 2.1.0rc1) and an
optional flavor after a last dash (2.0.0-distroless); a tag follows only tags of its own
flavor. A number without a dot (a date, an all-digit commit) is not a version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from conduit.spec.spec import version_range

_SHAPE = re.compile(r"v?\d+(?:\.\d+)+(?:[-_.]?[A-Za-z0-9][A-Za-z0-9_.-]*)?")
_FLAVOR = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class VersionTag:
    tag: str  # as the registry lists it
    version: Version
    flavor: str = ""  # what follows the version after a last dash ("-distroless"), or ""


def parse_tag(tag: str) -> VersionTag | None:
    """The version a tag names, or None when it names none (latest, distroless, 2fd31d4, 20240101)."""
    if not _SHAPE.fullmatch(tag):
        return None
    body = tag[1:] if tag.startswith("v") else tag
    try:
        return VersionTag(tag, Version(body))
    except InvalidVersion:
        pass
    head, _, flavor = body.rpartition("-")
    if not head or not _FLAVOR.fullmatch(flavor) or not _SHAPE.fullmatch(head):
        return None
    try:
        return VersionTag(tag, Version(head), "-" + flavor)
    except InvalidVersion:
        return None


def version_tags(tags: Iterable[str]) -> list[VersionTag]:
    """The tags that name a version, lowest first."""
    return sorted((t for t in map(parse_tag, tags) if t is not None), key=_rank)


def flavor_of(tag: str) -> str:
    """The flavor a tag carries ("-distroless"), "" for a plain version or a tag that names none."""
    parsed = parse_tag(tag)
    return parsed.flavor if parsed else ""


def names_prerelease(versions: SpecifierSet) -> bool:
    """Whether the range names a pre-release (">=2.1.0rc1"): only then does it admit them."""
    return any(spec.prereleases for spec in versions)


def in_range(tag: VersionTag, versions: SpecifierSet) -> bool:
    return versions.contains(tag.version, prereleases=names_prerelease(versions))


def highest(tags: Iterable[str], versions: str | SpecifierSet, flavor: str = "") -> VersionTag | None:
    """The highest version tag of this flavor inside the range; pre-releases only when the range names one."""
    wanted = version_range(versions) if isinstance(versions, str) else versions
    found = [t for t in version_tags(tags) if t.flavor == flavor and in_range(t, wanted)]
    return found[-1] if found else None


def below(tag: str | None, running: Version | None) -> bool:
    """Whether the tag names a version lower than the one the nodes run: then it is not an update
    (versions move up only; down is a rollback, asked for by a person)."""
    parsed = parse_tag(tag) if tag else None
    return parsed is not None and running is not None and parsed.version < running


def reported(text: str | None) -> Version | None:
    """The version an image says it is ("2.0.1"), or None (a commit hash, "dev", nothing)."""
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _rank(tag: VersionTag) -> tuple:
    # equal versions (2.0 and 2.0.0, v2.0.0): the more precise one, then the bare one, then by name
    return (tag.version, len(tag.version.release), not tag.tag.startswith("v"), tag.tag)
