"""Fill the fields a spec leaves out from the host's hardware, and expand per-container settings."""

from __future__ import annotations

from dataclasses import dataclass

from conduit.spec.image import ImageFacts, static_facts
from conduit.spec.profiles import HostFacts, Sizing, cluster_v2_sizing, official_sizing
from conduit.spec.spec import ClusterSpec, Host, Naming


def host_facts(host: Host, detected: HostFacts) -> HostFacts:
    """The spec's given hardware wins over what was detected."""
    return HostFacts(
        vcpus=detected.vcpus if host.vcpus == "auto" else float(host.vcpus),
        memory=detected.memory if host.memory == "auto" else int(host.memory),
        nic_mbps=detected.nic_mbps if host.nic_mbps == "auto" else int(host.nic_mbps),
        nofile_limit=detected.nofile_limit if host.nofile_limit == "auto" else int(host.nofile_limit),
        primary_interface=detected.primary_interface,
    )


def sizing(spec: ClusterSpec, facts: HostFacts) -> Sizing:
    host = spec.spec.host
    count = spec.spec.containers.count
    if host.profile == "cluster-v2":
        return cluster_v2_sizing(facts, count)
    return official_sizing(facts, host.reserve_cpus, host.reserve_memory, count)


def resolve(spec: ClusterSpec, facts: HostFacts) -> ClusterSpec:
    """A copy of the spec with every defaulted field filled in (host given or detected)."""
    s = spec.spec
    size = sizing(spec, facts)
    res = s.containers.resources
    resources = res.model_copy(
        update={
            "cpus": res.cpus if res.cpus is not None else size.cpus,
            "memory": res.memory if res.memory is not None else size.memory,
            "ulimit_nofile": res.ulimit_nofile if res.ulimit_nofile is not None else size.ulimit_nofile,
        }
    )
    containers = s.containers.model_copy(update={"count": s.containers.count or size.count, "resources": resources})
    conduit = s.conduit.model_copy(
        update={
            "max_clients": s.conduit.max_clients if s.conduit.max_clients is not None else size.max_clients,
            "bandwidth_mbps": s.conduit.bandwidth_mbps
            if s.conduit.bandwidth_mbps is not None
            else size.bandwidth_mbps,
        }
    )
    host = s.host.model_copy(
        update={
            "vcpus": facts.vcpus,
            "memory": facts.memory,
            "nic_mbps": facts.nic_mbps,
            "nofile_limit": facts.nofile_limit,
        }
    )
    tracker = s.tracker
    if tracker.interface == "auto" and facts.primary_interface:
        tracker = tracker.model_copy(update={"interface": facts.primary_interface})
    return spec.model_copy(
        update={
            "spec": s.model_copy(
                update={"host": host, "containers": containers, "conduit": conduit, "tracker": tracker}
            )
        }
    )


def with_cli_version(spec: ClusterSpec, cli_version: str) -> ClusterSpec:
    """The spec with the CLI version the image speaks (facts then follow from the version alone)."""
    conduit = spec.spec.conduit.model_copy(update={"cli_version": cli_version})
    out = spec.model_copy(update={"spec": spec.spec.model_copy(update={"conduit": conduit})})
    out._image_facts = None
    return out


def with_image_facts(spec: ClusterSpec, facts: ImageFacts) -> ClusterSpec:
    """The spec carrying what its image speaks; conduit.cli_version settles to 1.x or 2.x.

    With an image nobody could ask and no version given, cli_version stays "auto": the
    renderer then emits only the flags every version accepts.
    """
    cli = facts.cli or spec.spec.conduit.cli_version
    conduit = spec.spec.conduit.model_copy(update={"cli_version": cli if cli in ("1.x", "2.x") else "auto"})
    out = spec.model_copy(update={"spec": spec.spec.model_copy(update={"conduit": conduit})})
    out._image_facts = facts
    return out


def image_facts(spec: ClusterSpec) -> ImageFacts:
    """What the spec's image speaks: as found (with_image_facts), else what the spec and tag say."""
    found = spec._image_facts
    if isinstance(found, ImageFacts):
        return found
    conduit = spec.spec.conduit
    return static_facts(spec.spec.containers.image, conduit.cli_version, conduit.build)


@dataclass(frozen=True)
class NodeSettings:
    """Everything that differs between containers, after overrides (resolved spec only)."""

    index: int
    name: str
    volume: str
    max_clients: int
    bandwidth_mbps: float
    cpus: float
    memory: int
    ulimit_nofile: int
    metrics_port: int


def container_name(naming: Naming, index: int) -> str:
    if naming.scheme == "v1" and index == 1:
        return naming.prefix
    return f"{naming.prefix}-{index}"


def volume_name(naming: Naming, index: int) -> str:
    if naming.scheme == "v1" and index == 1:
        return naming.volume_prefix
    return f"{naming.volume_prefix}-{index}"


def node_settings(spec: ClusterSpec, index: int) -> NodeSettings:
    s = spec.spec
    res = s.containers.resources
    over = s.containers.overrides.get(index)

    def pick(name: str, default):
        value = getattr(over, name) if over is not None else None
        return default if value is None else value

    return NodeSettings(
        index=index,
        name=container_name(s.containers.naming, index),
        volume=volume_name(s.containers.naming, index),
        max_clients=pick("max_clients", s.conduit.max_clients),
        bandwidth_mbps=pick("bandwidth_mbps", s.conduit.bandwidth_mbps),
        cpus=pick("cpus", res.cpus),
        memory=pick("memory", res.memory),
        ulimit_nofile=pick("ulimit_nofile", res.ulimit_nofile),
        metrics_port=s.conduit.metrics_port_base + index - 1,
    )


def nodes(spec: ClusterSpec) -> list[NodeSettings]:
    return [node_settings(spec, i) for i in range(1, (spec.spec.containers.count or 0) + 1)]
