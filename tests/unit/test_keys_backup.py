"""Key backup and restore through volume mountpoints, against a fake engine (directories as volumes)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import docker.errors
import pytest

from conduit.errors import HostileEntry, KeyProblem
from conduit.drivers.keys import backup, read_backup, restore
from tests.unit.test_keyfile import PUBLIC, RAW_B64, SEED, key_file

COMPARTMENT = json.dumps({"id": base64.b64encode(bytes(range(32))).decode().rstrip("=")}, indent=2).encode()


class FakeApi:
    def __init__(self, root: Path):
        self.root = root

    def inspect_volume(self, name):
        path = self.root / name
        if not path.is_dir():
            raise docker.errors.NotFound(f"no such volume {name}")
        return {"Mountpoint": str(path)}

    def volumes(self, filters=None):
        return {"Volumes": [{"Name": p.name} for p in self.root.iterdir() if p.name == (filters or {}).get("name", p.name)]}

    def create_volume(self, name, labels=None):
        (self.root / name).mkdir(exist_ok=True)  # as Docker's: a volume of that name is answered as it is


class FakeClient:
    base_url = "unix:///fake"

    def __init__(self, root: Path):
        self.api = FakeApi(root)


@pytest.fixture
def engine(tmp_path):
    root = tmp_path / "volumes"
    root.mkdir()
    for name in ("n-data", "n-data-2"):
        (root / name).mkdir()
    (root / "n-data" / "conduit_key.json").write_bytes(key_file())
    (root / "n-data" / "personal_compartment.json").write_bytes(COMPARTMENT)
    (root / "n-data-2" / "conduit_key.json").write_bytes(key_file(RAW_B64 + "=="))
    return FakeClient(root)


def test_backup_carries_the_personal_compartment_in_the_manifest(engine, tmp_path):
    sums = backup(engine, ["n-data", "n-data-2", "n-data-3"], tmp_path / "b")
    assert sorted(sums) == ["n-data", "n-data-2"]
    manifest = (tmp_path / "b" / "SHA256SUMS").read_text().splitlines()
    assert [line.split("  ")[1] for line in manifest] == [
        "n-data-2.conduit_key.json", "n-data.conduit_key.json", "n-data.personal_compartment.json",
    ]  # fmt: skip
    assert read_backup(tmp_path / "b")["n-data"] == {"conduit_key.json": key_file(), "personal_compartment.json": COMPARTMENT}


def test_restore_puts_both_files_back(engine, tmp_path):
    backup(engine, ["n-data"], tmp_path / "b")
    target = engine.api.root / "n-data"
    (target / "conduit_key.json").unlink()
    (target / "personal_compartment.json").unlink()
    assert restore(engine, tmp_path / "b", "n") == ["n-data"]
    assert (target / "conduit_key.json").read_bytes() == key_file()
    assert (target / "personal_compartment.json").read_bytes() == COMPARTMENT
    assert (target / "personal_compartment.json").stat().st_mode & 0o777 == 0o600


def _rewrite(folder: Path, name: str, data: bytes) -> None:
    """Change a backed-up file and its manifest line, as a hand-edited backup would be."""
    import hashlib

    (folder / name).write_bytes(data)
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}" if line.endswith(f"  {name}") else line for line in (folder / "SHA256SUMS").read_text().splitlines()]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("n-data.conduit_key.json", b'{"mnemonic": "a b c", "privateKeyBase64": "QUJD"}', "not a valid Conduit key (privateKeyBase64 holds 3 bytes, not 64)"),
        ("n-data.conduit_key.json", b"not json", "not a valid Conduit key (it is not JSON"),
        ("n-data.personal_compartment.json", b'{"id": "short"}', "not a valid personal compartment"),
    ],
)
def test_restore_refuses_a_file_the_node_would_not_keep_and_writes_nothing(engine, tmp_path, name, content, message):
    backup(engine, ["n-data", "n-data-2"], tmp_path / "b")
    for volume in ("n-data", "n-data-2"):
        (engine.api.root / volume / "conduit_key.json").unlink()
    _rewrite(tmp_path / "b", name, content)
    with pytest.raises(KeyProblem) as caught:
        restore(engine, tmp_path / "b", "n")
    text = str(caught.value)
    assert "\n" not in text and text.startswith(str(tmp_path / "b" / name)) and message in text
    assert not (engine.api.root / "n-data-2" / "conduit_key.json").exists()  # nothing was written


def test_the_same_key_in_another_layout_is_not_a_different_key(engine, tmp_path):
    backup(engine, ["n-data-2"], tmp_path / "b")
    (engine.api.root / "n-data-2" / "conduit_key.json").write_bytes(key_file())  # unpadded now: same key
    assert restore(engine, tmp_path / "b", "n") == ["n-data-2"]
    other = key_file(base64.b64encode(bytes(32) + PUBLIC).decode().rstrip("="))
    (engine.api.root / "n-data-2" / "conduit_key.json").write_bytes(other)
    with pytest.raises(KeyProblem, match="holds a different key"):
        restore(engine, tmp_path / "b", "n")
    assert SEED  # the backup's key is the RFC 8032 pair


def test_a_planted_link_is_left_out_of_the_backup_and_the_rest_is_kept(engine, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"host data")
    (engine.api.root / "n-data" / "personal_compartment.json").unlink()
    (engine.api.root / "n-data" / "personal_compartment.json").symlink_to(secret)
    with pytest.raises(HostileEntry) as caught:
        backup(engine, ["n-data", "n-data-2"], tmp_path / "b", {"n-data": "n-1"})
    assert (caught.value.node, caught.value.name, caught.value.what) == ("n-1", "personal_compartment.json", "a link")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["SHA256SUMS", "n-data-2.conduit_key.json"]
    assert b"host data" not in b"".join(p.read_bytes() for p in (tmp_path / "b").iterdir())


def test_restore_refuses_a_dangling_key_link_and_follows_no_planted_temporary_file(engine, tmp_path):
    """The node leaves its key as a dangling link and plants the tool's temporary name as a link to a host file."""
    backup(engine, ["n-data"], tmp_path / "b")
    secret = tmp_path / "secret"
    secret.write_bytes(b"host data")
    os.chmod(secret, 0o600)
    target = engine.api.root / "n-data"
    (target / "conduit_key.json").unlink()
    (target / "conduit_key.json").symlink_to(tmp_path / "nowhere")
    (target / ".conduit_key.json.restore").symlink_to(secret)
    with pytest.raises(HostileEntry, match="planted a link at conduit_key.json"):
        restore(engine, tmp_path / "b", "n", force=True)
    assert secret.read_bytes() == b"host data" and (secret.stat().st_uid, secret.stat().st_mode & 0o777) == (0, 0o600)
    assert not (tmp_path / "nowhere").exists()
