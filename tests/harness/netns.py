"""Two network namespaces joined by a veth pair: a node side and a client side, made and removed here."""

from __future__ import annotations

import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class VethPair:
    node: str  # namespace of the node side
    client: str  # namespace of the client side
    node_if: str
    client_if: str
    node_addr: str
    client_addr: str


@contextmanager
def veth_pair(subnet: str = "10.213.7", ip: str = "ip"):
    """Namespaces with `subnet`.1 (node) and `subnet`.2 (client) on a /30; deleted on exit."""
    tag = uuid.uuid4().hex[:6]
    pair = VethPair(f"cn{tag}", f"cc{tag}", f"vn{tag}", f"vc{tag}", f"{subnet}.1", f"{subnet}.2")
    run = lambda *a: subprocess.run([ip, *a], check=True, capture_output=True)  # noqa: E731
    try:
        run("netns", "add", pair.node)
        run("netns", "add", pair.client)
        run("link", "add", pair.node_if, "netns", pair.node, "type", "veth", "peer", "name", pair.client_if, "netns", pair.client)
        run("-n", pair.node, "addr", "add", f"{pair.node_addr}/30", "dev", pair.node_if)
        run("-n", pair.client, "addr", "add", f"{pair.client_addr}/30", "dev", pair.client_if)
        for ns, dev in ((pair.node, pair.node_if), (pair.client, pair.client_if)):
            run("-n", ns, "link", "set", dev, "up")
            run("-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        subprocess.run([ip, "netns", "del", pair.node], capture_output=True)
        subprocess.run([ip, "netns", "del", pair.client], capture_output=True)
