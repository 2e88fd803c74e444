"""conduit.facts.sysctl on the kernel's /proc/sys files and on sysctl.d files
(tests/fixtures/facts/sysctl/README.md says how each was captured)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.sysctl import HEADER_PREFIX, key_path, owner, value

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "sysctl"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_key_path():
    assert key_path("net.core.somaxconn") == "net/core/somaxconn"
    assert key_path("net.ipv4.ip_local_port_range") == "net/ipv4/ip_local_port_range"


def test_a_single_number():
    assert value(fixture("somaxconn.txt")) == "4096"


def test_a_tab_separated_range_reads_as_words():
    text = fixture("ip_local_port_range.txt")
    assert "\t" in text and text.endswith("\n")  # as the kernel prints it
    assert value(text) == "32768 60999"


def test_our_file_names_its_cluster():
    text = fixture("99-conduit.conf")
    assert text.startswith(HEADER_PREFIX)
    assert owner(text) == "edge-1"


def test_the_header_is_looked_for_in_the_first_lines_only():
    ours = fixture("99-conduit.conf")
    assert owner("# vim: set ft=sysctl:\n" + ours) == "edge-1"
    assert owner("\n\n\n" + ours) is None


def test_debian_sysctl_conf_is_nobodys():
    assert owner(fixture("debian-sysctl.conf")) is None
    assert owner("") is None
