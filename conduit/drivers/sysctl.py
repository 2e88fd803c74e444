"""Observe kernel settings under a host root: /proc/sys values and the managed sysctl.d file.

Only reads; what the files say is read by conduit.facts.sysctl. Whether a key could be
written is asked with access(2), which reports a read-only /proc/sys (containers) and keys
the kernel serves read-only (a network namespace's conntrack limits) without trying a write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from conduit.facts import sysctl as facts
from conduit.spec.resources import Observation, Resource, host_path
from conduit.spec.spec import ClusterSpec


def proc_path(root: Path, key: str) -> Path:
    return Path(root) / "proc/sys" / facts.key_path(key)


def _hint(key: str) -> str:
    return "; load it with `modprobe nf_conntrack`" if key.startswith("net.netfilter.") else ""


def _observe_key(root: Path, key: str, refused: dict[str, str]) -> Resource:
    path = proc_path(root, key)
    if not path.exists():
        refused[key] = f"sysctl {key} does not exist on this kernel (module not loaded?){_hint(key)}"
        return Resource("sysctl", key, {"value": None})
    if path.is_dir():
        refused[key] = f"sysctl {key} is a group of keys, not a key"
        return Resource("sysctl", key, {"value": None})
    try:
        value: str | None = facts.value(path.read_text())
    except OSError as exc:
        refused[key] = f"sysctl {key} cannot be read: {exc.strerror or exc}"
        value = None
    if not os.access(path, os.W_OK):
        refused[key] = f"sysctl {key} is read-only here (container or VPS kernel)"
    return Resource("sysctl", key, {"value": value})


def _observe_file(spec: ClusterSpec, root: Path, obs: Observation) -> None:
    name = spec.spec.sysctl.file
    path = host_path(root, name)
    if not path.exists() and not path.is_symlink():
        return
    wanted = spec.spec.sysctl.enabled  # only then does the tool mean to write this path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        obs.foreign.append(name)
        if wanted:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            obs.problems.append(f"{name} exists and cannot be read ({reason})")
        return
    owner = facts.owner(text)
    if owner == spec.metadata.name:
        obs.resources.append(Resource("sysctl_file", name, {"content": text}))
        return
    obs.foreign.append(name)
    if wanted:
        if owner is not None:
            obs.problems.append(f"{name} is managed by conduit for another cluster ({owner}): one cluster on a host tunes the "
                                "kernel; set spec.sysctl.enabled: false in this one")  # fmt: skip
        else:
            obs.problems.append(f"{name} exists and is not managed by conduit")


def observe_sysctl(spec: ClusterSpec, root: Path, desired_keys: Iterable[str]) -> Observation:
    root = Path(root)
    obs = Observation()
    for key in sorted(set(desired_keys)):
        obs.resources.append(_observe_key(root, key, obs.refused))
    if spec.spec.sysctl.on_refused == "warn":
        obs.warnings += obs.refused.values()
    else:
        obs.problems += obs.refused.values()
    _observe_file(spec, root, obs)
    return obs
