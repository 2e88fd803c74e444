"""Resources: a kind, an id and a plain dict of the properties that matter.

Renderers turn a spec into desired resources; drivers observe the same shape from the
host. The planner compares the two and knows nothing else about either side.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# The phase each kind is applied in, in apply order.
PHASES = ("sysctl", "nginx", "containers", "tracker")
KIND_PHASE = {
    "sysctl": "sysctl",  # id: the key (net.core.rmem_max); props: {"value": "16777216"} (None = kernel lacks it)
    "sysctl_file": "sysctl",  # id: host path of the sysctl.d file; props: {"content": text}
    "nginx_conf": "nginx",  # id: host path of the include file; props: {"content": text}
    "nginx_include": "nginx",  # id: host path of nginx.conf; props: {"line": the managed include line}
    "nginx_main": "nginx",  # id: host path of the own nginx's main config; props: {"content": text}
    "nginx": "nginx",  # id: "nginx"; props: {"running": bool}
    "network": "containers",  # id: Docker network name; props: {"driver": "bridge", "subnet": str | None}
    "volume": "containers",  # id: volume name; props: {} (never deleted)
    "container": "containers",  # id: container name; see render/container.py
    "tracker": "tracker",  # id: "tracker"; props: {"command": [...], "running": bool}
}
# Within a phase, kinds that others depend on come first.
KIND_ORDER = tuple(KIND_PHASE)


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str
    props: dict
    # Fields whose change cannot be made in place: the resource is replaced instead.
    replace_fields: frozenset[str] = frozenset()
    # Never deleted when the spec no longer wants it (data volumes).
    keep: bool = False
    # Found on the host under the spec's name and volume but not made by the tool: taken over.
    adopt: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.id)


@dataclass
class Observation:
    """What one driver saw: our resources, things that are not ours, and preflight problems."""

    resources: list[Resource] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # seen, not ours, never touched
    problems: list[str] = field(default_factory=list)  # would make an apply fail; reported before it
    warnings: list[str] = field(default_factory=list)
    # Resources that were changed on the host by hand since the tool last wrote them.
    drifted: set[tuple[str, str]] = field(default_factory=set)
    api_calls: int = 0
    # sysctl keys this kernel cannot take now (absent, read-only), and why.
    refused: dict[str, str] = field(default_factory=dict)

    def merge(self, other: Observation) -> Observation:
        return Observation(
            self.resources + other.resources,
            self.foreign + other.foreign,
            self.problems + other.problems,
            self.warnings + other.warnings,
            self.drifted | other.drifted,
            self.api_calls + other.api_calls,
            {**self.refused, **other.refused},
        )


def canonical(value: object) -> str:
    """Stable JSON: same value, same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(value: object, length: int = 16) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:length]


def host_path(root: Path, path: str) -> Path:
    """A host path under the tool's root (--root), for the files the tool manages."""
    return root / path.lstrip("/")


_NATURAL = re.compile(r"(\d+)")


def natural_key(name: str) -> list:
    """Sort key of resource ids: conduit-2 before conduit-10."""
    return [int(part) if part.isdigit() else part for part in _NATURAL.split(name)]
