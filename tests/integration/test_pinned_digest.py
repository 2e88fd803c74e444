"""Nodes that move to a digest pulled by this apply are pinned to its image ID, which the pull
already gave: one inspect for the whole apply, not one per node. The digest is pushed to the
private registry and pulled, and the nodes made, by the private engine."""

from __future__ import annotations

import pytest

from conduit.drivers.docker import CountingClient
from conduit.engine.planning import target_of
from conduit.execute.executor import Executor
from conduit.plan.planner import Step
from conduit.render.container import CONFIG, config_from_labels, container_props
from conduit.spec.load import load_text
from conduit.spec.resolve import nodes
from harness import free_port_block
from tests.helpers import SMALL_VPS, dump, minimal
from tests.integration.test_updates import push

pytestmark = pytest.mark.integration


@pytest.fixture
def pinned(registry, docker_engine, docker_cleanup, standin_image, tmp_path, monkeypatch):
    """(the spec, repository@digest of a new push, Docker's image ID for it, an executor on the private
    engine, the references its client inspected). The engine has the digest only once it pulls it."""
    prefix = docker_cleanup.name("pin")
    tag = f"{registry.address}/{prefix}:stable"
    ref = f"{tag.rsplit(':', 1)[0]}@{push(docker_engine, registry, tag, standin_image)}"
    doc = load_text(dump(minimal(
        host={"vcpus": 2, "memory": "4GiB"},
        containers={"count": 3, "image": tag, "naming": {"prefix": prefix, "volume_prefix": f"{prefix}-data"}},
        conduit={"max_clients": 10, "bandwidth_mbps": 2, "metrics_port_base": free_port_block(3)},
        sysctl={"enabled": False},
    )), "cluster.yaml", SMALL_VPS)  # fmt: skip
    client = CountingClient(docker_engine.host)
    inspected, inspect = [], client.api.inspect_image

    def inspect_image(image):
        inspected.append(image)
        return inspect(image)

    monkeypatch.setattr(client.api, "inspect_image", inspect_image)  # counted, and asked of the engine
    return doc, ref, Executor(target_of(doc), tmp_path, tmp_path, client), inspected


def create_nodes(ex: Executor, doc, ref: str) -> None:
    for node in nodes(doc):
        ex.run(Step("containers", "container", node.name, "create", "new", desired=container_props(doc, node) | {"image_id": ref}, batch=0))


def made(docker_engine, doc) -> list[dict]:
    return [docker_engine.client.containers.get(node.name).attrs for node in nodes(doc)]


def test_each_node_is_created_from_the_image_id_its_pull_gave_with_no_inspect_of_its_own(pinned, docker_engine):
    doc, ref, ex, inspected = pinned
    ex.run(Step("containers", "image", ref, "pull", "the new digest behind the tag", desired={"image": ref}))
    image_id = docker_engine.client.images.get(ref).id
    create_nodes(ex, doc, ref)
    assert inspected == [ref]  # the pull's own
    containers = made(docker_engine, doc)
    assert [c["Image"] for c in containers] == [image_id] * 3
    assert [c["State"]["Status"] for c in containers] == ["running"] * 3
    labels = [c["Config"]["Labels"] for c in containers]
    assert {config_from_labels(label)["image_id"] for label in labels} == {image_id}
    assert all(CONFIG in label for label in labels)


def test_a_digest_pulled_before_this_run_is_inspected_once_for_all_nodes(pinned, docker_engine):
    doc, ref, ex, inspected = pinned
    docker_engine.client.api.pull(ref)  # an apply that stopped after its pull, run again
    create_nodes(ex, doc, ref)
    assert inspected == [ref]
    assert [c["Image"] for c in made(docker_engine, doc)] == [docker_engine.client.images.get(ref).id] * 3
