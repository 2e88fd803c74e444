"""The Registry HTTP API v2 as text: where an image's repository lives, what a tag list says,
the anonymous token a registry asks for, and the next page of a list.

Pure functions (conduit.drivers.registry does the HTTP).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

DOCKER_HUB = "registry-1.docker.io"  # where docker.io's API answers
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


class RegistryTextError(ValueError):
    """A registry answer that cannot be read; one line."""


@dataclass(frozen=True)
class Repository:
    host: str  # the API's host[:port] ("ghcr.io", "registry-1.docker.io", "127.0.0.1:5000")
    name: str  # the repository path ("psiphon-inc/conduit/cli", "library/debian")

    @property
    def insecure(self) -> bool:
        """Plain http: only a registry on 127.0.0.0/8 or localhost, as Docker's own default allows."""
        return loopback(self.host)

    @property
    def base(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"

    @property
    def tags_url(self) -> str:
        return f"{self.base}/v2/{self.name}/tags/list"


def loopback(host: str) -> bool:
    """host[:port] is localhost or an IPv4 address in 127.0.0.0/8."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def repository(image: str) -> Repository:
    """Where an image reference's repository is asked, as Docker resolves it: a first part with a
    dot or a colon, or localhost, is a registry; anything else is on Docker Hub (library/ for one name)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.rsplit(":", 1)[0]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name
    if host in _HUB_NAMES:
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not path:
        raise RegistryTextError(f"{image} names no repository")
    return Repository(host, path)


def tags(text: str | bytes) -> list[str]:
    """The tags of a `GET /v2/<name>/tags/list` answer ({"name": …, "tags": [...]}; tags may be null)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise RegistryTextError("the tag list is not JSON") from None
    if not isinstance(data, dict):
        raise RegistryTextError("the tag list is not a JSON object")
    if data.get("errors"):
        raise RegistryTextError(f"the registry says: {errors(data)}")
    found = data.get("tags")
    if found is None:
        return []
    if not isinstance(found, list) or not all(isinstance(t, str) for t in found):
        raise RegistryTextError("the tag list's tags are not a list of strings")
    return found


def errors(data: object) -> str:
    """The registry's error document ({"errors": [{"code": …, "message": …}]}) in one line."""
    items = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return "no reason given"
    said = [f"{e.get('message') or e.get('code')} ({e.get('code')})" for e in items if isinstance(e, dict)]
    return " ".join("; ".join(said).split()) or "no reason given"


def bearer_challenge(header: str | None) -> dict[str, str] | None:
    """realm, service and scope of a `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`
    header; None when it asks for something else (Basic: credentials)."""
    if not header:
        return None
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    out = {}
    pos = 0
    while pos < len(params):
        match = _PARAM.match(params, pos)
        if match is None or match.end() == pos:
            break
        key, quoted, bare = match.groups()
        out[key.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return out if out.get("realm") else None


def token(text: str | bytes) -> str:
    """The token of a token endpoint's answer ({"token": …} or {"access_token": …})."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise RegistryTextError("the token answer is not JSON") from None
    value = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise RegistryTextError("the token answer has no token")
    return value


def next_page(header: str | None) -> str | None:
    """The target of a `Link: <…>; rel="next"` header, as given (often relative to the request's URL)."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        target, params = match.groups()
        rels = re.findall(r';\s*rel\s*=\s*"?([^";]*)"?', params)
        if any("next" in rel.split() for rel in rels):
            return target.strip() or None
    return None
