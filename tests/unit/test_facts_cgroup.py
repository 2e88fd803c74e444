"""conduit.facts.cgroup on control group files (tests/fixtures/facts/cgroup/README.md says which
were captured on this machine, cgroup v1 and v2's cpu.stat, and which were written from the kernel's documentation)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.cgroup import cfs_quota_cpus, cpu_max_cpus, cpu_stat_usage_ns, integer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "cgroup"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_v2_memory_current():
    assert integer(fixture("v2/memory.current")) == 11542528


def test_v1_memory_usage_and_cpuacct_usage():
    assert integer(fixture("v1/memory.usage_in_bytes")) == 11874304
    assert integer(fixture("v1/cpuacct.usage")) == 7008226283408


def test_integer_reads_one_number_only():
    assert integer(None) is None and integer("") is None
    assert integer("max") is None and integer("-1") is None and integer("1 2") is None


def test_v2_cpu_stat_usage_in_nanoseconds():
    assert cpu_stat_usage_ns(fixture("v2/cpu.stat")) == 6951967914 * 1000


def test_v1_cpu_stat_has_no_usage():
    assert cpu_stat_usage_ns(fixture("v1/cpu.stat")) is None  # nr_periods, nr_throttled, ...


def test_v2_cpu_max():
    assert cpu_max_cpus(fixture("v2/cpu.max")) == 1.5
    assert cpu_max_cpus(fixture("v2/cpu.max-unlimited")) is None


def test_v1_cfs_quota():
    # this machine's root cpu cgroup: no quota
    assert cfs_quota_cpus(fixture("v1/cpu.cfs_quota_us").strip(), fixture("v1/cpu.cfs_period_us").strip()) is None
    assert cfs_quota_cpus("50000", fixture("v1/cpu.cfs_period_us").strip()) == 0.5
    assert cfs_quota_cpus(None, "100000") is None and cfs_quota_cpus("50000", None) is None
