"""What the spec's image speaks, asked once per image ID, and what that means for the spec.

The answer is cached in the state database by image ID (an ID's content never changes),
so a second plan runs no container. An image that is not on the host cannot be asked:
then the spec's conduit.cli_version / conduit.build or the image tag stand in for it,
with a warning, and with neither only the flags every version accepts are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from conduit.drivers.docker import CountingClient, inspect_image, probe_image
from conduit.engine.updates import Choice, Update, UpdateRequest, choose_image
from conduit.spec.load import dotted
from conduit.spec.image import ImageFacts, static_facts
from conduit.spec.image_checks import image_checks
from conduit.spec.resolve import with_image_facts
from conduit.spec.spec import ClusterSpec
from conduit.state.db import Database, StateError
from conduit.state.images import Images


@dataclass
class Settled:
    doc: ClusterSpec
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    image_present: bool = False  # the engine has the image already: no pull is planned
    update: Update | None = None  # a new digest behind the tag (conduit.engine.updates)


def _images(state_dir: Path | None) -> Images | None:
    if state_dir is None:
        return None
    try:
        return Images(Database(state_dir))
    except StateError:
        return None  # a read-only or missing state dir: ask the image every time


def asked_facts(client: CountingClient, image: str, state_dir: Path | None, attrs: dict | None = None) -> ImageFacts | None:
    """The image's own answer (cached by image ID), or None when the image is not on this host.
    `attrs`: the engine's answer for the image, when the caller already has it."""
    attrs = attrs if attrs is not None else inspect_image(client, image)
    if attrs is None:
        return None
    image_id = attrs.get("Id") or image
    images = _images(state_dir)
    cached = _cached(images, image_id)
    if cached is not None:
        return replace(cached, image=image, image_id=image_id)
    facts = probe_image(client, image, attrs)
    if images is not None:
        try:
            images.save_facts(image_id, facts.to_json())
        except StateError:
            pass
    return facts


def _cached(images: Images | None, image_id: str) -> ImageFacts | None:
    if images is None:
        return None
    try:
        return images.facts(image_id)
    except StateError:
        return None


def _fallback_warning(facts: ImageFacts, reason: str) -> str:
    if facts.source == "unknown":
        return (
            f"cannot ask {facts.image} which CLI it speaks ({reason}); rendering only the flags every version accepts "
            "(-m -b -d, no --metrics-addr): pull the image, pin a version tag or set conduit.cli_version"
        )
    said = "conduit.cli_version/build" if facts.source == "spec" else "its tag"
    return f"cannot ask {facts.image} which CLI it speaks ({reason}); taking it as {facts.describe()} from {said}"


def mismatches(doc: ClusterSpec, found: ImageFacts) -> list[str]:
    """Where the spec's conduit.cli_version / conduit.build contradict what the image said."""
    conduit = doc.spec.conduit
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


def unsure_warnings(doc: ClusterSpec, facts: ImageFacts) -> list[str]:
    """Settings left out because nobody can tell whether the image takes them."""
    conduit = doc.spec.conduit
    out = []
    for name, capability, flag in _UNSURE:
        if getattr(conduit, name) is not None and getattr(facts, capability) is None:
            out.append(f"spec.conduit.{name} is not passed: cannot tell whether {facts.image} has {flag}")
    if conduit.data_cap is not None and facts.has_monitor is None:
        out.append(f"spec.conduit.data_cap: cannot tell whether {facts.image} ships conduit-monitor (official 1.5.0 or later does)")
    if facts.has_metrics_addr is False:
        out.append(f"{facts.image} is {facts.describe()}, which has no --metrics-addr: the nodes publish no metrics")
    return out


def _versions(client: CountingClient, update: Update, state_dir: Path | None) -> None:
    """What the old and the new image say they are (each asked once, then cached by ID)."""
    for side in ("old", "new"):
        image_id = getattr(update, f"{side}_id")
        facts = asked_facts(client, image_id, state_dir) if image_id else None
        if facts is not None and facts.known:
            setattr(update, f"{side}_version", facts.describe())


def settle_image(
    doc: ClusterSpec, client: CountingClient | None, state_dir: Path | None = None, request: UpdateRequest | None = None
) -> Settled:
    """The spec with its image's facts, the warnings, and the problems that stop a plan."""
    image = doc.spec.containers.image
    given = static_facts(image, doc.spec.conduit.cli_version, doc.spec.conduit.build)
    choice = Choice(image)
    if client is not None:
        version_of = lambda ref, attrs: getattr(asked_facts(client, ref, state_dir, attrs), "version", None)  # noqa: E731
        choice = choose_image(doc, client, _images(state_dir), request or UpdateRequest(), version_of)
    found = asked_facts(client, choice.ref, state_dir, choice.attrs) if client is not None else None
    if found is not None:
        found = replace(found, image=image)
    out = Settled(doc, image_present=found is not None, update=choice.update, warnings=list(choice.warnings))
    if choice.update is not None:
        _versions(client, choice.update, state_dir)
    if found is not None and found.known:
        facts = found
        out.problems += mismatches(doc, found)
    else:
        facts = given
        if found is not None:
            reason = "it did not answer `conduit start --help` like a Conduit image"
        else:
            reason = "it is not on this host" if client is not None else "no Docker engine to ask"
        if client is not None or given.source == "unknown":
            out.warnings.append(_fallback_warning(given, reason))
    if found is not None:
        facts = replace(facts, image_id=found.image_id)  # the nodes run exactly this image
    out.doc = with_image_facts(doc, facts)
    out.problems += [f"{dotted(path)}: {message}" for path, message in image_checks(out.doc, facts)]
    out.warnings += unsure_warnings(doc, facts)
    return out

