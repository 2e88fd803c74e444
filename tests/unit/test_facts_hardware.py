"""conduit.facts.hardware on sysfs's speed file (tests/fixtures/facts/sys/README.md says how it was captured)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.hardware import nic_speed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "sys"


def test_a_virtual_nic_has_no_speed():
    assert (FIXTURES / "eth0-speed.txt").read_text() == "-1\n"
    assert nic_speed((FIXTURES / "eth0-speed.txt").read_text()) is None


def test_a_physical_link():
    assert nic_speed("1000\n") == 1000
    assert nic_speed("10000") == 10000


def test_no_file_or_junk():
    assert nic_speed(None) is None and nic_speed("") is None
    assert nic_speed("0") is None and nic_speed("fast") is None
