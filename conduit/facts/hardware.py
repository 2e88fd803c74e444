"""A network interface's speed, parsed from sysfs's /sys/class/net/<iface>/speed (conduit.drivers.hostfacts reads it)."""

from __future__ import annotations


def nic_speed(text: str | None) -> int | None:
    """Link speed in Mbit/s; None when unknown (-1 for a virtual NIC or a link that is down, or no file)."""
    text = text.strip() if text else text
    if text and text.lstrip("-").isdigit() and int(text) > 0:
        return int(text)
    return None
