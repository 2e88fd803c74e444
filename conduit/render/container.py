"""Desired Docker objects: the cluster's network, data volumes and Conduit containers."""

from __future__ import annotations

import ipaddress
import json

from conduit.spec.resources import Resource, canonical, digest
from conduit.spec.image import ImageFacts
from conduit.spec.resolve import NodeSettings, image_facts, nodes
from conduit.spec.spec import ClusterSpec, DataCap, ReducedHours

LABEL = "io.conduit"
MANAGED_BY = f"{LABEL}.managed-by"
CLUSTER = f"{LABEL}.cluster"
INDEX = f"{LABEL}.index"
CONFIG_HASH = f"{LABEL}.config-hash"
CONFIG = f"{LABEL}.config"
SCHEMA = f"{LABEL}.schema"
MANAGER = "conduit"
# Bumped when the meaning of the config label changes, so old containers are replaced once.
LABEL_SCHEMA = "1"

# Metrics port inside a bridged container; published on 127.0.0.1:(metrics_port_base + i - 1).
BRIDGE_METRICS_PORT = 9090

# Docker can change these without a restart (docker update); everything else forces a new container.
IN_PLACE = frozenset({"cpus", "memory", "state"})


def _number(value: float) -> str:
    return f"{value:g}"


def metrics_addr(spec: ClusterSpec, node: NodeSettings) -> str:
    if spec.spec.network.mode == "host":
        return f"127.0.0.1:{node.metrics_port}"
    return f"0.0.0.0:{BRIDGE_METRICS_PORT}"


def _bytes_per_second(mbps: float) -> int:
    """The CLI's own conversion of Mbps (2.0 internal/config/config.go:245)."""
    return int(mbps * 1000 * 1000 / 8)


def _reduced_sets(reduced: ReducedHours) -> list[str]:
    """--set keys of 2.0's allowlist (cli/internal/config/set_overrides.go:28-32)."""
    sets = [
        f"InproxyReducedStartTime={reduced.start}",
        f"InproxyReducedEndTime={reduced.end}",
        f"InproxyReducedMaxCommonClients={reduced.max_clients}",
    ]
    if reduced.bandwidth_mbps is not None:
        rate = _bytes_per_second(reduced.bandwidth_mbps)
        sets += [f"InproxyReducedLimitUpstreamBytesPerSecond={rate}", f"InproxyReducedLimitDownstreamBytesPerSecond={rate}"]
    return [arg for value in sets for arg in ("--set", value)]


def _optional_flags(spec: ClusterSpec, facts: ImageFacts) -> list[str]:
    """Flags only some images have, each emitted only when the image surely accepts it."""
    conduit = spec.spec.conduit
    flags: list[str] = []
    if conduit.max_personal_clients is not None and facts.has_personal:
        flags += ["--max-personal-clients", str(conduit.max_personal_clients)]
    if conduit.reduced_hours is not None and facts.has_set:
        flags += _reduced_sets(conduit.reduced_hours)
    if conduit.idle_restart is not None and facts.has_idle_restart:
        flags += ["--idle-restart", conduit.idle_restart]
    return flags


def _monitor_args(spec: ClusterSpec, cap: DataCap, metrics: list[str]) -> list[str]:
    """conduit-monitor's own flags (cli/scripts/monitor/main.go:108-114 at 1.5 and 2.0).

    --data-dir and --metrics-addr before `--` go to the monitor and to conduit alike
    (main.go:158-189); the monitor puts `start` first itself (main.go:125).
    """
    args = ["--traffic-limit", _number(cap.traffic_limit_gb), "--traffic-period", str(cap.period_days)]
    for flag, value in (
        ("--bandwidth-threshold", cap.bandwidth_threshold_percent),
        ("--min-connections", cap.min_connections),
        ("--min-bandwidth", cap.min_bandwidth_mbps),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args + ["--data-dir", spec.spec.conduit.data_dir, *metrics]


def conduit_args(spec: ClusterSpec, node: NodeSettings) -> tuple[list[str] | None, list[str]]:
    """Entrypoint and command for what the image speaks (conduit.spec.image).

    The short flags -m -b -d work in every version. --metrics-addr (1.2+), --stats-file
    (1.x), personal clients and --set (2.0) and --idle-restart (community) are emitted only
    when the image surely has them: an unknown flag makes `conduit start` exit.
    """
    conduit = spec.spec.conduit
    facts = image_facts(spec)
    flags = ["-m", str(node.max_clients), "-b", _number(node.bandwidth_mbps)]
    flags += _optional_flags(spec, facts)
    flags += ["-v"] * conduit.verbosity
    metrics = ["--metrics-addr", metrics_addr(spec, node)] if facts.has_metrics_addr else []
    tail = (["--stats-file"] if facts.has_stats_file else []) + list(conduit.extra_args)
    if conduit.data_cap is None:
        return None, ["start", *flags, "-d", conduit.data_dir, *metrics, *tail]
    return ["conduit-monitor"], [*_monitor_args(spec, conduit.data_cap, metrics), "--", *flags, *tail]


def ports(spec: ClusterSpec, node: NodeSettings) -> list[str]:
    """host_ip:host_port:container_port/proto, one host port per container port."""
    s = spec.spec
    if s.network.mode == "host":
        return []
    out = [f"127.0.0.1:{node.metrics_port}:{BRIDGE_METRICS_PORT}/tcp"]
    if s.loadbalancer.enabled and s.network.backends == "published":
        for listener in s.loadbalancer.listeners:
            if listener.host_port_base is not None:
                host_port = listener.host_port_base + node.index - 1
                out.append(f"127.0.0.1:{host_port}:{listener.backend_port}/{listener.protocol}")
    return sorted(set(out))


def backend_address(spec: ClusterSpec, index: int) -> str | None:
    """Fixed address of container i on the dedicated network (the subnet's host i + 1)."""
    net = spec.spec.network
    if net.mode != "bridge" or net.backends != "network" or net.subnet is None:
        return None
    return str(ipaddress.ip_network(net.subnet, strict=False).network_address + index + 1)


def container_props(spec: ClusterSpec, node: NodeSettings) -> dict:
    s = spec.spec
    c = s.containers
    entrypoint, command = conduit_args(spec, node)
    security_opt = ["no-new-privileges:true"] if c.security.no_new_privileges else []
    facts = image_facts(spec)
    # The image ID it was asked as: the nodes run exactly that, whatever the tag means later.
    pinned = {"image_id": facts.image_id} if facts.image_id else {}
    return {
        "image": c.image,
        **pinned,
        "entrypoint": entrypoint,
        "command": command,
        "env": dict(sorted(c.env.items())),
        "network": "host" if s.network.mode == "host" else s.network.name,
        "ip": backend_address(spec, node.index),
        "ports": ports(spec, node),
        "volume": f"{node.volume}:{s.conduit.data_dir}",
        "ulimit_nofile": node.ulimit_nofile,
        "restart_policy": c.restart_policy,
        "security_opt": security_opt,
        "cap_drop": sorted(set(c.security.cap_drop)),
        "read_only": c.security.read_only_rootfs,
        "log_config": {"type": "json-file", "max-size": c.logging.max_size, "max-file": str(c.logging.max_file)},
        "cpus": node.cpus,
        "memory": node.memory,
        "state": "running",
    }


def image_ref(props: dict) -> str:
    """What a container is made from: the image ID it is pinned to, else the image as named."""
    return props.get("image_id") or props["image"]


def replace_only(props: dict) -> dict:
    return {k: v for k, v in props.items() if k not in IN_PLACE}


def labels(spec: ClusterSpec, node: NodeSettings, props: dict) -> dict[str, str]:
    """Ownership labels plus the config they were created with (labels never change in place)."""
    return with_config({MANAGED_BY: MANAGER, CLUSTER: spec.metadata.name, INDEX: str(node.index), SCHEMA: LABEL_SCHEMA}, props)


def with_config(container_labels: dict[str, str], props: dict) -> dict[str, str]:
    """The labels that say which config a node was created with (set again when a node made from
    a digest pulled in the same apply is pinned to that image's ID)."""
    created_with = {k: v for k, v in props.items() if k != "state"}
    return container_labels | {CONFIG_HASH: digest([LABEL_SCHEMA, replace_only(props)]), CONFIG: canonical(created_with)}


def render_containers(spec: ClusterSpec) -> list[Resource]:
    s = spec.spec
    out: list[Resource] = []
    if s.network.mode == "bridge":
        out.append(
            Resource("network", s.network.name, {"driver": "bridge", "subnet": s.network.subnet}, frozenset({"driver", "subnet"}))
        )
    for node in nodes(spec):
        out.append(Resource("volume", node.volume, {}, keep=True))
    for node in nodes(spec):
        props = container_props(spec, node)
        out.append(Resource("container", node.name, props, frozenset(props) - IN_PLACE))
    return out


def config_from_labels(container_labels: dict[str, str]) -> dict | None:
    try:
        return json.loads(container_labels.get(CONFIG, ""))
    except ValueError:
        return None
