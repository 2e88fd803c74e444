"""conduit.facts.iproute on `ip -j addr` output (tests/fixtures/facts/iproute/README.md says how it was captured)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.iproute import local_addresses

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "iproute"


def test_loopback():
    assert local_addresses((FIXTURES / "addr-lo.json").read_text()) == {"127.0.0.1", "::1"}


def test_an_ethernet_interface_with_v4_v6_and_link_local():
    assert local_addresses((FIXTURES / "addr-eth0.json").read_text()) == {"192.0.2.2", "fd00::2", "fe80::fc:ff:fe00:1"}


def test_no_output_and_no_addresses():
    assert local_addresses("") == set()
    assert local_addresses('[{"ifindex":9,"ifname":"x"}]') == set()
