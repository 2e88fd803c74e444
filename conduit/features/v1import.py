"""Adopt a host set up by the v1/v2 bash managers: their settings file and containers, as a spec.

settings.conf is read as data, never sourced (conduit.facts.v1settings).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from conduit.drivers.docker import CountingClient, call
from conduit.drivers.files import atomic_write, private_dir
from conduit.facts.v1settings import PER_CONTAINER, Settings
from conduit.spec.image import EXACT_VERSIONS, OFFICIAL, ImageFacts
from conduit.spec.jsonschema import COMMITTED
from conduit.spec.units import format_size, parse_docker_size

def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _whole(value: float | None) -> int | float | None:
    return int(value) if value is not None and value == int(value) else value


# Flags only one CLI generation has: 2.0 renamed --max-clients and dropped --stats-file.
_CLI_FLAGS = {"--max-clients": "1.x", "--stats-file": "1.x", "--max-common-clients": "2.x", "--max-personal-clients": "2.x"}


def cli_version_of(command: list[str]) -> str | None:
    """The CLI generation a container's own command line speaks, when a flag tells."""
    for word in command:
        found = _CLI_FLAGS.get(word.split("=", 1)[0])
        if found:
            return found
    return None


def existing_nodes(client: CountingClient, prefix: str) -> list[dict]:
    """The bash managers' containers: prefix, prefix-2, prefix-3 … with their volume and image."""
    found = []
    pattern = re.compile(rf"^{re.escape(prefix)}(?:-(\d+))?$")
    for entry in call(client, client.api.containers, all=True):
        name = entry["Names"][0].lstrip("/")
        match = pattern.match(name)
        if not match:
            continue
        volume = next((m for m in entry.get("Mounts") or [] if m.get("Type") == "volume"), None)
        found.append(
            {
                "index": int(match.group(1) or 1),
                "name": name,
                "image": entry.get("Image"),
                "image_id": entry.get("ImageID"),
                "volume": volume["Name"] if volume else None,
                "data_dir": volume["Destination"] if volume else None,
                "network": (entry.get("HostConfig") or {}).get("NetworkMode"),
                "cli_version": cli_version_of((entry.get("Command") or "").split()),
            }
        )
    return sorted(found, key=lambda n: n["index"])


def pinned_image_settings(facts: ImageFacts | None) -> dict:
    """conduit.cli_version and conduit.build as the running image said them, so a later plan
    that finds a different image behind the same tag reports it instead of guessing."""
    if facts is None or not facts.known:
        return {"cli_version": "auto"}
    minor = ".".join((facts.version or "").split(".")[:2])
    exact = minor if facts.build == OFFICIAL and minor in EXACT_VERSIONS else None
    return {"cli_version": exact or facts.cli or "auto", "build": facts.build or "auto"}


def build_spec(
    settings: Settings, found: list[dict], prefix: str, cluster: str, secrets_dir: Path, metrics_port_base: int,
    facts: ImageFacts | None = None,
) -> tuple[dict, list[str]]:  # fmt: skip
    """The spec that adopts what is there, and warnings for what could not be carried over.

    facts: what the nodes' own image answered when asked (conduit.engine.images).
    """
    v = settings.values
    warnings = [f"unknown setting {key} ignored" for key in settings.unknown]
    count = int(_number(v.get("CONTAINER_COUNT")) or len(found) or 1)
    image, data_dir, volume_prefix = _from_containers(found, prefix)
    resources = _resources(v)
    overrides = _overrides(v, count)
    conduit = _conduit_settings(v, found, facts, data_dir, metrics_port_base, warnings)

    spec: dict = {
        "host": {"vcpus": "auto", "memory": "auto", "profile": "official"},
        "containers": {
            "count": count,
            "image": image,
            "naming": {"scheme": "v1", "prefix": prefix, "volume_prefix": volume_prefix},
            "restart_policy": "unless-stopped",
        },
        # The bash managers ran every node with host networking; keep it (best for WebRTC).
        "network": {"mode": "host"},
        "conduit": conduit,
        "loadbalancer": {"enabled": False},
        "sysctl": {"profile": "conduit", "on_refused": "warn"},
        "tracker": {"enabled": v.get("TRACKER_ENABLED", "true").lower() not in ("false", "0", "no")},
    }
    if resources:
        spec["containers"]["resources"] = resources
    if overrides:
        spec["containers"]["overrides"] = overrides
    telegram = _telegram(v, secrets_dir)
    if telegram:
        spec["alerts"] = {"telegram": telegram}

    doc = {"apiVersion": "conduit.psiphon.ca/v1alpha1", "kind": "ConduitCluster", "metadata": {"name": cluster}, "spec": spec}
    warnings += [f"{node['name']} ran with {node['network']} networking; the spec uses host networking" for node in found if node["network"] not in ("host", None)]
    return doc, warnings


def _from_containers(found: list[dict], prefix: str) -> tuple[str, str, str]:
    """The image, data dir and first volume the existing containers use, else the managers' defaults."""
    image = next((n["image"] for n in found if n["image"]), "ghcr.io/psiphon-inc/conduit/cli:latest")
    data_dir = next((n["data_dir"] for n in found if n["data_dir"]), "/home/conduit/data")
    volume_prefix = next((n["volume"] for n in found if n["index"] == 1 and n["volume"]), f"{prefix}-data")
    return image, data_dir, volume_prefix


def _resources(v: dict[str, str]) -> dict:
    """The limits every container ran with."""
    resources: dict = {}
    cpus = _number(v.get("CONTAINER_CPU_LIMIT") or v.get("DOCKER_CPUS"))
    memory = v.get("CONTAINER_MEM_LIMIT") or v.get("DOCKER_MEMORY")
    if cpus:
        resources["cpus"] = cpus
    if memory:
        resources["memory"] = format_size(parse_docker_size(memory))
    if _number(v.get("CONTAINER_ULIMIT_NOFILE")):
        resources["ulimit_nofile"] = int(_number(v["CONTAINER_ULIMIT_NOFILE"]))
    return resources


def _overrides(v: dict[str, str], count: int) -> dict[int, dict]:
    """MAX_CLIENTS_2=… and friends: per-container settings of the containers that exist."""
    overrides: dict[int, dict] = {}
    for key, value in v.items():
        match = PER_CONTAINER.match(key)
        if not match or value == "":
            continue
        what, index = match.group(1), int(match.group(2))
        entry = overrides.setdefault(index, {})
        entry.update(_override(what, value))
    return {i: o for i, o in overrides.items() if i <= count and o}


def _override(what: str, value: str) -> dict:
    if what == "MAX_CLIENTS":
        return {"max_clients": int(_number(value) or 0)}
    if what == "BANDWIDTH":
        return {"bandwidth_mbps": _whole(_number(value))}
    if what in ("CPUS", "CONTAINER_CPUS"):
        return {"cpus": _number(value)}
    return {"memory": format_size(parse_docker_size(value))}


def _conduit_settings(
    v: dict[str, str], found: list[dict], facts: ImageFacts | None, data_dir: str, metrics_port_base: int, warnings: list[str],
) -> dict:  # fmt: skip
    """spec.conduit: what the image speaks, the node flags and the data cap."""
    # The image's own answer first; else what the nodes already run tells the CLI generation.
    image_settings = pinned_image_settings(facts)
    spoken = {n["cli_version"] for n in found if n.get("cli_version")}
    if image_settings["cli_version"] == "auto" and len(spoken) == 1:
        image_settings["cli_version"] = spoken.pop()
    conduit: dict = {**image_settings, "data_dir": data_dir, "metrics_port_base": metrics_port_base}
    if _number(v.get("MAX_CLIENTS")) is not None:
        conduit["max_clients"] = int(_number(v["MAX_CLIENTS"]))
    if _number(v.get("BANDWIDTH")) is not None:
        conduit["bandwidth_mbps"] = _whole(_number(v["BANDWIDTH"]))
    cap = _number(v.get("DATA_CAP_GB"))
    if cap:
        days = int(_number(v.get("DATA_CAP_PERIOD_DAYS")) or 30)
        if cap >= 100 and days >= 7:
            conduit["data_cap"] = {"traffic_limit_gb": _whole(cap), "period_days": days}
        else:
            warnings.append(f"DATA_CAP_GB={v['DATA_CAP_GB']} is below conduit-monitor's minimum of 100 GB per 7 days; not carried over")
    return conduit


def _telegram(v: dict[str, str], secrets_dir: Path) -> dict | None:
    """The bot token and chat id, moved into 0600 files under the state dir; the spec names the files."""
    token, chat = v.get("TELEGRAM_BOT_TOKEN"), v.get("TELEGRAM_CHAT_ID")
    if not (token and chat):
        return None
    private_dir(secrets_dir)
    atomic_write(secrets_dir / "telegram-token", token + "\n")
    atomic_write(secrets_dir / "telegram-chat", chat + "\n")
    telegram = {"bot_token": {"file": str(secrets_dir / "telegram-token")}, "chat_id": {"file": str(secrets_dir / "telegram-chat")}}
    if v.get("TELEGRAM_SERVER_LABEL"):
        telegram["server_label"] = v["TELEGRAM_SERVER_LABEL"]
    return telegram


def render(doc: dict, source: str) -> str:
    head = (
        f"# yaml-language-server: $schema={COMMITTED}\n"
        f"# Written by `conduit import-v1` from {source} and the containers on this host.\n"
        "# It adopts them: same names, same volumes, so every node keeps its key.\n"
    )
    return head + yaml.safe_dump(doc, sort_keys=False)
