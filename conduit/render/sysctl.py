"""Desired kernel settings: one resource per sysctl key and the sysctl.d file that keeps them across boots."""

from __future__ import annotations

from conduit.spec.resources import Resource
from conduit.render.templating import environment
from conduit.spec.profiles import SYSCTL_CLUSTER_V2, SYSCTL_CONDUIT, SYSCTL_FRONT, raise_only, sysctl_values
from conduit.spec.spec import ClusterSpec
from conduit.facts.sysctl import HEADER_PREFIX  # the file's first line; the driver recognises ours (and whose) by it

REASONS = {
    "fs.file-max": "file descriptors: every WebRTC peer costs a node open sockets",
    "fs.nr_open": "file descriptors: the ceiling a process's open-file limit may be raised to",
    "net.netfilter.nf_conntrack_max": "conntrack table: holds one entry per WebRTC peer's UDP flow",
    "net.core.rmem_max": "UDP buffers: receive buffers for WebRTC data channels under bursts",
    "net.core.wmem_max": "UDP buffers: send buffers for WebRTC data channels under bursts",
    "net.core.netdev_max_backlog": "packets queued from the NIC before the kernel drops UDP bursts",
    "net.ipv4.ip_local_port_range": "ephemeral ports: each client is served on a fresh random UDP port",
    "net.core.somaxconn": "accept queues: pending connections for the TCP front",
    "net.ipv4.tcp_max_syn_backlog": "accept queues: half-open connections for the TCP front",
    "net.ipv4.tcp_fin_timeout": "the TCP front's short-lived connections release their ports sooner",
    "net.ipv4.tcp_tw_reuse": "the TCP front may reuse TIME_WAIT ports for new outgoing connections",
    "net.ipv4.tcp_congestion_control": "TCP congestion control of the cluster edition",
    "net.ipv4.tcp_fastopen": "TCP Fast Open for clients and servers, as the cluster edition set it",
    "net.ipv4.tcp_mem": "TCP memory pages (low, pressure, high), as the cluster edition set them",
}
OVERRIDE_REASON = "set in the spec"


def header(cluster: str) -> str:
    return f"{HEADER_PREFIX}{cluster}."


def _reason(key: str, profile: str, overridden: bool) -> str:
    if overridden:
        return OVERRIDE_REASON
    if key in REASONS:
        return REASONS[key]
    # A profile key without its own sentence still says where it comes from.
    if profile == "cluster-v2" and key in SYSCTL_CLUSTER_V2:
        return "the cluster edition's value"
    if key in SYSCTL_CONDUIT or key in SYSCTL_FRONT:
        return "Conduit profile value"
    return OVERRIDE_REASON


def desired_values(spec: ClusterSpec) -> dict[str, str]:
    """Keys and values the spec asks of the kernel, sorted; empty when tuning is off."""
    sysctl = spec.spec.sysctl
    if not sysctl.enabled:
        return {}
    return sysctl_values(sysctl.profile, front=spec.spec.loadbalancer.enabled, overrides=sysctl.overrides)


def render_sysctl_file(spec: ClusterSpec, values: dict[str, str]) -> str:
    sysctl = spec.spec.sysctl
    entries = [
        {"key": key, "value": value, "reason": _reason(key, sysctl.profile, key in sysctl.overrides)}
        for key, value in sorted(values.items())
    ]
    template = environment().get_template("sysctl.conf.j2")
    return template.render(header=header(spec.metadata.name), entries=entries)


def sysctl_keys(spec: ClusterSpec) -> list[str]:
    """The keys render_sysctl sets: what a plan reads of /proc/sys (no file rendered to find them)."""
    return list(raise_only(desired_values(spec), {}, spec.spec.sysctl.overrides))


def render_sysctl(spec: ClusterSpec, current: dict[str, str | None] | None = None) -> list[Resource]:
    """`current` holds the host's values: floors of the profile never lower them."""
    values = raise_only(desired_values(spec), current or {}, spec.spec.sysctl.overrides)
    if not values:
        return []
    resources = [Resource("sysctl", key, {"value": value}) for key, value in values.items()]
    resources.append(Resource("sysctl_file", spec.spec.sysctl.file, {"content": render_sysctl_file(spec, values)}))
    return resources
