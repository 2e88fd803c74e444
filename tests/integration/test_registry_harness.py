"""The private registry takes pushes from the private engine over plain HTTP, a tag follows
the latest push, and an earlier build stays pullable by its digest."""

from __future__ import annotations

import secrets
import urllib.request

import pytest

from harness import Registry, push_variant
from harness.registry import VARIANT_LABEL

pytestmark = pytest.mark.integration


def test_registry_answers_v2_and_stops(registry):
    with urllib.request.urlopen(f"http://{registry.address}/v2/", timeout=5) as resp:
        assert resp.status == 200
    assert registry.address.startswith("127.0.0.1:")
    assert "level: warn" in registry.config_path.read_text()

    # a second one gets its own port and directory, and stop ends its process
    with Registry() as other:
        assert other.address != registry.address and other.dir != registry.dir
        process, directory = other.process, other.dir
    assert process.poll() is not None and not directory.exists()


def test_tag_follows_the_latest_push_and_old_digest_stays_pullable(docker_engine, registry, standin_image):
    client = docker_engine.client
    repo, tag = f"conduit-{secrets.token_hex(3)}", "latest"
    ref = f"{registry.address}/{repo}"

    first = push_variant(docker_engine, registry, repo, tag, standin_image, {"STANDIN_CLIENTS": "0"})
    first_image = client.images.get(f"{ref}:{tag}")
    second = push_variant(docker_engine, registry, repo, tag, standin_image, {"STANDIN_EXIT_AFTER": "0"})
    second_image = client.images.get(f"{ref}:{tag}")

    assert first.startswith("sha256:") and second.startswith("sha256:")
    assert first != second and first_image.id != second_image.id
    assert "STANDIN_EXIT_AFTER=0" in second_image.attrs["Config"]["Env"]
    assert client.api.inspect_distribution(f"{ref}:{tag}")["Descriptor"]["digest"] == second

    # drop both builds locally so that the pull below really comes from the registry
    for image in (first_image, second_image):
        client.images.remove(image.id, force=True)
    pulled = client.images.pull(f"{ref}@{first}")
    assert pulled.id == first_image.id
    assert f"{ref}@{first}" in pulled.attrs["RepoDigests"]
    assert "STANDIN_CLIENTS=0" in pulled.attrs["Config"]["Env"]
    assert pulled.labels[VARIANT_LABEL] == first_image.labels[VARIANT_LABEL]
