"""tcpdump's lines, parsed: the UDP datagrams of `tcpdump -n -tt -q -l` (conduit.tracker.capture runs it)."""

from __future__ import annotations

import re
from typing import NamedTuple

# "1700000000.123456 IP 10.0.0.1.5000 > 10.0.0.2.40000: UDP, length 100" (IPv6: "IP6 a::1.5000 > ...")
_LINE = re.compile(r"^\S+ IP6? (\S+)\.(\d+) > (\S+)\.(\d+): UDP, length (\d+)")


class Datagram(NamedTuple):
    src: str
    sport: int
    dst: str
    dport: int
    length: int  # UDP payload bytes


def udp_datagram(line: str) -> Datagram | None:
    """One line of tcpdump's quiet, numeric output as a UDP datagram; None for any other line."""
    match = _LINE.match(line)
    if not match:
        return None
    src, sport, dst, dport, length = match.groups()
    return Datagram(src, int(sport), dst, int(dport), int(length))
