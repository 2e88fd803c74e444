"""A new digest behind the tag, pulled by this apply, is asked what it speaks before any node is
touched: the plan rendered its nodes for what it expected (conduit.engine.settle), and an image
that says otherwise stops the apply. What it said is recorded by image ID in the apply's own image
store (the engine's, handed down), so the next plan knows it; a record that fails is a warning."""

from __future__ import annotations

from collections.abc import Callable

from conduit.drivers.docker import CountingClient, RegistryError, inspect_image, probe_image, pull_digest
from conduit.errors import DockerError
from conduit.facts.versions import reported
from conduit.state.db import StateError
from conduit.state.images import Images

ROLLBACK = "no node was touched (`conduit rollback` is the way down)"


def pull_by_digest(client: CountingClient, ref: str) -> dict:
    """Download repository@sha256:… (the tag on this host does not move); its attributes."""
    repo, _, digest = ref.partition("@")
    try:
        return pull_digest(client, repo, digest)
    except RegistryError as exc:
        raise DockerError(f"{exc}; check the registry and run the apply again") from None


def verdict(expected: dict, found) -> str | None:
    """Why the image's answer (`found`, as probe_image gives it) contradicts what the plan was rendered for, or None."""
    ref, floor, said = expected["image"], reported(expected.get("floor")), found.describe()
    version = reported(found.version)
    if version is not None and floor is not None and version < floor:
        return f"{ref} says it is {said}, below {floor} that the nodes run: versions move up only; {ROLLBACK}"
    if not found.known:
        return None if expected.get("cli") is None else (
            f"{ref} did not answer `conduit start --help` like a Conduit image; no node was touched: run plan again")
    cli, build = expected.get("cli"), expected.get("build")
    if (cli is not None and found.cli != cli) or (build is not None and found.build is not None and found.build != build):
        return f"the new image speaks {said}, not {expected['rendered_for']} that the plan was rendered for; no node was touched: run plan again"
    return None


def probe_pulled(client: CountingClient, expected: dict, images: Images | None, warn: Callable[[str], None],
                 attrs: dict | None = None) -> str | None:  # fmt: skip
    """Ask the pulled image, record its answer by image ID in `images` (None: a run without a state
    database), and say whether it contradicts the plan. A record that fails is said through `warn`.
    `attrs`: Docker's answer for the image, when its pull gave it."""
    ref = expected["image"]
    attrs = attrs if attrs is not None else inspect_image(client, ref)
    if attrs is None:
        raise DockerError(f"{ref} is not on this host after its pull; run the apply again")
    found = probe_image(client, ref, attrs)
    if images is None:
        warn(f"what {ref} said it speaks was not recorded (no state database in this run); the next plan asks it again")
    else:
        try:
            images.save_facts(attrs["Id"], found.to_json())
        except StateError as exc:
            warn(f"what {ref} said it speaks was not recorded, the next plan asks it again: {exc}")
    return verdict(expected, found)
