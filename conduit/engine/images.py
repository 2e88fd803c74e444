"""What an image speaks, asked once per image ID: from the cache in the state database, or by
running it (an image on this host only). A plan's observation reads the cache and keeps what it
learned in a Learned (conduit.engine.settle), for the apply to record; what that means for the
spec is conduit.engine.settle (pure).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from conduit.drivers.docker import CountingClient, inspect_image, probe_image
from conduit.engine.settle import Learned
from conduit.spec.image import ImageFacts
from conduit.state.db import Database, StateError
from conduit.state.images import Images


def reader(state_dir: Path | None) -> Images | None:
    """The image store to read, or None (no state yet, or one that cannot be read): nothing is created."""
    if state_dir is None:
        return None
    try:
        db = Database.reader(state_dir)
    except StateError:
        return None
    return Images(db) if db is not None else None


def image_facts(client: CountingClient, image: str, images: Images | None, learned: Learned, attrs: dict | None = None) -> ImageFacts | None:
    """The image's own answer (cached by image ID, else asked and kept in `learned`), or None when
    the image is not on this host. `attrs`: Docker's answer for the image, when the caller has it."""
    attrs = attrs if attrs is not None else inspect_image(client, image)
    if attrs is None:
        return None
    image_id = attrs.get("Id") or image
    cached = _cached(images, image_id)
    if cached is None and image_id in learned.facts:
        cached = ImageFacts.from_json(learned.facts[image_id])
    if cached is not None:
        return replace(cached, image=image, image_id=image_id)
    facts = probe_image(client, image, attrs)
    learned.facts[image_id] = facts.to_json()
    return facts


def asked_facts(client: CountingClient, image: str, state_dir: Path | None, attrs: dict | None = None) -> tuple[ImageFacts | None, str | None]:
    """image_facts outside a plan (a command that runs no plan): what it learned is recorded at once.
    With the answer, a warning when the state could not keep it (the answer stands; the next command
    asks the image again)."""
    learned = Learned()
    facts = image_facts(client, image, reader(state_dir), learned, attrs)
    if learned.facts and state_dir is not None:
        try:
            record_learned(Images(Database(state_dir)), learned)
        except StateError as exc:
            return facts, f"what {image} says of itself was not kept ({exc}); the next command asks it again"
    return facts, None


def _cached(images: Images | None, image_id: str) -> ImageFacts | None:
    if images is None:
        return None
    try:
        return images.facts(image_id)
    except StateError:
        return None


def record_learned(images: Images, learned: Learned) -> None:
    """Keep what a plan's observation learned (raises StateError)."""
    for image_id, facts in learned.facts.items():
        images.save_facts(image_id, facts)
    for key, answer in learned.checks:
        images.record_check(key, answer)
