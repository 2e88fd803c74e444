"""conduit.facts.tcpdump on tcpdump's own lines (tests/fixtures/facts/tcpdump/README.md says how they were captured)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.tcpdump import Datagram, udp_datagram

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "tcpdump"


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_udp_datagrams_on_loopback():
    got = [udp_datagram(line) for line in lines("lo-udp.txt")]
    assert got == [
        Datagram("127.0.0.1", 44393, "127.0.0.2", 42453, 100),
        Datagram("127.0.0.1", 44393, "127.0.0.2", 42453, 1200),
        Datagram("127.0.0.1", 44393, "127.0.0.2", 42453, 37),
        Datagram("127.0.0.2", 42453, "127.0.0.1", 44393, 512),
        Datagram("::1", 60539, "::1", 60539, 64),
        None,  # the empty line tcpdump printed when it stopped
    ]


def test_tcpdump_chatter_is_no_datagram():
    assert [udp_datagram(line) for line in lines("lo-udp.stderr.txt")] == [None] * 5


def test_other_lines_are_no_datagram():
    assert udp_datagram("") is None
    assert udp_datagram("1796183788.574361 IP 127.0.0.1.44393 > 127.0.0.2.80: tcp 0") is None
    assert udp_datagram("IP 127.0.0.1.44393 > 127.0.0.2.42453: UDP, length 100") is None  # no -tt stamp
