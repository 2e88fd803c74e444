"""Read the host's hardware: CPUs, memory, NIC speed, open-file limit, primary interface.

Everything is read under a host root so that tests and `--root` can point elsewhere; what
the files say is read by conduit.facts (proc, cgroup, hardware).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from conduit.drivers.files import read_or_none
from conduit.facts import cgroup, hardware, proc
from conduit.spec.profiles import HostFacts

DEFAULT_NIC_MBPS = 1000



def cpu_count(root: Path) -> float:
    """CPUs usable here: the cgroup quota when one is set, else the online CPUs."""
    cpus = float(len(os.sched_getaffinity(0))) if root == Path("/") else float(os.cpu_count() or 1)
    v2 = read_or_none(root / "sys/fs/cgroup/cpu.max")
    if v2:
        limit = cgroup.cpu_max_cpus(v2)
    else:
        limit = cgroup.cfs_quota_cpus(
            read_or_none(root / "sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
            read_or_none(root / "sys/fs/cgroup/cpu/cpu.cfs_period_us"),
        )
    if limit is not None:
        cpus = min(cpus, limit)
    return round(cpus, 2)


def memory_bytes(root: Path) -> int:
    return proc.mem_total(read_or_none(root / "proc/meminfo") or "")


def primary_interface(root: Path) -> str | None:
    """The interface of the IPv4 default route (/proc/net/route: destination 00000000)."""
    return proc.default_interface(read_or_none(root / "proc/net/route") or "")


def nic_mbps(root: Path, iface: str | None) -> int:
    if iface:
        speed = hardware.nic_speed(read_or_none(root / "sys/class/net" / iface / "speed"))
        if speed is not None:
            return speed
    return DEFAULT_NIC_MBPS


def nofile_hard_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def detect(root: str | Path = "/") -> HostFacts:
    root = Path(root)
    iface = primary_interface(root)
    return HostFacts(
        vcpus=cpu_count(root),
        memory=memory_bytes(root),
        nic_mbps=nic_mbps(root, iface),
        nofile_limit=nofile_hard_limit(),
        primary_interface=iface,
    )
