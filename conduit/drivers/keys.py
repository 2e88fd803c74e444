"""Node keys: conduit_key.json at the root of each data volume is the node's reputation.

Keys are read and written through the volume's mountpoint on Docker's host, so a
container need not run; always through conduit.drivers.volume, which follows no link the node
planted there. Backups are one file per volume and identity file (0600: the key,
and the personal compartment of 2.0 nodes that have one) plus a SHA256SUMS manifest.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path


from conduit.drivers.docker import CountingClient, answers, call, create_volume
from conduit.drivers.dockerapi import failures, not_found
from conduit.facts.compartment import COMPARTMENT_FILE, parse_compartment
from conduit.drivers.files import atomic_write, private_dir
from conduit.errors import HostileEntry, KeyProblem
from conduit.drivers.volume import IDENTITY_LIMIT, Volume
from conduit.facts.keyfile import BadKey, check_key, claim_url, parse_key  # noqa: F401 - claim_url is part of this API

KEY_FILE = "conduit_key.json"
IDENTITY_FILES = (KEY_FILE, COMPARTMENT_FILE)  # what makes a node itself: backed up and restored together
MANIFEST = "SHA256SUMS"


def volume_dir(client: CountingClient, volume: str) -> Path | None:
    try:
        with answers(client):
            info = client.api.inspect_volume(volume)
    except not_found():
        return None
    except failures() as exc:
        raise KeyProblem(f"cannot inspect volume {volume}: {exc}") from None
    mountpoint = Path(info["Mountpoint"])
    if not mountpoint.is_dir():
        raise KeyProblem(f"volume {volume} is not readable here ({mountpoint}); run on Docker's host as root")
    return mountpoint


def read_file(client: CountingClient, volume: str, name: str = KEY_FILE, node: str | None = None) -> bytes | None:
    """A file at the root of a volume (the key, or the personal compartment), None when absent.

    HostileEntry (conduit.drivers.volume) when the node planted a link or anything but a small file there."""
    folder = volume_dir(client, volume)
    if folder is None:
        return None
    with Volume(folder, volume, node) as vol:
        return vol.read(name, IDENTITY_LIMIT)


def read_key(client: CountingClient, volume: str, node: str | None = None) -> bytes | None:
    return read_file(client, volume, KEY_FILE, node)


def backup(client: CountingClient, volumes: list[str], dest: Path, nodes: dict[str, str] | None = None) -> dict[str, str]:
    """Copy every volume's key (and personal compartment) into dest; returns {volume: key sha256}.

    Volumes without a key are skipped. Every copied file is listed in the SHA256SUMS manifest.
    `nodes` names the node of each volume, for the refusal. A volume whose node planted a link
    or a special file gives nothing of it to the backup; the others are still backed up, and then
    the first such HostileEntry is raised.
    """
    private_dir(dest)
    sums: dict[str, str] = {}
    listed: dict[str, str] = {}
    hostile: list[HostileEntry] = []
    for volume in volumes:
        try:
            files = _identity(client, volume, (nodes or {}).get(volume))
        except HostileEntry as exc:
            hostile.append(exc)
            continue
        if KEY_FILE not in files:
            continue
        sums[volume] = hashlib.sha256(files[KEY_FILE]).hexdigest()
        for name, data in files.items():
            atomic_write(dest / f"{volume}.{name}", data)
            listed[f"{volume}.{name}"] = hashlib.sha256(data).hexdigest()
    manifest = "".join(f"{digest}  {name}\n" for name, digest in sorted(listed.items()))
    atomic_write(dest / MANIFEST, manifest)
    if hostile:
        raise hostile[0]
    return sums


def _identity(client: CountingClient, volume: str, node: str | None) -> dict[str, bytes]:
    """{file name: bytes} of the identity files a volume holds, all read before any is kept."""
    folder = volume_dir(client, volume)
    if folder is None:
        return {}
    with Volume(folder, volume, node) as vol:
        found = {name: vol.read(name, IDENTITY_LIMIT) for name in IDENTITY_FILES}
    return {name: data for name, data in found.items() if data is not None}


def _split(name: str) -> tuple[str, str] | None:
    """'conduit-data.conduit_key.json' -> ('conduit-data', 'conduit_key.json')."""
    for kind in IDENTITY_FILES:
        if name.endswith(f".{kind}"):
            return name[: -len(kind) - 1], kind
    return None


def read_backup(src: Path) -> dict[str, dict[str, bytes]]:
    """{volume: {file name: bytes}} from a backup directory, each checked against the manifest."""
    try:
        lines = (src / MANIFEST).read_text().splitlines()
    except OSError as exc:
        raise KeyProblem(f"{src}: no {MANIFEST} ({exc.strerror})") from None
    found: dict[str, dict[str, bytes]] = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        parts = _split(name)
        if parts is None:
            continue
        try:
            data = (src / name).read_bytes()
        except OSError as exc:
            raise KeyProblem(f"{src / name}: cannot read ({exc.strerror})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise KeyProblem(f"{src / name} does not match its checksum in {MANIFEST}: it changed since the backup; "
                             "restore from another backup (key-backups/ in the state directory holds those made before replacements)")  # fmt: skip
        found.setdefault(parts[0], {})[parts[1]] = data
    return found


def check_identity(path: Path, name: str, data: bytes) -> None:
    """Refuse, in one line naming the file, what the node would not keep: it would lose its identity."""
    try:
        if name == KEY_FILE:
            check_key(data)
        else:
            parse_compartment(data)
    except BadKey as exc:
        if name == KEY_FILE:
            raise KeyProblem(f"{path}: not a valid Conduit key ({exc}); the node would replace it with a new key and lose its reputation") from None
        raise KeyProblem(f"{path}: not a valid personal compartment ({exc}); conduit start would refuse it") from None


def same_identity(name: str, old: bytes, new: bytes) -> bool:
    """The same key (or compartment), however the file is laid out."""
    parse = parse_key if name == KEY_FILE else parse_compartment
    try:
        return parse(old) == parse(new)
    except BadKey:
        return old == new


def restore(client: CountingClient, src: Path, cluster: str, force: bool = False, only: set[str] | None = None,
            nodes: dict[str, str] | None = None) -> list[str]:
    """Put backed-up keys (and compartments) into their volumes.

    Refuses a file the node would not keep, and a different identity already in a volume
    unless forced; every volume is checked before any is written, so a refusal changes nothing.
    """
    backed = read_backup(src)
    if only is not None:
        backed = {v: files for v, files in backed.items() if v in only}
    for volume, files in backed.items():
        for name, data in files.items():
            check_identity(src / f"{volume}.{name}", name, data)
            existing = read_file(client, volume, name, (nodes or {}).get(volume))
            if existing is not None and not same_identity(name, existing, data) and not force:
                what = "key; restoring would replace that node's identity" if name == KEY_FILE else "personal compartment; restoring would unpair its personal clients"
                raise KeyProblem(f"volume {volume} holds a different {what} (use --force)")
    restored = []
    for volume, files in sorted(backed.items()):
        create_volume(client, volume, cluster)
        with Volume(volume_dir(client, volume), volume, (nodes or {}).get(volume)) as vol:
            for name in sorted(files, key=lambda n: n != KEY_FILE):
                vol.write(name, files[name])
        restored.append(volume)
    return restored


def backup_dir(state_dir: Path, generation: int) -> Path:
    """Where an apply's key backup step copies the keys: one folder per generation."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return state_dir / "key-backups" / f"{stamp}-gen{generation}"
