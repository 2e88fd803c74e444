"""Control group files, parsed: memory and CPU use of a container, and a CPU quota, in cgroup v1 and v2.

Pure functions of the files' text (conduit.features.status and conduit.drivers.hostfacts read them).
v2: memory.current, cpu.stat (`usage_usec N`), cpu.max (`$MAX $PERIOD`, MAX may be `max`).
v1: memory.usage_in_bytes, cpuacct.usage (nanoseconds), cpu.cfs_quota_us and cpu.cfs_period_us (quota -1: none).
"""

from __future__ import annotations


def integer(text: str | None) -> int | None:
    """A file holding one non-negative number (memory.current, memory.usage_in_bytes, cpuacct.usage)."""
    text = text.strip() if text else text
    return int(text) if text and text.isdigit() else None


def cpu_stat_usage_ns(text: str) -> int | None:
    """CPU time used, in nanoseconds, from a v2 cpu.stat's `usage_usec` line; None without one (v1's cpu.stat)."""
    usage = None
    for line in text.splitlines():
        if line.startswith("usage_usec "):
            usage = int(line.split()[1]) * 1000
    return usage


def cpu_max_cpus(text: str) -> float | None:
    """CPUs a v2 cpu.max allows (quota / period); None when the quota is `max`."""
    quota, _, period = text.strip().partition(" ")
    if quota != "max" and period:
        return int(quota) / int(period)
    return None


def cfs_quota_cpus(quota: str | None, period: str | None) -> float | None:
    """CPUs a v1 cpu.cfs_quota_us / cpu.cfs_period_us pair allows; None when there is no quota (-1)."""
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None
