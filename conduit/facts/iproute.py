"""iproute2's JSON, parsed: an interface's own addresses from `ip -j addr show dev <iface>`
(conduit.tracker.capture runs ip)."""

from __future__ import annotations

import json


def local_addresses(output: str) -> set[str]:
    """Every `local` address of every interface listed; empty output lists none."""
    return {info["local"] for entry in json.loads(output or "[]") for info in entry.get("addr_info", [])}
