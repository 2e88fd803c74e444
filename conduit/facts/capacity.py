"""How many connections the nginx front must hold, and whether this host can hold them.

Pure arithmetic over the resolved spec and limits the drivers read from the host. Every
proxied session costs an nginx worker two connections (the client's and the one to the
backend), each an open file; the backend holds one more, and every connection to a backend
address on loopback takes one ephemeral port of net.ipv4.ip_local_port_range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec

# Each worker's share is uneven (reuseport spreads by a hash of the client's address and port):
# one eighth more than an even share, and at least this many connections more.
HEADROOM_FRACTION = 8
HEADROOM_MIN = 256
MIN_WORKER_CONNECTIONS = 1024
# Files a worker holds beyond its connections: logs, the listening sockets of every worker, pipes.
RLIMIT_SPARE = 1024
MAX_WORKERS = 64


@dataclass(frozen=True)
class FrontSizing:
    capacity: int  # concurrent client sessions per listener
    listeners: int
    workers: int
    worker_connections: int
    rlimit_nofile: int

    @property
    def sessions(self) -> int:
        """Sessions across all listeners."""
        return self.capacity * max(self.listeners, 1)

    @property
    def ceiling(self) -> int:
        """Connections all workers together may hold."""
        return self.worker_connections * self.workers


def default_capacity(spec: ClusterSpec) -> int:
    return max(1, sum(n.max_clients for n in nodes(spec)))


def workers_for(spec: ClusterSpec) -> int:
    lb = spec.spec.loadbalancer
    if lb.worker_processes is not None:
        return lb.worker_processes
    vcpus = spec.spec.host.vcpus
    cpus = float(vcpus) if isinstance(vcpus, (int, float)) else 1.0
    return max(1, min(MAX_WORKERS, math.ceil(cpus)))


def size(capacity: int, listeners: int, workers: int, rlimit_floor: int | None = None) -> FrontSizing:
    """worker_connections so that workers x worker_connections >= 2 x sessions with headroom,
    and an open-file limit above it."""
    sessions = capacity * max(listeners, 1)
    share = math.ceil(2 * sessions / workers)
    connections = max(MIN_WORKER_CONNECTIONS, share + max(HEADROOM_MIN, share // HEADROOM_FRACTION) + listeners * workers)
    rlimit = max(connections + RLIMIT_SPARE + listeners * workers, rlimit_floor or 0)
    return FrontSizing(capacity, listeners, workers, connections, rlimit)


def front_sizing(spec: ClusterSpec) -> FrontSizing:
    lb = spec.spec.loadbalancer
    capacity = lb.capacity if lb.capacity is not None else default_capacity(spec)
    return size(capacity, len(lb.listeners), workers_for(spec), lb.worker_rlimit_nofile)


# ------------------------------------------------------------------ what the host can hold


@dataclass(frozen=True)
class HostLimits:
    """What the drivers read: the tool's own open-file hard limit, whether nginx's limit may go
    above it (up to fs.nr_open: a systemd unit's LimitNOFILE, or a master started with
    CAP_SYS_RESOURCE), and the kernel's file and port limits (None when unreadable)."""

    nofile_hard: int
    may_raise: bool
    file_max: int | None
    nr_open: int | None
    port_range: tuple[int, int] | None


def parse_port_range(text: str | None) -> tuple[int, int] | None:
    try:
        low, high = (int(x) for x in (text or "").split())
    except ValueError:
        return None
    return (low, high) if 0 < low <= high else None


def effective(limits: HostLimits, desired: dict[str, str]) -> HostLimits:
    """The limits once this apply's sysctl values are in (the tool raises fs.* keys, never lowers them)."""

    def larger(now: int | None, key: str) -> int | None:
        try:
            wanted = int(desired[key])
        except (KeyError, ValueError):
            return now
        return wanted if now is None else max(now, wanted)

    ports = parse_port_range(desired.get("net.ipv4.ip_local_port_range")) or limits.port_range
    return HostLimits(limits.nofile_hard, limits.may_raise, larger(limits.file_max, "fs.file-max"), larger(limits.nr_open, "fs.nr_open"), ports)


def _fit(limit: int, per_session: float, sizing: FrontSizing) -> int:
    """The largest capacity per listener that `limit` allows at `per_session` of it per session."""
    return max(0, int(limit / per_session) // max(sizing.listeners, 1))


def _largest(fits, top: int = 10_000_000) -> int:
    """The largest capacity in 0..top for which `fits` holds (it holds for all below it)."""
    low, high = 0, top
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def capacity_findings(spec: ClusterSpec, sizing: FrontSizing, limits: HostLimits) -> list[str]:
    """One line per limit the promised capacity runs into, with the numbers; none when it fits."""
    found: list[str] = []
    promise = f"spec.loadbalancer.capacity {sizing.capacity} per listener x {sizing.listeners}"
    file_cap = limits.nr_open if limits.may_raise else limits.nofile_hard
    if file_cap is not None and sizing.rlimit_nofile > file_cap:
        name = "fs.nr_open" if limits.may_raise else "the open-file hard limit nginx inherits (no CAP_SYS_RESOURCE to raise it)"
        fit = _largest(lambda c: size(c, sizing.listeners, sizing.workers).rlimit_nofile <= file_cap)
        found.append(
            f"{promise}: each of {sizing.workers} nginx workers needs {sizing.rlimit_nofile} open files "
            f"(worker_connections {sizing.worker_connections}) but {name} is {file_cap}; at most about {fit} per listener fits "
            "with these workers (more worker_processes share it)"
        )
    sockets = 3 * sizing.sessions  # two in nginx, one in the backend
    if limits.file_max is not None and sockets > limits.file_max:
        found.append(
            f"{promise}: {sockets} open files (2 in nginx and 1 in a backend per session) but fs.file-max is "
            f"{limits.file_max}; at most {_fit(limits.file_max, 3, sizing)} per listener fits"
        )
    count = max(len(nodes(spec)), 1)
    per_backend = math.ceil(sizing.capacity / count)
    if limits.port_range is not None:
        low, high = limits.port_range
        ports = high - low + 1
        if per_backend > ports:
            found.append(
                f"{promise}: {per_backend} connections to each of {count} backend addresses but "
                f"net.ipv4.ip_local_port_range {low} {high} holds {ports} ports per address; at most {ports * count} per listener fits"
            )
    nofiles = [n.ulimit_nofile for n in nodes(spec)]
    if nofiles and math.ceil(sizing.sessions / count) > min(nofiles):
        found.append(
            f"{promise}: {math.ceil(sizing.sessions / count)} sessions on each of {count} backends but their ulimit_nofile "
            f"is {min(nofiles)}; at most {_fit(min(nofiles) * count, 1, sizing)} per listener fits"
        )
    return found


def system_findings(sizing: FrontSizing, worker_connections: int, workers: int, where: str) -> list[str]:
    """With the system nginx: its own worker_connections hold fewer sessions than promised."""
    holds = worker_connections * workers // 2
    if holds >= sizing.sessions:
        return []
    return [
        f"spec.loadbalancer.capacity {sizing.capacity} per listener x {sizing.listeners} needs "
        f"{2 * sizing.sessions} nginx connections but {where} sets worker_connections {worker_connections} "
        f"x {workers} workers: it holds about {holds} sessions; use loadbalancer.instance: own or raise worker_connections"
    ]
