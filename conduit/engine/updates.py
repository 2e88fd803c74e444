"""Which image the nodes should run: digests are the truth, the tag only a name for them.

- policy off: the image Docker has under the tag now.
- report / auto: the image ID the nodes ran at the last good generation, while Docker still
  has it; the registry is asked what the tag means now (a read). A new digest Docker does not
  have yet is named `repository@sha256:…`: the plan pulls it and asks it which CLI it speaks as
  steps (conduit.plan.schedule); nothing here downloads it. The registry's answers are kept in
  the observation's Learned, recorded by the apply, never by a plan. Under report it is shown;
  under auto (inside the maintenance window, and unless its canary failed before) or with
  `conduit update` it becomes what the nodes should run.
- a rollback: the image ID its generation recorded.

Under updates.versions the tag asked is not the spec's own but the newest tag of its repository
inside the range (`repository:2.0.1` for ">=2.0,<3"), listed with the registry's API; a host
with no image yet starts on the spec's own tag, and a registry that cannot list its tags leaves
the spec's tag followed, with a warning.

Versions move up only: a tag (or, without updates.versions, a digest whose image says so) below
the version the nodes run is never taken, and a tag the nodes run that the registry no longer
lists (yanked) leaves them where they are, with a warning; `conduit rollback` is the way down.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass

from packaging.version import Version

from conduit.drivers.docker import CountingClient, RegistryError, call, image_tag, inspect_image, registry_digest, repo_digest, repository
from conduit.drivers.registry import TagsError, list_tags
from conduit.engine.settle import Choice, Learned, Update
from conduit.facts.versions import below, flavor_of, highest, parse_tag, reported
from conduit.render.container import CLUSTER
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec, MaintenanceWindow
from conduit.state.db import StateError
from conduit.state.images import Images, NodeImage


STAYS = "the nodes stay where they are (`conduit rollback` takes them down)"  # ends every warning of a lower version
YANKED = "is no longer listed by the registry (yanked?)"

VersionOf = Callable[[str, dict], "str | None"]  # what an image (ID, Docker's answer) says its version is


@dataclass(frozen=True)
class UpdateRequest:
    """How this plan treats a new image behind the spec's tag."""

    registry: str = "now"  # now | due (when spec.updates.check_every_minutes has passed: watch) | never
    take: bool | None = None  # True: move to it (conduit update); False: never; None: as the policy says
    pin: str | None = None  # an image ID the nodes should run (a rollback to a generation)


def in_window(window: MaintenanceWindow | None, now: datetime.datetime | None = None) -> bool:
    if window is None:
        return True
    now = now or datetime.datetime.now(datetime.timezone.utc)
    minute = now.hour * 60 + now.minute
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (window.start, window.end))
    return start <= minute < end if start < end else minute >= start or minute < end


def recorded_image(images: Images | None, image: str) -> str | None:
    """The image ID the nodes ran at the last generation that recorded any, for this image name."""
    if images is None:
        return None
    try:
        rows = images.of_nodes()
    except StateError:
        return None
    return _most_run([r for r in rows.values() if r.image == image])


def _most_run(rows: list[NodeImage]) -> str | None:
    """The image ID most of these nodes ran (they all do, unless an apply was cut short)."""
    ids = [r.image_id for r in rows]
    return max(set(ids), key=ids.count) if ids else None


def _registry(spec: ClusterSpec, client: CountingClient, images: Images | None, when: str, image: str, learned: Learned) -> tuple[str | None, list[str]]:
    """The tag's digest in the registry: asked now, or as last asked when that is recent enough."""
    last = _recent_check(spec, images, when, image)
    if last is not None:
        return last[1], []
    try:
        digest = registry_digest(client, image)
    except RegistryError as exc:
        return None, [f"updates: {exc}"]
    learned.checks.append((image, digest))
    return digest, []


def _last_check(images: Images, image: str):
    try:
        return images.last_check(image)
    except StateError:
        return None


def _recent_check(spec: ClusterSpec, images: Images | None, when: str, key: str):
    """(when, answer) of the last time the registry was asked about `key`, if watch need not ask again yet."""
    if when != "due" or images is None:
        return None
    last = _last_check(images, key)
    if last is not None and time.time() - last[0] < spec.spec.updates.check_every_minutes * 60:
        return last
    return None


def _followed(spec: ClusterSpec, images: Images | None, when: str, current: dict | None, learned: Learned) -> tuple[str | None, list[str]]:
    """The tag to ask the registry about: the spec's own, or under updates.versions the newest tag of
    its repository inside the range (not before the host runs an image: it starts on the spec's tag).
    None: the nodes stay, as every tag there is would take them below the version they run."""
    image, versions = spec.spec.containers.image, spec.spec.updates.versions
    if versions is None or current is None:
        return image, []
    followed, warnings, listed = _newest(spec, images, when, image, versions, learned)
    tag, running = _running(images, current, image)
    said = f"{repository(image)}:{tag}" if tag else f"version {running}"
    gone = listed is not None and tag is not None and parse_tag(tag) is not None and tag not in listed
    yanked = f"{said} that the nodes run {YANKED}"
    if below(image_tag(followed), running):
        why = f"{yanked}, and {followed} is below it" if gone else f"{followed} is below {said} that the nodes run"
        return None, warnings + [f"updates: {why}; {STAYS}"]
    return followed, warnings + ([f"updates: {yanked}"] if gone else [])


def _newest(spec: ClusterSpec, images: Images | None, when: str, image: str, versions: str, learned: Learned) -> tuple[str, list[str], list[str] | None]:
    """The newest tag inside the range (or the spec's own when none is), the warnings, and the
    registry's tags when it was asked now (None: the last answer was recent enough)."""
    repo = repository(image)
    key = f"{repo} {versions}"  # the range's answer is a tag, kept beside the tags' digests
    last = _recent_check(spec, images, when, key)
    if last is not None:
        return (f"{repo}:{last[1]}" if last[1] else image), [], None
    try:
        tags = list_tags(image)
    except TagsError as exc:
        return image, [f"updates: cannot list the tags of {repo} ({exc}); following {image} itself"], None
    best = highest(tags, versions, flavor_of(image_tag(image) or ""))
    learned.checks.append((key, best.tag if best else None))
    if best is None:
        return image, [f"updates: no tag of {repo} is inside {versions}; following {image} itself"], tags
    return f"{repo}:{best.tag}", [], tags


def _running(images: Images | None, current: dict, image: str) -> tuple[str | None, Version | None]:
    """The tag of the nodes' image and the version they run: the tag's, else what the image said."""
    tag = _old_tag(images, current, image)
    parsed = parse_tag(tag) if tag else None
    return tag, parsed.version if parsed else reported(_said(images, current["Id"]))


def _said(images: Images | None, image_id: str) -> str | None:
    """The version the image said it is when it was asked (cached by ID), or None."""
    if images is None:
        return None
    try:
        facts = images.facts(image_id)
    except StateError:
        return None
    return facts.version if facts else None


def _old_tag(images: Images | None, attrs: dict, image: str) -> str | None:
    """The tag of the nodes' image: one it has on this host in the image's repository (the spec's
    own first), else the tag the registry last gave its digest for."""
    repo = repository(image)
    tags = [t for t in attrs.get("RepoTags") or [] if repository(t) == repo]
    if tags:
        return image_tag(image) if image in tags else image_tag(tags[0])
    digest = repo_digest(attrs, image)
    if images is None or digest is None:
        return None
    try:
        names = images.checked_names(digest)
    except StateError:
        return None
    return next((image_tag(n) for n in names if " " not in n and repository(n) == repo and image_tag(n)), None)


def choose_image(
    spec: ClusterSpec, client: CountingClient, images: Images | None, request: UpdateRequest, version_of: VersionOf | None = None,
    learned: Learned | None = None,
) -> Choice:
    """`version_of` asks an image which version it is (to refuse a digest that says it is lower);
    the registry's answers go to `learned` (images is only read)."""
    learned = learned if learned is not None else Learned()
    image = spec.spec.containers.image
    if request.pin is not None:
        return _pinned(client, request.pin, image)
    if spec.spec.updates.policy == "off":
        return Choice(image)
    current = _current(client, images, image)
    stay = Choice(current["Id"], attrs=current) if current else Choice(image)
    if request.registry == "never":
        return stay
    followed, stay.warnings = _followed(spec, images, request.registry, current, learned)
    if followed is None:
        return stay
    digest, asked = _registry(spec, client, images, request.registry, followed, learned)
    stay.warnings += asked
    if digest is None or (current is not None and repo_digest(current, image) == digest):
        return stay
    return _new_digest(spec, client, images, request, version_of, (current, stay), followed, digest)


def _new_digest(spec: ClusterSpec, client: CountingClient, images: Images | None, request: UpdateRequest, version_of: VersionOf | None,
                now: tuple[dict | None, Choice], followed: str, digest: str) -> Choice:
    """The registry gives `followed` a digest the nodes do not run: an update, unless its image says it is lower."""
    current, stay = now
    new = inspect_image(client, f"{repository(followed)}@{digest}")  # on this host already? (a read, never a pull)
    if current is None:  # the first image of this name here: nothing to move from (the tag is pulled as it is)
        return Choice(new["Id"], warnings=stay.warnings, attrs=new) if new is not None else stay
    if new is not None and new["Id"] == current["Id"]:
        return stay
    lower = _says_lower(version_of, current, new, followed, digest) if new is not None else None
    if lower is not None:
        stay.warnings.append(lower)
        return stay
    update = _update(spec, images, followed, current, new, digest)
    update.taken, update.why_not = _take(spec, images, request, update)
    if update.taken:
        return Choice(update.new_id, update, stay.warnings, new, pull=new is None)
    stay.update = update
    return stay


def _pinned(client: CountingClient, pin: str, image: str) -> Choice:
    """A rollback's image, by ID, while Docker has it."""
    pinned = inspect_image(client, pin)
    if pinned is not None:
        return Choice(pin, attrs=pinned)
    return Choice(image, warnings=[f"image {pin[:19]} recorded for this generation is gone from Docker; using {image} as it is now"])


def _says_lower(version_of: VersionOf | None, current: dict, new: dict, followed: str, digest: str) -> str | None:
    """Why a new digest is not an update: its image says it is a version below the nodes' one."""
    if version_of is None:
        return None
    old_version, new_version = (reported(version_of(attrs["Id"], attrs)) for attrs in (current, new))
    if old_version is None or new_version is None or new_version >= old_version:
        return None
    return f"updates: {followed} now means {digest[:19]}, which says it is {new_version}, below {old_version} that the nodes run; {STAYS}"


def _update(spec: ClusterSpec, images: Images | None, followed: str, current: dict, new: dict | None, digest: str) -> Update:
    """`new` None: the new digest is not on this host; it is named by its digest until it is pulled."""
    image = spec.spec.containers.image
    new_id = new["Id"] if new is not None else f"{repository(followed)}@{digest}"
    update = Update(followed, current["Id"], repo_digest(current, image), new_id, digest, False, pulled=new is not None)
    if followed != image:  # the newest tag inside updates.versions: say which tags it moves between
        update.versions, update.old_tag, update.new_tag = spec.spec.updates.versions, _old_tag(images, current, image), image_tag(followed)
    return update


def generation_image(images: Images, gen: int) -> str | None:
    """The image ID the nodes ran when generation `gen` succeeded (None: it recorded none)."""
    try:
        return _most_run(list(images.of_nodes(gen).values()))
    except StateError:
        return None


def _current(client: CountingClient, images: Images | None, image: str) -> dict | None:
    """The image the nodes ran at the last good generation while Docker has it, else the tag's."""
    recorded = recorded_image(images, image)
    current = inspect_image(client, recorded) if recorded else None
    return current if current is not None else inspect_image(client, image)


def _take(spec: ClusterSpec, images: Images | None, request: UpdateRequest, update: Update) -> tuple[bool, str | None]:
    if request.take is not None:
        return request.take, None if request.take else "`conduit update` takes it"
    if spec.spec.updates.policy != "auto":
        return False, "updates.policy is report: `conduit update` takes it"
    refused = _refused(images)
    refused = refused.get(update.new_id) or refused.get(f"{repository(update.image)}@{update.new_digest}")
    if refused is not None:
        return False, f"its canary failed at generation {refused[0]} ({refused[1]}); `conduit update` tries it again"
    if not in_window(spec.spec.updates.window):
        window = spec.spec.updates.window
        return False, f"outside the maintenance window {window.start}-{window.end} UTC"
    return True, None


def _refused(images: Images | None) -> dict:
    if images is None:
        return {}
    try:
        return images.refused()
    except StateError:
        return {}


def record_images(client: CountingClient, images: Images, gen: int, spec: ClusterSpec) -> None:
    """What each node of the cluster runs now that `gen` succeeded: image ID, registry digest, version."""
    label = f"{CLUSTER}={spec.metadata.name}"
    running = {e["Names"][0].lstrip("/"): e.get("ImageID") for e in call(client, client.api.containers, all=True, filters={"label": label})}
    attrs = {image_id: inspect_image(client, image_id) for image_id in set(running.values()) if image_id}
    said = {image_id: images.facts(image_id) for image_id in attrs}  # a StateError stops the record; the apply says so as a warning
    wanted = {n.name for n in nodes(spec)}
    rows = {}
    for node, image_id in running.items():
        if not image_id or node not in wanted:
            continue
        facts = said[image_id]
        digest = repo_digest(attrs[image_id], spec.spec.containers.image) if attrs.get(image_id) else None
        rows[node] = NodeImage(spec.spec.containers.image, image_id, digest, facts.describe() if facts and facts.known else None)
    images.record_nodes(gen, rows)
