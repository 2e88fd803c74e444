"""What the spec's image speaks, and what that means for the spec: pure.

The image's own answer is observed (conduit.engine.observe: from the cache by image ID, or by
asking an image that is on the host); here it is only read. An image that could not be asked
leaves the spec's conduit.cli_version / conduit.build or the image tag to stand in for it,
with a warning, and with neither only the flags every version accepts are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from conduit.spec.image import ImageFacts, static_facts
from conduit.spec.image_checks import image_checks
from conduit.spec.load import dotted
from conduit.spec.resolve import with_image_facts
from conduit.spec.spec import ClusterSpec


@dataclass
class Update:
    """A new digest behind the spec's tag (or, under updates.versions, behind the tag it follows)."""

    image: str  # the tag asked: the spec's, or repository:<newest tag inside updates.versions>
    old_id: str | None
    old_digest: str | None
    new_id: str
    new_digest: str
    taken: bool
    why_not: str | None = None  # why the nodes stay where they are
    old_version: str | None = None
    new_version: str | None = None
    versions: str | None = None  # updates.versions, when the tag followed is the newest inside it
    old_tag: str | None = None  # the tag the nodes' image has on this host, when it has one
    new_tag: str | None = None  # the tag followed ("2.0.1"), under updates.versions
    pulled: bool = True  # Docker has the new image (False: new_id is repository@digest; its version is known once pulled)


NOT_PULLED = "its version is known once pulled"


def new_version_said(update: dict) -> str | None:
    """What a plan's update (as JSON) says of the new image's version: what it said, or that it is
    asked once pulled (a check never pulls)."""
    return update.get("new_version") or (None if update.get("pulled", True) else NOT_PULLED)


@dataclass
class Choice:
    ref: str  # what to ask and run: the tag, or an image ID
    update: Update | None = None
    warnings: list[str] = field(default_factory=list)
    attrs: dict | None = None  # Docker's answer for ref, when it was already asked
    pull: bool = False  # ref is repository@digest, not on this host: the plan pulls it, then asks it (steps)


@dataclass
class ImageSeen:
    """What was observed of the image: which one the nodes should run, and what it said it speaks.
    `found`: its facts (None: not on this host, or no Docker daemon to ask); `docker_asked`: Docker was asked;
    `running`: what the image the nodes run now said, when the chosen one is still to be pulled."""

    choice: Choice
    found: ImageFacts | None = None
    docker_asked: bool = False
    running: ImageFacts | None = None


@dataclass
class Settled:
    spec: ClusterSpec
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    image_present: bool = False  # Docker has the image already: no pull is planned
    update: Update | None = None  # a new digest behind the tag (conduit.engine.updates)
    probe: dict | None = None  # a new image to pull: what the plan expects it to say (the probe step compares)
    source: ClusterSpec | None = field(default=None, repr=False)  # the spec as given, before its image's facts


def _fallback_warning(facts: ImageFacts, reason: str) -> str:
    if facts.source == "unknown":
        return (
            f"cannot ask {facts.image} which CLI it speaks ({reason}); rendering only the flags every version accepts "
            "(-m -b -d, no --metrics-addr): pull the image, pin a version tag or set conduit.cli_version"
        )
    said = "conduit.cli_version/build" if facts.source == "spec" else "its tag"
    return f"cannot ask {facts.image} which CLI it speaks ({reason}); taking it as {facts.describe()} from {said}"


def mismatches(spec: ClusterSpec, found: ImageFacts) -> list[str]:
    """Where the spec's conduit.cli_version / conduit.build contradict what the image said."""
    conduit = spec.spec.conduit
    problems = []
    if conduit.cli_version != "auto":
        said = static_facts(found.image, conduit.cli_version, conduit.build)
        exact = conduit.cli_version not in ("1.x", "2.x")
        wrong_version = exact and found.version is not None and not found.version.startswith(conduit.cli_version + ".")
        if wrong_version or (said.cli and found.cli and said.cli != found.cli):
            problems.append(
                f"spec.conduit.cli_version: is {conduit.cli_version}, but {found.image} says it is {found.describe()}"
            )
    if conduit.build != "auto" and found.build is not None and found.build != conduit.build:
        problems.append(f"spec.conduit.build: is {conduit.build}, but {found.image} is {found.describe()}")
    return problems


_UNSURE = (
    ("max_personal_clients", "has_personal", "--max-personal-clients"),
    ("reduced_hours", "has_set", "--set"),
    ("idle_restart", "has_idle_restart", "--idle-restart"),
)


def unsure_warnings(spec: ClusterSpec, facts: ImageFacts) -> list[str]:
    """Settings left out because nobody can tell whether the image takes them."""
    conduit = spec.spec.conduit
    out = []
    for name, capability, flag in _UNSURE:
        if getattr(conduit, name) is not None and getattr(facts, capability) is None:
            out.append(f"spec.conduit.{name} is not passed: cannot tell whether {facts.image} has {flag}")
    if conduit.data_cap is not None and facts.has_monitor is None:
        out.append(f"spec.conduit.data_cap: cannot tell whether {facts.image} ships conduit-monitor (official 1.5.0 or later does)")
    if facts.has_metrics_addr is False:
        out.append(f"{facts.image} is {facts.describe()}, which has no --metrics-addr: the nodes publish no metrics")
    return out


def settle(spec: ClusterSpec, seen: ImageSeen | None = None) -> Settled:
    """The spec with its image's facts, the warnings, and the problems that stop a plan.
    `seen` None: no Docker daemon was asked (an offline plan)."""
    image = spec.spec.containers.image
    given = static_facts(image, spec.spec.conduit.cli_version, spec.spec.conduit.build)
    seen = seen or ImageSeen(Choice(image))
    if seen.choice.pull:
        return _to_pull(spec, seen, given)
    found = replace(seen.found, image=image) if seen.found is not None else None
    out = Settled(spec, source=spec, image_present=found is not None, update=seen.choice.update, warnings=list(seen.choice.warnings))
    if found is not None and found.known:
        facts = found
        out.problems += mismatches(spec, found)
    else:
        facts = given
        if found is not None:
            reason = "it did not answer `conduit start --help` like a Conduit image"
        else:
            reason = "it is not on this host" if seen.docker_asked else "no Docker daemon to ask"
        if seen.docker_asked or given.source == "unknown":
            out.warnings.append(_fallback_warning(given, reason))
    if found is not None:
        facts = replace(facts, image_id=found.image_id)  # the nodes run exactly this image
    out.spec = with_image_facts(spec, facts)
    out.problems += [f"{dotted(path)}: {message}" for path, message in image_checks(out.spec, facts)]
    out.warnings += unsure_warnings(spec, facts)
    return out



def expected_facts(given: ImageFacts, running: ImageFacts | None) -> ImageFacts:
    """What a new image still to be pulled is planned as: what the nodes' image said while the tag
    names the same CLI family and build (or names none), else what the tag or spec says."""
    if running is None or not running.known:
        return given
    if given.source == "unknown" or (given.cli in (None, running.cli) and given.build in (None, running.build)):
        return replace(running, image=given.image, source="image")
    return given


def _to_pull(spec: ClusterSpec, seen: ImageSeen, given: ImageFacts) -> Settled:
    """The nodes take a new digest Docker does not have yet: planned as expected, asked once pulled."""
    ref = seen.choice.ref
    facts = replace(expected_facts(given, seen.running), image_id=ref)
    out = Settled(spec, source=spec, update=seen.choice.update, warnings=list(seen.choice.warnings))
    said = "what the nodes' image said" if facts.source == "image" else ("its tag" if facts.source == "tag" else "the spec")
    if facts.known:
        out.warnings.append(
            f"{ref} is not on this host yet: its nodes are planned as {facts.describe()} ({said}); it is asked what it "
            "speaks once it is pulled, and the apply stops before any node is touched if it says otherwise"
        )
    else:
        out.warnings.append(_fallback_warning(given, "it is not on this host yet; it is asked once it is pulled"))
    floor = seen.running.version if seen.running is not None else None
    out.probe = {"image": ref, "cli": facts.cli, "build": facts.build, "rendered_for": facts.describe(), "floor": floor}
    out.spec = with_image_facts(spec, facts)
    out.problems += [f"{dotted(path)}: {message}" for path, message in image_checks(out.spec, facts)]
    out.warnings += unsure_warnings(spec, facts)
    return out


@dataclass
class Learned:
    """What a plan's observation learned and the state does not hold yet: image facts by image ID
    (an ID's content never changes) and the registry's answers. A plan writes none of it; the
    apply records it (conduit.engine.images.record_learned)."""

    facts: dict[str, str] = field(default_factory=dict)  # image ID -> ImageFacts.to_json()
    checks: list[tuple[str, str | None]] = field(default_factory=list)  # (tag or "repository range", answer)
