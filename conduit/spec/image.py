"""What a Conduit image speaks: its CLI version, its build and the flags of its `conduit start`.

The truth is the image itself: `conduit --version` and `conduit start --help`, run once in a
throwaway container (see `conduit.drivers.docker.probe_image`), and whether the
image ships `conduit-monitor`. This module holds the pure part: the value, the parsers of the
CLI's answers, and what is known of each published image when the image is not at hand.

Upstream facts (Psiphon-Inc/conduit, tags release-cli-1.1.0 .. release-cli-2.0.0, and the
community build ssmirr/conduit at master):
- 1.1 cli/cmd/start.go:62-70: --max-clients/-m, --bandwidth/-b, --stats-file/-s; --psiphon-config
  only without an embedded config (the released images embed one, release-cli.yml:94).
- 1.2 cli/cmd/start.go:67 adds --metrics-addr; 1.3 start.go:68 always lists --psiphon-config.
- 1.5 cli/Dockerfile:22 adds /usr/local/bin/conduit-monitor.
- 2.0 cli/cmd/start.go:65-71: --max-common-clients/-m, --max-personal-clients, --compartment-id,
  --set, --bandwidth/-b, --metrics-addr, --psiphon-config/-c; --stats-file is gone.
- Every tag, cli/cmd/root.go: persistent -v/--verbose and -d/--data-dir; `Version: version`, so
  `conduit --version` prints cobra's "conduit version X" with X = the tag without
  "release-cli-" (release-cli.yml:75,94), or "dev" for a plain `go build`.
- ssmirr cli/cmd/start.go:67-74: the 1.x flags plus --geo and --idle-restart; its images carry
  a commit hash as version (ssmirr .github/workflows/release-cli.yml:103-116) and no monitor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

OFFICIAL = "official"
COMMUNITY = "community"
# The newest release the tool knows; `conduit init` pins it (docs/images.md).
RECOMMENDED_IMAGE = "ghcr.io/psiphon-inc/conduit/cli:2.0.0"

_BASE = frozenset({"bandwidth", "data-dir", "verbose", "help"})
_V1 = _BASE | {"max-clients", "stats-file"}
_V2 = _BASE | {"max-common-clients", "max-personal-clients", "compartment-id", "set", "metrics-addr", "psiphon-config"}


@dataclass(frozen=True)
class Profile:
    """One published image kind: its version, build, long start flags and whether it has the monitor."""

    name: str
    version: str | None
    build: str
    flags: frozenset[str]
    has_monitor: bool


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("official-1.1", "1.1.0", OFFICIAL, _V1, False),
        Profile("official-1.2", "1.2.0", OFFICIAL, _V1 | {"metrics-addr"}, False),
        Profile("official-1.3", "1.3.0", OFFICIAL, _V1 | {"metrics-addr", "psiphon-config"}, False),
        Profile("official-1.4", "1.4.0", OFFICIAL, _V1 | {"metrics-addr", "psiphon-config"}, False),
        Profile("official-1.5", "1.5.0", OFFICIAL, _V1 | {"metrics-addr", "psiphon-config"}, True),
        Profile("official-2.0", "2.0.0", OFFICIAL, _V2, True),
        Profile("community", None, COMMUNITY, _V1 | {"metrics-addr", "psiphon-config", "geo", "idle-restart"}, False),
    )
}

# What `conduit.cli_version: 1.x` stands for: an image of 1.2 or later (1.1 has no --metrics-addr;
# say "1.1" for one), official or community.
_FAMILY = {
    "1.x": ("official-1.2", "official-1.3", "official-1.4", "official-1.5", "community"),
    "2.x": ("official-2.0",),
}
EXACT_VERSIONS = ("1.1", "1.2", "1.3", "1.4", "1.5", "2.0")


@dataclass(frozen=True)
class ImageFacts:
    """What one image speaks, as far as it is known.

    flags: long `start` flags the image surely accepts (None: not known at all).
    maybe: flags some images of this kind accept and others do not.
    exact: flags is the image's complete list (it was asked, or its version and build are known).
    source: image (asked), spec (conduit.cli_version/build), tag (the image tag) or unknown.
    """

    image: str
    source: str
    version: str | None = None
    build: str | None = None
    flags: frozenset[str] | None = None
    maybe: frozenset[str] = field(default_factory=frozenset)
    exact: bool = False
    has_monitor: bool | None = None
    image_id: str | None = None

    # ------------------------------------------------------------ capabilities

    def supports(self, flag: str) -> bool | None:
        """True: accepted; False: the image exits on it; None: cannot tell."""
        if self.flags is None or flag in self.maybe:
            return None
        return flag in self.flags

    @property
    def cli(self) -> str | None:
        """1.x (--max-clients) or 2.x (--max-common-clients), or None when not known."""
        if self.flags is not None and "max-common-clients" in self.flags:
            return "2.x"
        if self.flags is not None and "max-clients" in self.flags:
            return "1.x"
        major = (self.version or "").split(".")[0]
        return f"{major}.x" if major in ("1", "2") else None

    @property
    def has_metrics_addr(self) -> bool | None:
        return self.supports("metrics-addr")

    @property
    def has_personal(self) -> bool | None:
        return self.supports("max-personal-clients")

    @property
    def has_compartment(self) -> bool | None:
        return self.supports("compartment-id")

    @property
    def has_set(self) -> bool | None:
        return self.supports("set")

    @property
    def has_stats_file(self) -> bool | None:
        return self.supports("stats-file")

    @property
    def has_idle_restart(self) -> bool | None:
        return self.supports("idle-restart")

    @property
    def known(self) -> bool:
        return self.flags is not None

    def describe(self) -> str:
        """"official 2.0.0", "community build", "an unknown CLI"."""
        build = self.build or ("community" if self.supports("geo") else None)
        if build == COMMUNITY:
            return "the community build" + (f" {self.version}" if self.version else "")
        if self.version:
            return f"{build or 'Conduit'} {self.version}"
        if self.cli:
            return f"a {self.cli} CLI"
        return "an unknown CLI"

    # ------------------------------------------------------------ storage

    def to_json(self) -> str:
        data = {k: v for k, v in self.__dict__.items()}
        data["flags"] = None if self.flags is None else sorted(self.flags)
        data["maybe"] = sorted(self.maybe)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ImageFacts:
        data = json.loads(text)
        data["flags"] = None if data.get("flags") is None else frozenset(data["flags"])
        data["maybe"] = frozenset(data.get("maybe") or ())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# ---------------------------------------------------------------- parsing the CLI's answers

_VERSION_WORD = re.compile(r"\bversion\s+(\S+)")
_DOTTED = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
# pflag prints "  -m, --max-common-clients int   ..." or "      --set stringArray   ...".
_FLAG_LINE = re.compile(r"^\s{2,}(?:-[A-Za-z0-9], )?--([A-Za-z0-9][A-Za-z0-9-]*)")


def parse_version(text: str) -> str | None:
    """"conduit version 2.0.0" -> "2.0.0"; "dev" or a commit hash -> None."""
    match = _VERSION_WORD.search(text)
    token = match.group(1) if match else text.strip()
    dotted = _DOTTED.search(token)
    if not dotted:
        return None
    major, minor, patch = dotted.groups()
    return f"{major}.{minor}.{patch or 0}"


def parse_start_help(text: str) -> frozenset[str]:
    """The long flags `conduit start --help` lists, local and global."""
    return frozenset(m.group(1) for m in map(_FLAG_LINE.match, text.splitlines()) if m)


def build_of(flags: frozenset[str]) -> str:
    """The community build is the one with --geo / --idle-restart (ssmirr cli/cmd/start.go:71,74)."""
    return COMMUNITY if flags & {"geo", "idle-restart"} else OFFICIAL


def from_probe(image: str, image_id: str | None, version_text: str, help_text: str, has_monitor: bool) -> ImageFacts:
    """Facts from what the image answered; a help text without flags leaves the flags unknown."""
    flags = parse_start_help(help_text)
    if not flags:
        return ImageFacts(image, "image", parse_version(version_text), None, None, has_monitor=has_monitor, image_id=image_id)
    return ImageFacts(
        image, "image", parse_version(version_text), build_of(flags), flags, exact=True, has_monitor=has_monitor, image_id=image_id
    )


# ---------------------------------------------------------------- without the image

_TAG_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-.+].*)?$")


def version_from_tag(image: str) -> str | None:
    """cli:2.0.0 -> "2.0"; latest, a commit hash or no tag -> None."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0]
    if ":" not in last:
        return None
    match = _TAG_VERSION.match(last.rsplit(":", 1)[1])
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _from_profile(image: str, source: str, profile: Profile, version: str | None) -> ImageFacts:
    return ImageFacts(image, source, version, profile.build, profile.flags, exact=True, has_monitor=profile.has_monitor)


def _from_family(image: str, source: str, family: str, build: str | None) -> ImageFacts:
    names = [n for n in _FAMILY[family] if build is None or PROFILES[n].build == build] or list(_FAMILY[family])
    profiles = [PROFILES[n] for n in names]
    surely = frozenset.intersection(*(p.flags for p in profiles))
    union = frozenset.union(*(p.flags for p in profiles))
    monitors = {p.has_monitor for p in profiles}
    builds = {p.build for p in profiles}
    return ImageFacts(
        image, source, None, builds.pop() if len(builds) == 1 else None, surely, union - surely,
        exact=False, has_monitor=monitors.pop() if len(monitors) == 1 else None,
    )  # fmt: skip


def _from_version(image: str, source: str, version: str) -> ImageFacts:
    """An official image of this major.minor; a version the tool does not know is taken as its family."""
    profile = PROFILES.get(f"official-{version}")
    if profile is not None:
        return _from_profile(image, source, profile, profile.version)
    major = version.split(".")[0]
    if major in ("1", "2") and version != "1.0":
        facts = _from_family(image, source, f"{major}.x", OFFICIAL)
        return replace(facts, version=version, has_monitor=facts.has_monitor if major == "2" else None)
    if version == "1.0":  # no image was published for 1.0.0; its flags are 1.1's (start.go:62-70)
        return replace(_from_profile(image, source, PROFILES["official-1.1"], None), version="1.0")
    return ImageFacts(image, source, version)


def static_facts(image: str, cli_version: str = "auto", build: str = "auto") -> ImageFacts:
    """What the spec alone says: conduit.cli_version and conduit.build, else the image tag."""
    given_build = None if build == "auto" else build
    if given_build == COMMUNITY:
        return _from_profile(image, "spec", PROFILES["community"], None)
    if cli_version in _FAMILY:
        return _from_family(image, "spec", cli_version, given_build)
    if cli_version != "auto":
        return _from_version(image, "spec", cli_version)
    if "/ssmirr/" in f"/{image.lower()}" and given_build is None:
        # The community build's own repository (ghcr.io/ssmirr/conduit/conduit).
        return _from_profile(image, "tag", PROFILES["community"], None)
    tagged = version_from_tag(image)
    if tagged is not None:
        return _from_version(image, "tag", tagged)
    return ImageFacts(image, "unknown", build=given_build)
