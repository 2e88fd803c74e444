"""Golden plans: a spec and a host as the drivers report it, planned and printed as the CLI prints them.

Each scenario builds the desired resources from a small fixed spec (image facts pinned:
conduit.cli_version 2.0 or 1.5, build official, so no Docker is asked) and an observed
list of resources shaped as the drivers report them: containers go through the Docker
driver's own `container_resource` from list entries carrying the labels that
`render/container.py` `labels()` writes; sysctl, nginx, volume, network and tracker
resources, the drifted set, adopt/keep flags, foreign things, problems and warnings are
the ones `drivers/*.py` put into an Observation. The plan is made from that Observation by
`conduit.engine.planning.plan`, as `conduit plan` makes it after observing, then
printed by `conduit.views.report.show_plan`, as `conduit plan` prints it:

    tests/golden/plans/<scenario>.txt    `conduit plan FILE`: stdout, then stderr (problems)
    tests/golden/plans/<scenario>.json   `conduit plan FILE --json`

and compared byte for byte; a mismatch shows a unified diff.

Regenerate after an intended change of the plan or its printing, and review the diff:

    UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_plan_golden.py
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conduit.drivers.docker import container_resource
from conduit.engine.intent import Apply
from conduit.engine.planning import Observed, plan
from conduit.engine.settle import Choice, ImageSeen, Update, settle
from conduit.plan.planner import Plan
from conduit.plan.saved import dumps, parse_saved, plan_data, spec_fields
from conduit.render.container import container_props, labels
from conduit.render.desired import render
from conduit.spec.load import load_text
from conduit.spec.resolve import image_facts, nodes, with_image_facts
from conduit.spec.resources import Observation, Resource
from conduit.spec.spec import ClusterSpec
from conduit.views.report import show_plan
from tests.helpers import SMALL_VPS, dump, minimal

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "plans"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
# The path `plan --json` records as spec_file: fixed, so no checkout path reaches a golden file.
SPEC_FILE = "/etc/conduit/cluster.yaml"
IMAGE = "ghcr.io/psiphon-inc/conduit/cli:2.0.0"
IMAGE_15 = "ghcr.io/psiphon-inc/conduit/cli:1.5.0"


# ------------------------------------------------------------------ specs


def base(**changes) -> dict:
    """Two small host-networked nodes, kernel tuning, no front, no tracker; fixed host facts."""
    doc = minimal(
        host={"vcpus": 2, "memory": "4GiB", "nic_mbps": 1000},
        containers={
            "count": 2,
            "image": IMAGE,
            "resources": {"cpus": 0.5, "memory": "384MiB", "ulimit_nofile": 16384},
        },
        conduit={"cli_version": "2.0", "build": "official", "max_clients": 100, "bandwidth_mbps": 5},
        sysctl={"profile": "conduit", "on_refused": "warn"},
        tracker={"enabled": False},
    )
    doc["metadata"]["name"] = "golden"
    for path, value in changes.items():
        parent = doc["spec"]
        *head, last = path.split("__")
        for part in head:
            parent = parent.setdefault(part, {})
        parent[last] = value
    return doc


FRONT = {
    "network": {"mode": "bridge", "name": "conduit-golden", "backends": "published"},
    "loadbalancer": {
        "enabled": True,
        "listeners": [{"name": "tcp443", "port": 443, "protocol": "tcp", "backend_port": 443, "host_port_base": 8081}],
        "access_log": "/var/log/nginx/conduit-golden.log",
    },
}


def with_front(**changes) -> dict:
    return base(**copy.deepcopy(FRONT), **changes)


def load(doc: dict) -> tuple[ClusterSpec, str]:
    text = dump(doc)
    return load_text(text, "cluster.yaml", SMALL_VPS), text


# ------------------------------------------------------------------ the host, as the drivers report it


def docker_entry(doc: ClusterSpec, index: int, *, labelled: bool = True, state: str = "running", **by_hand) -> dict:
    """A container of `docker ps -a` (the list answer) as `conduit apply` made it from `doc`.

    `by_hand`: what the list answer shows that differs from the labels (network, ip, ports, volume).
    """
    node = nodes(doc)[index - 1]
    props = container_props(doc, node)
    shown = {**props, **by_hand}
    network = shown["network"]
    ports = []
    for published in shown["ports"]:
        ip, public, target = published.split(":")
        private, proto = target.split("/")
        ports.append({"IP": ip, "PublicPort": int(public), "PrivatePort": int(private), "Type": proto})
    volume, destination = shown["volume"].split(":", 1)
    return {
        "Id": f"{index:064x}",
        "Names": [f"/{node.name}"],
        "State": state,
        "Labels": labels(doc, node, props) if labelled else {},
        "Ports": ports,
        "Mounts": [{"Type": "volume", "Name": volume, "Destination": destination}],
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {"Networks": {network: {"IPAMConfig": {"IPv4Address": shown["ip"]} if shown["ip"] else None}}},
    }


def limits_of(doc: ClusterSpec, index: int) -> tuple[float, int]:
    node = nodes(doc)[index - 1]
    return node.cpus, node.memory


@dataclass
class Host:
    """An Observation built up driver by driver."""

    obs: Observation = field(default_factory=Observation)

    def add(self, resource: Resource, drifted: bool = False) -> Host:
        self.obs.resources.append(resource)
        if drifted:
            self.obs.drifted.add(resource.key)
        return self

    def container(self, entry: dict, limits: tuple[float, int], adopt: bool = False) -> Host:
        resource, drifted = container_resource(entry, limits)
        if adopt:  # drivers/docker.py _observe_other_container: taken over, not marked drifted
            return self.add(Resource("container", resource.id, resource.props, resource.replace_fields, adopt=True))
        return self.add(resource, drifted)


def applied(doc: ClusterSpec, skip: Callable[[Resource], bool] = lambda r: False) -> Host:
    """The host right after `doc` was applied, as the drivers see it (minus what `skip` says)."""
    host = Host()
    by_index = {n.name: n.index for n in nodes(doc)}
    for r in render(doc):
        if skip(r):
            continue
        if r.kind == "container":
            i = by_index[r.id]
            host.container(docker_entry(doc, i), limits_of(doc, i))
        else:
            # sysctl, nginx, volume, network and tracker drivers report exactly these props.
            host.add(Resource(r.kind, r.id, dict(r.props), r.replace_fields, keep=r.keep))
    return host


# ------------------------------------------------------------------ planning, as conduit plan does


def plan_for(doc: ClusterSpec, obs: Observation, image_present: bool = True, seen: ImageSeen | None = None) -> Plan:
    """conduit.engine.planning.plan after the observation; no Docker asked about the image (its facts
    are pinned), unless `seen` says what observing the image and the registry found."""
    return plan(Apply(), doc, Observed(obs, seen, has_image=image_present if seen is None else None))


# ------------------------------------------------------------------ scenarios


def empty_host():
    doc, text = load(base())
    return doc, text, Observation()


def no_op():
    doc, text = load(base())
    return doc, text, applied(doc).obs


def scale_up():
    old, _ = load(base())
    doc, text = load(base(containers__count=3))
    return doc, text, applied(old).obs


def scale_down():
    old, _ = load(base(containers__count=3))
    doc, text = load(base())
    return doc, text, applied(old).obs


def update_in_place():
    old, _ = load(base())
    doc, text = load(base(containers__resources={"cpus": 0.6, "memory": "448MiB", "ulimit_nofile": 16384}))
    return doc, text, applied(old).obs


def replace_max_clients():
    old, _ = load(base())
    doc, text = load(base(conduit__max_clients=150))
    return doc, text, applied(old).obs


def replace_image():
    old, _ = load(base())
    doc, text = load(base(containers__image="ghcr.io/psiphon-inc/conduit/cli:2.0.1"))
    return doc, text, applied(old).obs


def replace_with_front():
    old, _ = load(with_front())
    doc, text = load(with_front(conduit__max_clients=150))
    return doc, text, applied(old).obs


def adopt():
    """A node of the bash manager: `conduit` on volume `conduit-data`, no labels (naming v1)."""
    naming = {"scheme": "v1", "prefix": "conduit", "volume_prefix": "conduit-data"}
    spec = base(containers__count=1, containers__naming=naming)
    doc, text = load(spec)
    host = applied(doc, skip=lambda r: r.kind == "container")
    host.container(docker_entry(doc, 1, labelled=False), limits_of(doc, 1), adopt=True)
    return doc, text, host.obs


def drift():
    """conduit-1 stopped by hand; conduit-2 given more memory with `docker update`."""
    doc, text = load(base())
    host = applied(doc, skip=lambda r: r.kind == "container")
    host.container(docker_entry(doc, 1, state="exited"), limits_of(doc, 1))
    host.container(docker_entry(doc, 2), (0.5, 1 << 30))
    return doc, text, host.obs


def sysctl_refused():
    """A VPS kernel without nf_conntrack loaded: the driver reports the key with no value."""
    doc, text = load(base())
    key = "net.netfilter.nf_conntrack_max"
    host = applied(doc, skip=lambda r: r.kind == "sysctl" and r.id == key)
    host.add(Resource("sysctl", key, {"value": None}))
    message = f"sysctl {key} does not exist on this kernel (module not loaded?); load it with `modprobe nf_conntrack`"
    host.obs.warnings.append(message)
    host.obs.refused[key] = message
    return doc, text, host.obs


def nginx_stream_edited():
    doc, text = load(with_front())
    include = doc.spec.loadbalancer.nginx.include_file
    host = applied(doc, skip=lambda r: r.kind == "nginx_conf")
    (want,) = [r for r in render(doc) if r.kind == "nginx_conf"]
    edited = want.props["content"].replace("proxy_timeout 300s;", "proxy_timeout 600s;")
    assert edited != want.props["content"]
    host.add(Resource("nginx_conf", include, {"content": edited}), drifted=True)
    return doc, text, host.obs


def tracker_off_to_on():
    old, _ = load(base())
    doc, text = load(base(tracker={"enabled": True}))
    return doc, text, applied(old).obs


def foreign_container():
    """conduit-2 exists but belongs to another conduit cluster: reported, never touched."""
    doc, text = load(base())
    host = applied(doc, skip=lambda r: r.kind == "container" and r.id == "conduit-2")
    volume = f"{nodes(doc)[1].volume}:{doc.spec.conduit.data_dir}"
    host.obs.foreign.append("container conduit-2 exists and is not managed by conduit")
    host.obs.problems.append(
        f"container conduit-2 exists and is not managed by conduit, and does not use volume {volume}; "
        "rename or remove it, or change containers.naming"
    )
    return doc, text, host.obs


def replace_in_batches():
    """A new image for three fronted nodes, two at a time: pulled first, then two drained batches."""
    old, _ = load(with_front(containers__count=3))
    doc, text = load(with_front(containers__count=3, containers__image="ghcr.io/psiphon-inc/conduit/cli:2.0.1",
                                rollout={"max_unavailable": 2, "drain_seconds": 20}))
    return doc, text, applied(old).obs


def volume_prefix_changed():
    """Renamed volumes: every node would start on an empty volume with a new key."""
    old, _ = load(base())
    doc, text = load(base(containers__naming={"volume_prefix": "conduit-keys"}))
    return doc, text, applied(old).obs


def personal_clients_on():
    """Four fronted nodes take personal clients, two at a time: keys backed up, compartments made, two batches."""
    old, _ = load(with_front(containers__count=4))
    doc, text = load(with_front(containers__count=4, conduit__max_personal_clients=5,
                                rollout={"max_unavailable": 2, "drain_seconds": 20}))
    return doc, text, applied(old).obs


def update_behind_tag():
    """updates.policy auto: the registry has a new digest behind the nodes' tag, not on the host yet:
    pulled and asked (probe) before any node is touched, then the canary first."""
    doc, text = load(base(updates={"policy": "auto", "canary": 1, "analysis_minutes": 10}))
    running = with_image_facts(doc, dataclasses.replace(image_facts(doc), image_id=OLD_ID))  # the nodes run OLD_ID
    return doc, text, applied(running).obs


def _new_digest(doc: ClusterSpec) -> ImageSeen:
    """What observing found for update_behind_tag: the nodes run OLD_ID, the registry says NEW_DIGEST."""
    new_ref = f"{IMAGE.rsplit(':', 1)[0]}@{NEW_DIGEST}"
    update = Update(IMAGE, OLD_ID, OLD_DIGEST, new_ref, NEW_DIGEST, taken=True, old_version="official 2.0.0", pulled=False)
    return ImageSeen(Choice(new_ref, update, pull=True), None, docker_asked=True, running=image_facts(doc))


def cli_1x_first_apply():
    doc, text = load(base(containers__image=IMAGE_15, conduit__cli_version="1.5"))
    return doc, text, Observation()


def cli_1x_to_2():
    old, _ = load(base(containers__image=IMAGE_15, conduit__cli_version="1.5"))
    doc, text = load(base())
    return doc, text, applied(old).obs


SCENARIOS = {
    f.__name__: f
    for f in (
        empty_host,
        no_op,
        scale_up,
        scale_down,
        update_in_place,
        replace_max_clients,
        replace_image,
        replace_with_front,
        replace_in_batches,
        volume_prefix_changed,
        personal_clients_on,
        adopt,
        drift,
        sysctl_refused,
        nginx_stream_edited,
        tracker_off_to_on,
        foreign_container,
        cli_1x_first_apply,
        cli_1x_to_2,
        update_behind_tag,
    )
}

# What observing the image and the registry found, where a scenario needs more than pinned facts.
SEEN = {"update_behind_tag": _new_digest}
NEW_DIGEST, OLD_DIGEST, OLD_ID = "sha256:" + "b" * 64, "sha256:" + "a" * 64, "sha256:" + "c" * 64


# The scenarios whose image the engine does not have yet: their plan pulls it.
IMAGE_MISSING = {"empty_host", "replace_image", "replace_in_batches", "cli_1x_first_apply", "cli_1x_to_2"}


def _seen(scenario: str, doc: ClusterSpec) -> ImageSeen | None:
    return SEEN[scenario](doc) if scenario in SEEN else None


# ------------------------------------------------------------------ comparing


def printed(plan: Plan, text: str, as_json: bool, capsys) -> str:
    """What `conduit plan FILE [--json]` prints for this plan: stdout, then stderr."""
    capsys.readouterr()
    show_plan(plan, plan_data(plan, spec_fields(SPEC_FILE, text, False)), as_json)
    out = capsys.readouterr()
    return out.out + out.err


def compare(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; write it with UPDATE_GOLDEN=1 python3 -m pytest {Path(__file__).name}")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), f"golden/plans/{name}", "actual")
        )
        pytest.fail(f"{name} differs from the golden file (UPDATE_GOLDEN=1 to accept):\n{diff}", pytrace=False)


@pytest.fixture(autouse=True)
def _plain_console(monkeypatch):
    """The CLI's rich Console as it prints into a pipe: no colour forced by the environment."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden_plan(scenario, capsys):
    doc, text, obs = SCENARIOS[scenario]()
    plan = plan_for(doc, obs, scenario not in IMAGE_MISSING, _seen(scenario, doc))
    compare(f"{scenario}.txt", printed(plan, text, False, capsys))
    compare(f"{scenario}.json", printed(plan, text, True, capsys))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden_plan_is_deterministic(scenario, capsys):
    """The same host reported in another order plans and prints the same."""
    doc, text, obs = SCENARIOS[scenario]()
    shuffled = Observation(list(reversed(obs.resources)), obs.foreign, obs.problems, obs.warnings, obs.drifted, refused=obs.refused)
    seen = _seen(scenario, doc)
    once = printed(plan_for(doc, obs, seen=seen), text, True, capsys) + printed(plan_for(doc, obs, seen=seen), text, False, capsys)
    again = printed(plan_for(doc, shuffled, seen=seen), text, True, capsys) + printed(plan_for(doc, shuffled, seen=seen), text, False, capsys)
    assert once == again


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden_plan_saved_reads_back_as_the_same_plan(scenario):
    """What `plan --out` saves (pulls, drains, batches, adoptions, warn-only steps) is what `apply --plan` runs."""
    doc, text, obs = SCENARIOS[scenario]()
    plan = plan_for(doc, obs, scenario not in IMAGE_MISSING, _seen(scenario, doc))
    assert parse_saved(dumps(plan_data(plan, spec_fields(SPEC_FILE, text, False))), "plan.json").plan == plan


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden_plan_with_the_spec_settled_by_the_observation_prints_the_same(scenario, capsys):
    """conduit.engine.observe settles the spec once and hands it on (Observed.settled): the plan is the
    one made settling it itself."""
    doc, text, obs = SCENARIOS[scenario]()
    seen = _seen(scenario, doc)
    alone = Observed(obs, seen, has_image=scenario not in IMAGE_MISSING if seen is None else None)
    handed = dataclasses.replace(alone, settled=settle(doc, seen))
    for as_json in (True, False):
        assert printed(plan(Apply(), doc, handed), text, as_json, capsys) == printed(plan(Apply(), doc, alone), text, as_json, capsys)


def test_every_golden_file_has_a_scenario():
    names = {p.stem for p in GOLDEN.glob("*.*")}
    assert names <= set(SCENARIOS), f"stale golden files: {sorted(names - set(SCENARIOS))}"
