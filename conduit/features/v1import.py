"""Adopt a host set up by the v1/v2 bash managers: their settings file and containers, as a spec.

settings.conf is read as data, never sourced (conduit.facts.v1settings). Containers that carry
conduit's own labels belong to a cluster the tool already manages and are never adopted.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from conduit.drivers.docker import CountingClient, call, inspect_image
from conduit.drivers.files import atomic_write, private_dir
from conduit.facts.oneline import one_line
from conduit.facts.v1settings import PER_CONTAINER, Settings
from conduit.render.container import CLUSTER, MANAGED_BY
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


class ImportRefused(Exception):
    """The install cannot be adopted as it is; one line saying what to do."""


# The node flags the bash managers set; 2.x's -m is --max-common-clients.
_FLAG_FIELDS = {"--max-clients": "max_clients", "--max-common-clients": "max_clients", "-m": "max_clients",
                "--bandwidth": "bandwidth_mbps", "-b": "bandwidth_mbps"}  # fmt: skip


def node_flags(command: list[str]) -> dict:
    """max_clients and bandwidth_mbps as a node's own command line sets them (what it runs with)."""
    out: dict = {}
    for i, word in enumerate(command):
        flag, eq, inline = word.partition("=")
        field = _FLAG_FIELDS.get(flag)
        value = inline if eq else (command[i + 1] if i + 1 < len(command) else None)
        number = _number(value) if field else None
        if number is None or number != number or abs(number) == float("inf"):
            continue
        out[field] = int(number) if field == "max_clients" else _whole(number)
    return {k: v for k, v in out.items() if k != "max_clients" or v >= 0}


def _named_image(client: CountingClient, config_image: str | None, image_id: str | None) -> str | None:
    """repository:tag the node runs: its Config.Image when that names one, else the image's first RepoTag."""
    if config_image and not config_image.startswith("sha256:") and not re.fullmatch(r"[0-9a-f]{12,64}", config_image):
        return config_image
    attrs = inspect_image(client, image_id) if image_id else None
    tags = [t for t in (attrs or {}).get("RepoTags") or [] if not t.endswith(":<none>")]
    return tags[0] if tags else None


def existing_nodes(client: CountingClient, prefix: str) -> list[dict]:
    """The bash managers' containers: prefix, prefix-2, prefix-3 … with their volume, image and flags.

    Raises ImportRefused when one of those names is a node of a cluster conduit manages."""
    found = []
    pattern = re.compile(rf"^{re.escape(prefix)}(?:-(\d+))?$")
    for entry in call(client, client.api.containers, all=True):
        name = entry["Names"][0].lstrip("/")
        match = pattern.match(name)
        if match:
            found.append(_node(client, entry, name, int(match.group(1) or 1)))
    return sorted(found, key=lambda n: n["index"])


def _node(client: CountingClient, entry: dict, name: str, index: int) -> dict:
    labels = entry.get("Labels") or {}
    if labels.get(MANAGED_BY):
        raise ImportRefused(
            f"{name} belongs to cluster {one_line(labels.get(CLUSTER, '?'))} (managed by conduit), not to a bash manager; "
            "there is nothing of it to import (name the bash manager's containers with --prefix)"
        )
    config = call(client, client.api.inspect_container, entry["Id"]).get("Config") or {}
    command = config.get("Cmd") or (entry.get("Command") or "").split()
    volume = next((m for m in entry.get("Mounts") or [] if m.get("Type") == "volume"), None)
    return {
        "index": index,
        "name": name,
        "image": _named_image(client, config.get("Image") or entry.get("Image"), entry.get("ImageID")),
        "image_id": entry.get("ImageID"),
        "volume": volume["Name"] if volume else None,
        "data_dir": volume["Destination"] if volume else None,
        "network": (entry.get("HostConfig") or {}).get("NetworkMode"),
        "cli_version": cli_version_of(command),
        "flags": node_flags(command),
    }


def pinned_image_settings(facts: ImageFacts | None) -> dict:
    """conduit.cli_version and conduit.build as the running image said them, so a later plan
    that finds a different image behind the same tag reports it instead of guessing."""
    if facts is None or not facts.known:
        return {"cli_version": "auto"}
    minor = ".".join((facts.version or "").split(".")[:2])
    exact = minor if facts.build == OFFICIAL and minor in EXACT_VERSIONS else None
    return {"cli_version": exact or facts.cli or "auto", "build": facts.build or "auto"}


def build_spec(
    settings: Settings, found: list[dict], prefix: str, cluster: str, secrets_dir: Path | None, metrics_port_base: int,
    facts: ImageFacts | None = None,
) -> tuple[dict, list[str]]:  # fmt: skip
    """The spec that adopts what is there, and warnings for what could not be carried over.

    secrets_dir: where the host policy lets secret files be (None: nowhere; the Telegram settings
    are then refused). facts: what the nodes' own image answered when asked (conduit.engine.images).
    Raises ImportRefused.
    """
    v = settings.values
    warnings = [f"unknown setting {key} ignored" for key in settings.unknown]
    count = int(_number(v.get("CONTAINER_COUNT")) or len(found) or 1)
    image, data_dir, volume_prefix = _from_containers(found, prefix)
    resources = _resources(v)
    conduit = _conduit_settings(v, found, facts, data_dir, metrics_port_base, warnings)
    overrides = _with_node_flags(_overrides(v, count), found, conduit, count)

    s: dict = {
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
        s["containers"]["resources"] = resources
    if overrides:
        s["containers"]["overrides"] = overrides
    telegram = _telegram(v, secrets_dir, cluster)
    if telegram:
        s["alerts"] = {"telegram": telegram | ({"bot": _bot(v)} if _bot(v) else {})}
    budget = _budget(v, warnings)
    if budget:
        s["budget"] = budget

    spec = {"apiVersion": "conduit.psiphon.ca/v1alpha1", "kind": "ConduitCluster", "metadata": {"name": cluster}, "spec": s}
    warnings += [f"{node['name']} ran with {node['network']} networking; the spec uses host networking" for node in found if node["network"] not in ("host", None)]
    return spec, warnings


def _from_containers(found: list[dict], prefix: str) -> tuple[str, str, str]:
    """The image, data dir and first volume the existing containers use, else the managers' defaults."""
    unnamed = next((n for n in found if not n["image"]), None)
    if unnamed is not None:
        raise ImportRefused(
            f"{unnamed['name']} runs image {(unnamed['image_id'] or 'unknown')[:19]} which has no repository:tag; "
            f"pin an image (docker tag {(unnamed['image_id'] or 'ID')[:19]} REPOSITORY:TAG) and run import-v1 again"
        )
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


def _with_node_flags(overrides: dict[int, dict], found: list[dict], conduit: dict, count: int) -> dict[int, dict]:
    """What each node's own command line sets, where it differs from the cluster-wide value and
    the settings file names nothing for that node (the settings file wins)."""
    out = {i: dict(o) for i, o in overrides.items()}
    for node in found:
        if node["index"] > count:
            continue
        for field, value in (node.get("flags") or {}).items():
            if value != conduit.get(field) and field not in out.get(node["index"], {}):
                out.setdefault(node["index"], {})[field] = value
    return out


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
    # The settings file first; else what the first node runs with (bash-manager defaults
    # differ from the tool's, so leaving them out would change every node).
    first = next((n.get("flags") or {} for n in found), {})
    if _number(v.get("MAX_CLIENTS")) is not None:
        conduit["max_clients"] = int(_number(v["MAX_CLIENTS"]))
    elif "max_clients" in first:
        conduit["max_clients"] = first["max_clients"]
    if _number(v.get("BANDWIDTH")) is not None:
        conduit["bandwidth_mbps"] = _whole(_number(v["BANDWIDTH"]))
    elif "bandwidth_mbps" in first:
        conduit["bandwidth_mbps"] = first["bandwidth_mbps"]
    return conduit


def _budget(v: dict[str, str], warnings: list[str]) -> dict | None:
    """The managers' DATA_CAP_GB counted the host's interface, all nodes together, by the month:
    spec.budget is that cap (a per-node conduit.data_cap would multiply it by the node count)."""
    cap = _number(v.get("DATA_CAP_GB"))
    if not cap or cap <= 0:
        return None
    days = _number(v.get("DATA_CAP_PERIOD_DAYS"))
    if days and int(days) != 30:
        warnings.append(f"DATA_CAP_PERIOD_DAYS={v['DATA_CAP_PERIOD_DAYS']}: spec.budget counts by the calendar month")
    return {"monthly_gb": _whole(cap), "action": "stop"}


def _flag(v: dict[str, str], key: str) -> bool:
    return v.get(key, "").lower() in ("true", "1", "yes")


def _bot(v: dict[str, str]) -> dict | None:
    """The managers' bot (TELEGRAM_ENABLED) and its report settings, as alerts.telegram.bot."""
    if not _flag(v, "TELEGRAM_ENABLED"):
        return None
    reports: dict = {"daily": _flag(v, "TELEGRAM_DAILY_SUMMARY"), "weekly": _flag(v, "TELEGRAM_WEEKLY_SUMMARY")}
    every, start = _number(v.get("TELEGRAM_INTERVAL")), _number(v.get("TELEGRAM_START_HOUR"))
    if every and 1 <= every <= 24:
        reports["every_hours"] = int(every)
    if start is not None and 0 <= start <= 23:
        reports["start_hour"] = int(start)
    return {"poll": True, "reports": reports}


def secret_files(cluster: str, secrets_dir: Path) -> tuple[Path, Path]:
    """The cluster's own Telegram token and chat id files (another cluster's are never touched)."""
    return secrets_dir / f"{cluster}-telegram-token", secrets_dir / f"{cluster}-telegram-chat"


def _telegram(v: dict[str, str], secrets_dir: Path | None, cluster: str) -> dict | None:
    """The spec's Telegram alerts, naming the files write_secrets puts the token and chat id in."""
    if not (v.get("TELEGRAM_BOT_TOKEN") and v.get("TELEGRAM_CHAT_ID")):
        return None
    if secrets_dir is None:
        raise ImportRefused(
            "the host policy allows secret files nowhere (secrets.file_dirs is empty), so the Telegram "
            "bot token cannot be carried over; add a directory to secrets.file_dirs and run import-v1 again"
        )
    token, chat = secret_files(cluster, secrets_dir)
    telegram = {"bot_token": {"file": str(token)}, "chat_id": {"file": str(chat)}}
    if v.get("TELEGRAM_SERVER_LABEL"):
        telegram["server_label"] = v["TELEGRAM_SERVER_LABEL"]
    return telegram


def telegram_secrets(settings: Settings, cluster: str, secrets_dir: Path | None) -> dict[Path, str]:
    """The secret files the spec names, with their content; empty when there is no bot."""
    v = settings.values
    if secrets_dir is None or not (v.get("TELEGRAM_BOT_TOKEN") and v.get("TELEGRAM_CHAT_ID")):
        return {}
    token, chat = secret_files(cluster, secrets_dir)
    return {token: v["TELEGRAM_BOT_TOKEN"] + "\n", chat: v["TELEGRAM_CHAT_ID"] + "\n"}


def write_secrets(files: dict[Path, str], replace: bool) -> None:
    """Each file 0600 in a 0700 directory; a file already there with another value is kept
    unless `replace` (ImportRefused). Secrets are never named in the message, only their files."""
    for path, text in files.items():
        try:
            current = path.read_text()
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise ImportRefused(f"{path}: cannot read: {exc.strerror}; check the directory and run import-v1 again") from None
        if current not in (None, text) and not replace:
            raise ImportRefused(f"{path} exists with another value; remove it or run import-v1 with --force to replace it")
    for path, text in files.items():
        private_dir(path.parent)
        atomic_write(path, text)


def render(spec: dict, source: str) -> str:
    head = (
        f"# yaml-language-server: $schema={COMMITTED}\n"
        f"# Written by `conduit import-v1` from {source} and the containers on this host.\n"
        "# It adopts them: same names, same volumes, so every node keeps its key.\n"
    )
    return head + yaml.safe_dump(spec, sort_keys=False)
