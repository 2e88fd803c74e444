"""Nodes that move to a digest pulled by this apply are pinned to its image ID, which the pull
already gave: one inspect for the whole apply, not one per node."""

from __future__ import annotations

from types import SimpleNamespace

from conduit.engine.planning import target_of
from conduit.execute.executor import Executor
from conduit.plan.planner import Step
from conduit.render.container import CONFIG, config_from_labels, container_props
from conduit.spec.load import load_text
from conduit.spec.resolve import nodes
from tests.helpers import SMALL_VPS, dump, minimal

REF = "example.org/conduit@sha256:" + "1" * 64
IMAGE_ID = "sha256:" + "2" * 64


class Api:
    """The calls a pull and a create make, recorded."""

    def __init__(self):
        self.calls: list[str] = []
        self.created: list[dict] = []

    def pull(self, ref):
        self.calls.append(f"pull {ref}")

    def inspect_image(self, ref):
        self.calls.append(f"inspect {ref}")
        return {"Id": IMAGE_ID}

    def create_container_from_config(self, config, name=None):
        self.calls.append(f"create {name}")
        self.created.append(config)
        return {"Id": f"id-{name}"}

    def start(self, container):
        self.calls.append(f"start {container}")


def test_each_node_is_created_from_the_image_id_its_pull_gave_with_no_inspect_of_its_own(tmp_path):
    doc = load_text(dump(minimal(host={"vcpus": 2, "memory": "4GiB"}, containers={"count": 3}, sysctl={"enabled": False})),
                    "cluster.yaml", SMALL_VPS)  # fmt: skip
    api = Api()
    ex = Executor(target_of(doc), tmp_path, tmp_path, SimpleNamespace(api=api, base_url="unix:///fake.sock", calls=0, kept=None))
    ex.run(Step("containers", "image", REF, "pull", "the new digest behind the tag", desired={"image": REF}))
    for node in nodes(doc):
        props = container_props(doc, node) | {"image_id": REF}
        ex.run(Step("containers", "container", node.name, "create", "new", desired=props, batch=0))
    assert [c for c in api.calls if c.startswith("inspect")] == [f"inspect {REF}"]  # the pull's own
    assert [c["Image"] for c in api.created] == [IMAGE_ID] * 3
    assert {config_from_labels(c["Labels"])["image_id"] for c in api.created} == {IMAGE_ID}
    assert all(CONFIG in c["Labels"] for c in api.created)


def test_a_digest_pulled_before_this_run_is_inspected_once_for_all_nodes(tmp_path):
    doc = load_text(dump(minimal(host={"vcpus": 2, "memory": "4GiB"}, containers={"count": 3}, sysctl={"enabled": False})),
                    "cluster.yaml", SMALL_VPS)  # fmt: skip
    api = Api()
    ex = Executor(target_of(doc), tmp_path, tmp_path, SimpleNamespace(api=api, base_url="unix:///fake.sock", calls=0, kept=None))
    for node in nodes(doc):
        ex.run(Step("containers", "container", node.name, "create", "new", desired=container_props(doc, node) | {"image_id": REF}, batch=0))
    assert [c for c in api.calls if c.startswith("inspect")] == [f"inspect {REF}"]
    assert [c["Image"] for c in api.created] == [IMAGE_ID] * 3
