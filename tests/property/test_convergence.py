"""Convergence from any starting state: after an apply of the plan, the next plan is empty.

The pure planner (conduit.engine.planning.plan) is driven over generated hosts: nodes
missing, stopped, made from another spec, resized by hand, made by the bash manager (adopted),
left over from a larger cluster; the image on the engine, absent, or its tag moved to another
image ID while the nodes run the old one; volumes there or not; the kernel keys, nginx files and
the tracker as wanted, missing or edited. A small simulator plays each step onto the host the way
the executor's handler does it (conduit.execute.executor), at the level of what Docker's list call
answers, and the host is observed again through the Docker driver's own parser
(conduit.drivers.docker.container_resource). The next plan must change nothing.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.drivers.docker import container_resource
from conduit.engine.intent import Apply
from conduit.engine.planning import Observed, plan as make
from conduit.engine.settle import Choice, ImageSeen, Settled, settle
from conduit.plan.planner import Plan
from conduit.render.container import labels
from conduit.render.desired import render
from conduit.spec.resolve import image_facts, nodes, with_image_facts
from conduit.spec.resources import Observation, Resource
from conduit.spec.spec import ClusterSpec
from tests.unit.test_plan_golden import base, load, with_front

TAG = "ghcr.io/psiphon-inc/conduit/cli:2.0.0"
OLD_ID, NEW_ID = "sha256:" + "a" * 64, "sha256:" + "b" * 64
# A pull brings what the registry's tag names: the image the nodes were made from. (A tag that
# moved in the registry is an image update, with its own plan: conduit.engine.updates.)
PULLED_ID = OLD_ID
SMALL = {"cpus": 0.25, "memory": "256MiB", "ulimit_nofile": 16384}


@functools.lru_cache(maxsize=None)
def spec(count: int, front: bool, max_clients: int) -> ClusterSpec:
    make = with_front if front else base
    return load(make(containers__count=count, containers__resources=SMALL, conduit__max_clients=max_clients))[0]


@dataclass
class Host:
    """What Docker's list call, the engine's images and the other drivers would report."""

    entries: dict[str, dict] = field(default_factory=dict)  # container name -> list entry
    limits: dict[str, tuple[float, int]] = field(default_factory=dict)
    image: str | None = None  # the ID the spec's tag names on this engine (None: not here)
    others: dict[tuple[str, str], Resource] = field(default_factory=dict)  # volumes, sysctl, nginx, network, tracker


def entry(name: str, props: dict, container_labels: dict, image_id: str, state: str = "running") -> dict:
    ports = []
    for published in props["ports"]:
        ip, public, target = published.split(":")
        private, proto = target.split("/")
        ports.append({"IP": ip, "PublicPort": int(public), "PrivatePort": int(private), "Type": proto})
    volume, destination = props["volume"].split(":", 1)
    ipam = {"IPv4Address": props["ip"]} if props["ip"] else None
    return {
        "Id": name, "Names": [f"/{name}"], "State": state, "Labels": container_labels, "ImageID": image_id, "Ports": ports,
        "Mounts": [{"Type": "volume", "Name": volume, "Destination": destination}],
        "HostConfig": {"NetworkMode": props["network"]},
        "NetworkSettings": {"Networks": {props["network"]: {"IPAMConfig": ipam}}},
    }  # fmt: skip


def settled(doc: ClusterSpec, host: Host) -> Settled:
    return settle(doc, seen_image(doc, host))


def seen_image(doc: ClusterSpec, host: Host) -> ImageSeen | None:
    """As conduit.engine.observe sees it: an image on the engine is asked, and the nodes are pinned to its ID."""
    if host.image is None:
        return None
    return ImageSeen(Choice(host.image), replace(image_facts(doc), image_id=host.image), docker_asked=True)


def observe(doc: ClusterSpec, host: Host) -> Observation:
    """As the drivers observe it (drivers/docker.py: ours, adopted, others ignored)."""
    obs = Observation(resources=list(host.others.values()))
    volumes = {n.name: f"{n.volume}:{doc.spec.conduit.data_dir}" for n in nodes(doc)}
    for name, e in sorted(host.entries.items()):
        resource, drifted = container_resource(e, host.limits[name])
        if e["Labels"]:
            obs.resources.append(resource)
            if drifted:
                obs.drifted.add(resource.key)
        elif volumes.get(name) == resource.props["volume"]:
            obs.resources.append(Resource("container", name, resource.props, resource.replace_fields, adopt=True))
    return obs


def plan(doc: ClusterSpec, host: Host) -> Plan:
    return make(Apply(), doc, Observed(observe(doc, host), image=seen_image(doc, host), has_image=host.image is not None))


def apply(doc: ClusterSpec, host: Host, the_plan: Plan) -> None:
    """Each step as its handler in conduit.execute.executor carries it out."""
    wanted = {r.key: r for r in render(settled(doc, host).spec)}
    by_name = {n.name: n for n in nodes(doc)}
    for step in the_plan.steps:
        if step.action in ("no-op", "drain", "restore", "measure", "judge", "backup") or step.kind == "compartment":
            continue  # no resource changes: a drain, a key backup, a compartment in a volume
        if step.action == "pull":
            host.image = host.image or PULLED_ID
        elif step.kind != "container":
            if step.action == "delete":
                del host.others[step.key]
            else:
                host.others[step.key] = wanted[step.key]
        elif step.action == "delete":
            del host.entries[step.id], host.limits[step.id]
        elif step.action == "update":
            fields = {c.field for c in step.changes}
            cpus, memory = host.limits[step.id]
            host.limits[step.id] = (step.desired["cpus"] if "cpus" in fields else cpus, step.desired["memory"] if "memory" in fields else memory)
            if "state" in fields:
                host.entries[step.id]["State"] = "running"
        else:  # create, replace, adopt: a new container from the step's props, made from its image ID or its tag
            node = by_name[step.id]
            image_id = step.desired.get("image_id") or host.image
            assert image_id is not None, f"{step.id} is made from {TAG}, which is not on the engine and was not pulled"
            # Its volume is made by the plan's own volume step, before it (the container step makes none).
            assert ("volume", node.volume) in host.others, f"{step.id} is made before its volume {node.volume}"
            host.entries[step.id] = entry(step.id, step.desired, labels(doc, node, step.desired), image_id)
            host.limits[step.id] = (step.desired["cpus"], step.desired["memory"])


NODE_STATES = ("missing", "running", "stopped", "other-spec", "resized", "bash-manager")
OTHER_STATES = ("wanted", "missing", "edited")


def edited(resource: Resource) -> Resource:
    props = {k: (not v if isinstance(v, bool) else "edited by hand") for k, v in resource.props.items()}
    return Resource(resource.kind, resource.id, props, resource.replace_fields, keep=resource.keep)


@st.composite
def hosts(draw) -> tuple[ClusterSpec, Host]:
    count, front = draw(st.integers(1, 3)), draw(st.booleans())
    doc = spec(count, front, 100)
    old = spec(count + 1, front, 200)  # what an earlier apply of another spec made, one node more
    # The engine: the tag names the image the nodes run, another one (retagged), or nothing (untagged).
    running_id = OLD_ID
    host = Host(image=draw(st.sampled_from([OLD_ID, NEW_ID, None])))
    # The pinned props of the spec as applied when the tag named running_id.
    made = {r.id: r for r in render(settled(doc, Host(image=running_id)).spec) if r.kind == "container"}
    made_old = {r.id: r for r in render(settled(old, Host(image=running_id)).spec) if r.kind == "container"}
    for node in nodes(old):
        how = draw(st.sampled_from(NODE_STATES if node.name in made else ("missing", "other-spec")))
        if how == "missing":
            continue
        source, source_doc = (made_old, old) if how == "other-spec" else (made, doc)
        props = copy.deepcopy(source[node.name].props)
        own = labels(source_doc, node, props) if how != "bash-manager" else {}
        host.entries[node.name] = entry(node.name, props, own, running_id, "exited" if how == "stopped" else "running")
        host.limits[node.name] = (props["cpus"], props["memory"] * (2 if how == "resized" else 1))
    for r in render(settled(doc, host).spec):
        if r.kind == "container":
            continue
        how = draw(st.sampled_from(("wanted", "missing") if r.kind == "volume" else OTHER_STATES))
        if how != "missing":
            host.others[r.key] = r if how == "wanted" else edited(r)
    return doc, host


@given(hosts())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_after_an_apply_the_next_plan_is_empty(case):
    doc, host = case
    first = plan(doc, host)
    assert not first.problems
    apply(doc, host, first)
    again = plan(doc, host)
    assert [(s.action, s.kind, s.id, s.changes) for s in again.changes] == []


def test_a_node_whose_image_lost_its_tag_converges():
    """Found by the property: the spec's tag is gone from the engine (pruned, untagged) while a node
    runs the image it named. The spec cannot be pinned to an ID then, and the node's image ID used
    to be planned as a change to null, an update no handler makes: planned again after every apply."""
    doc = spec(2, False, 100)
    host = Host(image=OLD_ID)
    for r in render(settled(doc, host).spec):
        if r.kind == "container":
            node = {n.name: n for n in nodes(doc)}[r.id]
            host.entries[r.id] = entry(r.id, r.props, labels(doc, node, r.props), OLD_ID, "exited" if r.id == "conduit-1" else "running")
            host.limits[r.id] = (r.props["cpus"], r.props["memory"])
        else:
            host.others[r.key] = r
    host.image = None  # docker image rm of the tag; the nodes keep their image by ID
    first = plan(doc, host)
    assert [(s.action, s.id, [c.field for c in s.changes]) for s in first.changes] == [("update", "conduit-1", ["state"])]
    apply(doc, host, first)
    assert plan(doc, host).changes == []
