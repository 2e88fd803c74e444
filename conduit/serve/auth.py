"""Who may call the agent: bearer tokens kept as digests, two roles, and token buckets.

A token is 256 random bits, shown once when it is made; the state DB keeps only its sha256
(the token is long and random, so a fast digest cannot be searched backwards). Tokens are never
logged: the audit log names a request by the token's name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, field

ROLES = ("viewer", "operator")
PREFIX = "cdt_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def allows(role: str, needed: str) -> bool:
    """An operator may do what a viewer may, and write."""
    return ROLES.index(role) >= ROLES.index(needed)


def bearer(header: str | None) -> str | None:
    """The token in an `Authorization: Bearer TOKEN` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


@dataclass
class Bucket:
    """A token bucket: `rate` requests a second on average, bursts of up to `burst`."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0
    refused: bool = False  # the last request was refused (a flood is audited once, not per request)

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused = False
            return True
        return False


@dataclass
class Limiter:
    """One bucket per key (a client address, a token name); the oldest are forgotten past `keep`."""

    rate: float
    burst: float
    keep: int = 10000
    buckets: dict[str, Bucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, now: float | None = None) -> tuple[bool, bool]:
        """(allowed, first refusal of a run of refusals)."""
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None:
                if len(self.buckets) >= self.keep:
                    self.buckets.pop(next(iter(self.buckets)))
                bucket = self.buckets[key] = Bucket(self.rate, self.burst)
            if bucket.take(time.monotonic() if now is None else now):
                return True, False
            first = not bucket.refused
            bucket.refused = True
            return False, first


def bind_refusal(address: str, tls: bool, behind_proxy: bool) -> str | None:
    """Why the agent must not listen on `address`, or None. Off the loopback, tokens would cross
    the network in clear text: it needs TLS of its own, or the operator's word that a TLS proxy fronts it."""
    if tls or behind_proxy or _loopback(address):
        return None
    return (f"refusing to listen on {address} without TLS: give --tls-cert and --tls-key, or --behind-proxy "
            "when a TLS reverse proxy on this host fronts the agent")


def parse_proxies(text: str) -> frozenset[str]:
    """`--behind-proxy`'s addresses, comma separated, normalised; ValueError names the bad one."""
    out = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.add(str(ipaddress.ip_address(part.strip("[]"))))
        except ValueError:
            raise ValueError(f"--behind-proxy: {part!r} is not an IP address") from None
    if not out:
        raise ValueError("--behind-proxy: give the proxy's address (default 127.0.0.1,::1)")
    return frozenset(out)


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
