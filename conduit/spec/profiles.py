"""Numbers the defaults come from: hardware sizing and the sysctl profiles."""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20

# Psiphon's guidance: about 150-350 concurrent clients per 1 CPU + 2 GB; we size for the middle.
CLIENTS_PER_UNIT = 250
UNIT_MEMORY = 2 * GIB
# One Conduit process serves at most 1000 common clients.
MAX_CLIENTS_PER_NODE = 1000
# The CLI's own default bandwidth is 40 Mbit/s per client.
MAX_DEFAULT_BANDWIDTH = 40.0
# Few clients move data at full speed at once: share the NIC three times over.
NIC_OVERSUBSCRIPTION = 3
DEFAULT_NOFILE = 16384

# The cluster edition's model (2 vCPU / 4 GB -> 8 x (0.22 CPU, 384 MiB)).
CLUSTER_NODE_MEMORY = 384 * MIB
CLUSTER_MEMORY_SHARE = 0.75
CLUSTER_CPU_SHARE = 0.88
CLUSTER_MAX_CLIENTS = 250
CLUSTER_BANDWIDTH = 3.0

# The least a node can run with: Docker takes no --cpus below 0.01, and a Conduit process (Go
# runtime, tunnel core, broker session) takes tens of MiB before its first client.
MIN_NODE_CPUS = 0.01
MIN_NODE_MEMORY = 64 * MIB
# Past Psiphon's guidance (clients per CPU, and per 2 GB of memory) a node is short of room.
GUIDANCE_LOW = 150
GUIDANCE_HIGH = 350


@dataclass(frozen=True)
class HostFacts:
    """What the tool knows of the host's hardware, given in the spec or detected."""

    vcpus: float
    memory: int
    nic_mbps: int
    nofile_limit: int
    primary_interface: str | None = None


@dataclass(frozen=True)
class Sizing:
    count: int
    max_clients: int
    bandwidth_mbps: float
    cpus: float
    memory: int
    ulimit_nofile: int


def _floor(value: float, digits: int = 2) -> float:
    factor = 10**digits
    return math.floor(value * factor) / factor


def millicpus(cpus: float) -> int:
    """CPUs in thousandths, the even share's unit: whole numbers add up exactly."""
    return round(cpus * 1000)


def even_share(room_cpus: float, room_memory: int, count: int) -> tuple[float, int]:
    """Each of `count` nodes' part of what the host has after its reserve: thousandths of a CPU and
    whole MiB, rounded down, so that the shares never add up to more than the room. A share may be
    below MIN_NODE_CPUS or MIN_NODE_MEMORY (or not positive): conduit.spec.advisor refuses it."""
    return millicpus(room_cpus) // count / 1000, room_memory // count // MIB * MIB


def guided_clients(room_cpus: float, room_memory: int) -> int:
    """The clients a host carries at the middle of Psiphon's guidance, from what the nodes can have."""
    units = max(0.0, min(room_cpus, room_memory / UNIT_MEMORY))
    return round(CLIENTS_PER_UNIT * units)


def official_sizing(facts: HostFacts, reserve_cpus: float, reserve_memory: int, count: int | None) -> Sizing:
    room_cpus, room_memory = facts.vcpus - reserve_cpus, facts.memory - reserve_memory
    total_clients = max(50, guided_clients(room_cpus, room_memory))
    count = count or max(1, math.ceil(total_clients / MAX_CLIENTS_PER_NODE))
    max_clients = min(MAX_CLIENTS_PER_NODE, max(1, total_clients // count))
    bandwidth = NIC_OVERSUBSCRIPTION * facts.nic_mbps / total_clients
    cpus, memory = even_share(room_cpus, room_memory, count)
    return Sizing(
        count=count,
        max_clients=max_clients,
        bandwidth_mbps=round(min(MAX_DEFAULT_BANDWIDTH, max(1.0, bandwidth)), 1),
        cpus=cpus,
        memory=memory,
        ulimit_nofile=min(DEFAULT_NOFILE, facts.nofile_limit),
    )


def cluster_v2_sizing(facts: HostFacts, count: int | None) -> Sizing:
    count = count or max(1, int(CLUSTER_MEMORY_SHARE * facts.memory // CLUSTER_NODE_MEMORY))
    return Sizing(
        count=count,
        max_clients=CLUSTER_MAX_CLIENTS,
        bandwidth_mbps=CLUSTER_BANDWIDTH,
        cpus=_floor(CLUSTER_CPU_SHARE * facts.vcpus / count),
        memory=CLUSTER_NODE_MEMORY,
        ulimit_nofile=min(DEFAULT_NOFILE, facts.nofile_limit),
    )


# What a Conduit host needs from the kernel: many sockets and file descriptors, a
# conntrack table that holds every WebRTC peer's UDP flow, large UDP buffers and a wide
# ephemeral range for the random ports each client is served on.
SYSCTL_CONDUIT = {
    "fs.file-max": "524288",
    "net.netfilter.nf_conntrack_max": "262144",
    "net.core.rmem_max": "16777216",
    "net.core.wmem_max": "16777216",
    "net.core.netdev_max_backlog": "5000",
    "net.ipv4.ip_local_port_range": "10240 65535",
}

# Only for the optional TCP front: accept queues and short-lived connection reuse.
SYSCTL_FRONT = {
    "net.core.somaxconn": "8192",
    "net.ipv4.tcp_max_syn_backlog": "8192",
    "net.ipv4.tcp_fin_timeout": "15",
    "net.ipv4.tcp_tw_reuse": "1",
}

# The cluster edition's values, as it applied them.
SYSCTL_CLUSTER_V2 = {
    "net.core.somaxconn": "8192",
    "net.ipv4.tcp_max_syn_backlog": "8192",
    "net.core.netdev_max_backlog": "5000",
    "fs.file-max": "524288",
    "net.ipv4.tcp_congestion_control": "bbr",
    "net.ipv4.tcp_fastopen": "3",
    "net.netfilter.nf_conntrack_max": "262144",
    "net.ipv4.tcp_mem": "786432 1048576 26777216",
    "net.core.rmem_max": "134217728",
    "net.core.wmem_max": "134217728",
    "net.ipv4.tcp_fin_timeout": "15",
    "net.ipv4.tcp_tw_reuse": "1",
}


# Limits and queue sizes where more is better: a profile value is a floor, and a host
# already above it (fs.file-max is sized from RAM at boot) keeps its own value.
SYSCTL_AT_LEAST = frozenset(
    {
        "fs.file-max",
        "fs.nr_open",
        "net.netfilter.nf_conntrack_max",
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.netdev_max_backlog",
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
    }
)


def raise_only(values: dict[str, str], current: dict[str, str | None], overrides: dict[str, str | int]) -> dict[str, str]:
    """Profile floors never lower what the host has; a value set in the spec's overrides is exact."""
    out = dict(values)
    for key, value in values.items():
        seen = current.get(key)
        if key in SYSCTL_AT_LEAST and key not in overrides and seen and seen.isdigit() and int(seen) > int(value):
            out[key] = seen
    return out


def sysctl_values(profile: str, front: bool, overrides: dict[str, str | int]) -> dict[str, str]:
    """The keys and values a profile sets, with overrides on top, values normalised as /proc shows them."""
    values: dict[str, str] = {}
    if profile == "conduit":
        values.update(SYSCTL_CONDUIT)
        if front:
            values.update(SYSCTL_FRONT)
    elif profile == "cluster-v2":
        values.update(SYSCTL_CLUSTER_V2)
    values.update({key: str(value) for key, value in overrides.items()})
    return {key: normalise_sysctl(value) for key, value in sorted(values.items())}


def normalise_sysctl(value: str) -> str:
    """/proc/sys prints multi-number values separated by tabs; compare them by their words."""
    return " ".join(str(value).split())
