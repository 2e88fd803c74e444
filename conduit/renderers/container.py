"""Desired Docker objects: the cluster's network, data volumes and Conduit containers."""

from __future__ import annotations

import ipaddress
import json
import re

from conduit.reconciler.resources import Resource, canonical, digest
from conduit.schemas.resolve import NodeSettings, nodes
from conduit.schemas.spec import ClusterSpec

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


def metrics_addr(doc: ClusterSpec, node: NodeSettings) -> str:
    if doc.spec.network.mode == "host":
        return f"127.0.0.1:{node.metrics_port}"
    return f"0.0.0.0:{BRIDGE_METRICS_PORT}"


def conduit_args(doc: ClusterSpec, node: NodeSettings) -> tuple[list[str] | None, list[str]]:
    """Entrypoint and command for the CLI version the image speaks.

    The short flags -m -b -d work in every version; 2.0 removed --stats-file, so it is
    passed only to 1.x images, whose stats file is their only per-node record.
    """
    conduit = doc.spec.conduit
    flags = ["-m", str(node.max_clients), "-b", _number(node.bandwidth_mbps)]
    if conduit.max_personal_clients is not None and conduit.cli_version == "2.x":
        flags += ["--max-personal-clients", str(conduit.max_personal_clients)]
    flags += ["-v"] * conduit.verbosity
    shared = ["-d", conduit.data_dir, "--metrics-addr", metrics_addr(doc, node)]
    tail = (["--stats-file"] if conduit.cli_version == "1.x" else []) + list(conduit.extra_args)
    if conduit.data_cap is None:
        return None, ["start", *flags, *shared, *tail]
    cap = conduit.data_cap
    # conduit-monitor reads the data dir and metrics address itself and passes them on.
    monitor = ["--traffic-limit", _number(cap.traffic_limit_gb), "--traffic-period", str(cap.period_days)]
    monitor += ["--data-dir", conduit.data_dir, "--metrics-addr", metrics_addr(doc, node)]
    return ["conduit-monitor"], [*monitor, "--", *flags, *tail]


def ports(doc: ClusterSpec, node: NodeSettings) -> list[str]:
    """host_ip:host_port:container_port/proto, one host port per container port."""
    spec = doc.spec
    if spec.network.mode == "host":
        return []
    out = [f"127.0.0.1:{node.metrics_port}:{BRIDGE_METRICS_PORT}/tcp"]
    if spec.loadbalancer.enabled and spec.network.backends == "published":
        for listener in spec.loadbalancer.listeners:
            if listener.host_port_base is not None:
                host_port = listener.host_port_base + node.index - 1
                out.append(f"127.0.0.1:{host_port}:{listener.backend_port}/{listener.protocol}")
    return sorted(set(out))


def backend_address(doc: ClusterSpec, index: int) -> str | None:
    """Fixed address of container i on the dedicated network (the subnet's host i + 1)."""
    net = doc.spec.network
    if net.mode != "bridge" or net.backends != "network" or net.subnet is None:
        return None
    return str(ipaddress.ip_network(net.subnet, strict=False).network_address + index + 1)


def container_props(doc: ClusterSpec, node: NodeSettings) -> dict:
    spec = doc.spec
    c = spec.containers
    entrypoint, command = conduit_args(doc, node)
    security_opt = ["no-new-privileges:true"] if c.security.no_new_privileges else []
    return {
        "image": c.image,
        "entrypoint": entrypoint,
        "command": command,
        "env": dict(sorted(c.env.items())),
        "network": "host" if spec.network.mode == "host" else spec.network.name,
        "ip": backend_address(doc, node.index),
        "ports": ports(doc, node),
        "volume": f"{node.volume}:{spec.conduit.data_dir}",
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


def replace_only(props: dict) -> dict:
    return {k: v for k, v in props.items() if k not in IN_PLACE}


def labels(doc: ClusterSpec, node: NodeSettings, props: dict) -> dict[str, str]:
    """Ownership labels plus the config they were created with (labels never change in place)."""
    created_with = {k: v for k, v in props.items() if k != "state"}
    return {
        MANAGED_BY: MANAGER,
        CLUSTER: doc.metadata.name,
        INDEX: str(node.index),
        SCHEMA: LABEL_SCHEMA,
        CONFIG_HASH: digest([LABEL_SCHEMA, replace_only(props)]),
        CONFIG: canonical(created_with),
    }


def render_containers(doc: ClusterSpec) -> list[Resource]:
    spec = doc.spec
    out: list[Resource] = []
    if spec.network.mode == "bridge":
        out.append(
            Resource("network", spec.network.name, {"driver": "bridge", "subnet": spec.network.subnet}, frozenset({"driver", "subnet"}))
        )
    for node in nodes(doc):
        out.append(Resource("volume", node.volume, {}, keep=True))
    for node in nodes(doc):
        props = container_props(doc, node)
        out.append(Resource("container", node.name, props, frozenset(props) - IN_PLACE))
    return out


def config_from_labels(container_labels: dict[str, str]) -> dict | None:
    try:
        return json.loads(container_labels.get(CONFIG, ""))
    except ValueError:
        return None


_NATURAL = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """conduit-2 before conduit-10."""
    return [int(part) if part.isdigit() else part for part in _NATURAL.split(name)]
