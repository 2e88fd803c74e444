"""Node keys: conduit_key.json at the root of each data volume is the node's reputation.

Keys are read and written through the volume's mountpoint on the engine's host, so a
container need not run. Backups are one file per volume (0600) plus a SHA256SUMS manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import docker.errors

from conduit.reconciler.drivers.docker import CountingClient, call, create_volume
from conduit.reconciler.files import atomic_write

KEY_FILE = "conduit_key.json"
MANIFEST = "SHA256SUMS"


class KeyProblem(Exception):
    """A key operation that must not go ahead; the message is one line."""


def volume_dir(client: CountingClient, volume: str) -> Path | None:
    try:
        info = client.api.inspect_volume(volume)
    except docker.errors.NotFound:
        return None
    except docker.errors.DockerException as exc:
        raise KeyProblem(f"cannot inspect volume {volume}: {exc}") from None
    mountpoint = Path(info["Mountpoint"])
    if not mountpoint.is_dir():
        raise KeyProblem(f"volume {volume} is not readable here ({mountpoint}); run on the engine's host as root")
    return mountpoint


def read_key(client: CountingClient, volume: str) -> bytes | None:
    folder = volume_dir(client, volume)
    if folder is None:
        return None
    try:
        return (folder / KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None


def backup(client: CountingClient, volumes: list[str], dest: Path) -> dict[str, str]:
    """Copy every volume's key into dest; returns {volume: sha256}. Volumes without a key are skipped."""
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    sums: dict[str, str] = {}
    for volume in volumes:
        key = read_key(client, volume)
        if key is None:
            continue
        atomic_write(dest / f"{volume}.{KEY_FILE}", key, mode=0o600)
        sums[volume] = hashlib.sha256(key).hexdigest()
    manifest = "".join(f"{digest}  {volume}.{KEY_FILE}\n" for volume, digest in sorted(sums.items()))
    atomic_write(dest / MANIFEST, manifest, mode=0o600)
    return sums


def read_backup(src: Path) -> dict[str, bytes]:
    """{volume: key bytes} from a backup directory, each checked against the manifest."""
    try:
        lines = (src / MANIFEST).read_text().splitlines()
    except OSError as exc:
        raise KeyProblem(f"{src}: no {MANIFEST} ({exc.strerror})") from None
    keys: dict[str, bytes] = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if not name.endswith(f".{KEY_FILE}"):
            continue
        data = (src / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise KeyProblem(f"{src / name} does not match its checksum in {MANIFEST}")
        keys[name[: -len(KEY_FILE) - 1]] = data
    return keys


def restore(client: CountingClient, src: Path, cluster: str, force: bool = False, only: set[str] | None = None) -> list[str]:
    """Put backed-up keys into their volumes; refuse to replace a different key unless forced."""
    keys = read_backup(src)
    if only is not None:
        keys = {v: k for v, k in keys.items() if v in only}
    # Check every volume before writing any, so a refusal changes nothing.
    for volume, key in keys.items():
        existing = read_key(client, volume)
        if existing is not None and existing != key and not force:
            raise KeyProblem(f"volume {volume} holds a different key; restoring would replace that node's identity (use --force)")
    restored = []
    for volume, key in sorted(keys.items()):
        create_volume(client, volume, cluster)
        folder = volume_dir(client, volume)
        target = folder / KEY_FILE
        tmp = folder / f".{KEY_FILE}.restore"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        owner = folder.stat()
        os.chown(tmp, owner.st_uid, owner.st_gid)  # the node's user owns its data dir
        os.replace(tmp, target)
        restored.append(volume)
    return restored


def automatic_backup(client: CountingClient, volumes: list[str], state_dir: Path, generation: int) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = state_dir / "key-backups" / f"{stamp}-gen{generation}"
    backup(client, volumes, dest)
    return dest


def claim_url(key_json: bytes, name: str) -> str:
    """The Ryve claim link for a node: it carries the private key, so it is a secret."""
    key = json.loads(key_json)["privateKeyBase64"]
    payload = json.dumps({"version": 1, "data": {"name": name, "key": key}}, separators=(",", ":"))
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"network.ryve.app://(app)/conduits?claim={encoded}"
