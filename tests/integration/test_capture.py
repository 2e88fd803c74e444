"""The tracker's capture fallback on real packets between two network namespaces of this test."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conduit.tracker.capture import GEOIP_V4, country, parse
from conduit.state.stores import open_state
from harness import need, not_found, unavailable, wait_for

pytestmark = pytest.mark.integration

SEND = """
import socket, sys, time
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(b"x" * size, (host, port))
    time.sleep(0.002)
"""


@pytest.fixture
def namespaces():
    """Two namespaces joined by a veth pair: the node side 10.213.7.1, the client side 10.213.7.2."""
    from harness.netns import veth_pair

    with veth_pair("10.213.7", need("ip")) as pair:
        need("tcpdump")
        yield {"node": pair.node, "client": pair.client, "iface": pair.node_if}


def filtering(namespace: str) -> bool:
    """tcpdump in `namespace` has its BPF program on its packet socket: what arrives now is counted.
    (libpcap drops what came before, and a one-instruction program is its drop-all while it flushes.)"""
    ss = [need("ip"), "netns", "exec", namespace, "ss", "-0", "-b", "-n"]
    shown = subprocess.run(ss, capture_output=True, text=True, check=True).stdout
    return any(int(n) > 1 for n in re.findall(r"bpf filter \((\d+)\)", shown))


def test_udp_between_namespaces_is_counted_with_exact_bytes(namespaces, tmp_path):
    ns = namespaces
    state = tmp_path / "state"
    probe = (
        "import sys; from conduit.tracker.process import Settings, capture_once; from conduit.state.stores import open_state;"
        f"capture_once(open_state({str(state)!r}).samples, Settings((), 300, 30, 'capture', {ns['iface']!r}, "
        "'udp and (portrange 1024-65535) and not (port 53 or port 443)', 10, 96, 1))"
    )
    tracker = subprocess.Popen(["ip", "netns", "exec", ns["node"], sys.executable, "-c", probe], stderr=subprocess.PIPE, text=True)
    wait_for(lambda: tracker.poll() is not None or filtering(ns["node"]), timeout=30, interval=0.05, message="tcpdump capturing")
    for port, count, size in ((40001, 50, 200), (443, 30, 100)):  # the 443 datagrams must not count
        subprocess.run(["ip", "netns", "exec", ns["client"], sys.executable, "-c", SEND, "10.213.7.1", str(port), str(count), str(size)], check=True)
    _, err = tracker.communicate(timeout=30)
    assert tracker.returncode == 0, err
    samples = open_state(state).samples.latest()
    assert samples == {"ZZ": (1, 50 * 200, 0)}  # a private address has no country
    rows = open_state(state).samples.addresses()
    assert [(r[1], r[2], r[3]) for r in rows] == [("10.213.7.2", "ZZ", 10000)]


def test_a_missing_interface_is_logged_not_fatal(tmp_path):
    from conduit.tracker.process import Settings, capture_once

    capture_once(open_state(tmp_path).samples, Settings((), 300, 30, "capture", "nosuchif0", "udp", 0.1, 96, 0))
    assert open_state(tmp_path).samples.latest() == {}


def test_packaged_geoip_resolves_known_public_addresses():
    if not GEOIP_V4.exists():
        unavailable(not_found(str(GEOIP_V4), "geoip-database"))
    assert country("8.8.8.8") == "US"
    assert country("193.99.144.80") == "DE"
    assert country("2001:4860:4860::8888") == "US" and country("2a00:1450:4001:80b::200e") == "DE"  # the IPv6 database, mapped too
    assert country("10.1.2.3") == "ZZ" and country("not an address") == "ZZ"


def test_parse_counts_directions():
    local = {"10.0.0.1"}
    flows = parse(
        [
            "1.0 IP 203.0.113.5.5000 > 10.0.0.1.40000: UDP, length 100",
            "1.1 IP 10.0.0.1.40000 > 203.0.113.5.5000: UDP, length 300",
            "1.2 IP 10.0.0.1.1 > 10.0.0.1.2: UDP, length 7",
            "garbage",
        ],
        local,
    )
    assert {a: (f.packets, f.up, f.down) for a, f in flows.items()} == {"203.0.113.5": (2, 100, 300)}
