"""fleet.yaml: the hosts one repository of specs drives, the ring each follows, and how to reach each
host's agent. Errors name file, line, column and field, as a spec's do (conduit.spec.load).

    apiVersion: conduit.psiphon.ca/v1alpha1
    kind: ConduitFleet
    rings: {canary: main, stable: stable}     # ring -> the git ref its hosts follow
    default_ring: stable
    hosts:
      - name: fra-1
        spec: hosts/fra-1.yaml                # relative to this file, inside its directory
        agent: https://fra-1.example.net:8443
        labels: {provider: hetzner, region: eu-central, ring: canary}
"""

from __future__ import annotations

import re
import urllib.parse
from ipaddress import ip_address
from pathlib import Path as FsPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conduit.spec.compose import inside
from conduit.errors import Problem, SpecError
from conduit.spec.load import dotted, model_problems, parse, read_spec_text
from conduit.spec.spec import SAFE_NAME, SAFE_NAME_HINT

KIND = "ConduitFleet"
MAX_HOSTS = 2000
# What `git check-ref-format` accepts, less its rarer corners: no "..", no "@{", no space or control characters.
_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)(?!.*//)[A-Za-z0-9._/@+-]{1,200}(?<![./])$")


class _Strict(BaseModel):
    # Validators built on first use, as conduit.spec.spec.Strict's.
    model_config = ConfigDict(extra="forbid", defer_build=True)


def _name(value: str) -> str:
    if not SAFE_NAME.match(value):
        raise ValueError(f"{value!r} is not a safe name ({SAFE_NAME_HINT})")
    return value


class Labels(_Strict):
    provider: str | None = Field(default=None, max_length=64, description="Who runs the VPS (hetzner, ovh, ...).")
    region: str | None = Field(default=None, max_length=64, description="Where it runs (eu-central, ...).")
    ring: str | None = Field(default=None, description="The ring the host is in; default_ring when left out.")


class Host(_Strict):
    name: str = Field(description="The host's name, unique in the fleet.")
    spec: str = Field(description="Its spec, relative to the fleet file; it may extend base files.")
    agent: str | None = Field(default=None, description="Its agent: https://host:port, or http://127.0.0.1:port through a tunnel.")
    labels: Labels = Field(default_factory=Labels)

    _check_name = field_validator("name")(_name)

    @field_validator("spec")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or "\\" in value:
            raise ValueError(f"{value!r} is absolute; name the spec relative to the fleet file")
        if inside("", value) is None:
            raise ValueError(f"{value!r} leaves the fleet's directory; specs must live inside it")
        return value

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return None if value is None else agent_address(value)


def agent_address(value: str) -> str:
    """https://host:port, or http:// to a loopback address only (a tunnel): a token never crosses a network in clear."""
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("https", "http") or not parts.hostname or port is None:
        raise ValueError(f"{value!r} is not an agent address; write https://host:port")
    if parts.username or parts.password:
        raise ValueError("an agent address carries no user or password; the agent's token lives outside the repository")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} has a path; write https://host:port")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError(f"{value!r} is plain http to another machine; use https, or http://127.0.0.1:port through a tunnel")
    return value


def _loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Fleet(_Strict):
    apiVersion: Literal["conduit.psiphon.ca/v1alpha1"] = Field(description="Version of the spec language.")
    kind: Literal["ConduitFleet"] = Field(description="Always ConduitFleet.")
    rings: dict[str, str] = Field(default_factory=dict, description="Ring name -> the git ref its hosts follow.")
    default_ring: str | None = Field(default=None, description="The ring of a host whose labels name none.")
    hosts: list[Host] = Field(min_length=1, max_length=MAX_HOSTS)

    @field_validator("rings")
    @classmethod
    def _rings(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            _name(name)
            if not _REF.match(ref):
                raise ValueError(f"ring {name}: {ref!r} is not a git ref (a branch such as main or stable)")
        return value

    @model_validator(mode="after")
    def _known_rings(self) -> Fleet:
        if self.default_ring is not None and self.default_ring not in self.rings:
            raise ValueError(f"default_ring {self.default_ring!r} is not one of the rings ({', '.join(self.rings) or 'none'})")
        return self

    def ring(self, host: Host) -> str | None:
        return host.labels.ring or self.default_ring


def _issues(fleet: Fleet) -> list[tuple[tuple, str]]:
    """What the model alone cannot say: unique names, rings that exist."""
    out: list[tuple[tuple, str]] = []
    seen: dict[str, int] = {}
    for i, host in enumerate(fleet.hosts):
        if host.name in seen:
            out.append((("hosts", i, "name"), f"{host.name!r} is already the name of hosts.{seen[host.name]}"))
        seen.setdefault(host.name, i)
        ring = host.labels.ring
        if ring is not None and ring not in fleet.rings:
            out.append((("hosts", i, "labels", "ring"), f"{ring!r} is not one of the rings ({', '.join(fleet.rings) or 'none'})"))
        elif ring is None and fleet.rings and fleet.default_ring is None:
            out.append((("hosts", i, "labels"), "names no ring, and the fleet has no default_ring"))
    return out


def load_fleet_text(text: str, filename: str) -> Fleet:
    """Validate fleet.yaml text, or raise SpecError."""
    data, marks = parse(text, filename)
    if not isinstance(data, dict):
        raise SpecError(filename, [Problem(1, 1, "", "expected a mapping with apiVersion, kind and hosts")])
    try:
        fleet = Fleet.model_validate(data)
    except ValidationError as exc:
        raise SpecError(filename, model_problems(exc, data, marks, Fleet)) from None
    issues = _issues(fleet)
    if issues:
        raise SpecError(filename, [Problem(*marks.find(path), dotted(path), message) for path, message in issues])
    return fleet


def load_fleet(path: str | FsPath) -> Fleet:
    return load_fleet_text(read_spec_text(path), str(path))

