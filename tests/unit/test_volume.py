"""A node's volume, never followed (conduit.drivers.volume), against a real directory.

The volume is a tmp directory owned by a stand-in node uid; the host file the planted entries
aim at is a root-owned 0600 canary outside it, whose content, owner and mode are checked after.
"""

from __future__ import annotations

import os
import stat
import string
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.errors import HostileEntry
from conduit.drivers.volume import IDENTITY_LIMIT, Volume, plain_name, read_entry

NODE_UID = 1000
SECRET = b"host secret, not the node's\n"


@pytest.fixture
def canary(tmp_path) -> Path:
    path = tmp_path / "host" / "secret"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    os.chmod(path, 0o600)
    return path


def untouched(path: Path) -> None:
    info = path.stat()
    assert path.read_bytes() == SECRET
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "volumes" / "n-data" / "_data"
    path.mkdir(parents=True)
    os.chown(path, NODE_UID, NODE_UID)
    return path


def test_a_regular_file_is_read_and_an_absent_one_is_none(folder):
    (folder / "conduit_key.json").write_bytes(b"{}")
    assert read_entry(folder, "n-data", "conduit_key.json", IDENTITY_LIMIT) == b"{}"
    assert read_entry(folder, "n-data", "stats.json", IDENTITY_LIMIT) is None


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_is_refused_naming_node_and_file(folder, canary, dangling):
    target = canary.parent / "gone" if dangling else canary
    (folder / "conduit_key.json").symlink_to(target)
    with pytest.raises(HostileEntry) as caught:
        read_entry(folder, "n-data", "conduit_key.json", IDENTITY_LIMIT, node="n-3")
    assert str(caught.value) == (
        "node n-3 planted a link at conduit_key.json in its volume: it may be compromised; "
        "inspect the volume, then restore its key from a backup"
    )
    assert caught.value.alert == "node n-3 planted a link (conduit_key.json in its volume): it may be compromised"
    untouched(canary)


def test_a_fifo_is_refused_without_blocking(folder):
    os.mkfifo(folder / "conduit_key.json")
    done = []
    reader = threading.Thread(target=lambda: done.append(_refused(folder, "conduit_key.json")), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert done == ["a FIFO"]


def _refused(folder: Path, name: str, limit: int = IDENTITY_LIMIT) -> str | None:
    try:
        read_entry(folder, "n-data", name, limit)
    except HostileEntry as exc:
        return exc.what
    return None


def test_a_directory_in_place_of_a_file_is_refused(folder):
    (folder / "personal_compartment.json").mkdir()
    assert _refused(folder, "personal_compartment.json") == "a directory"


def test_a_socket_is_refused(folder):
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "stats.json"))
        assert _refused(folder, "stats.json") == "a socket"


def test_an_oversized_file_is_refused_without_reading_it(folder):
    with open(folder / "stats.json", "wb") as f:
        f.truncate(1 << 30)  # sparse: reading it all would take a gigabyte
    assert _refused(folder, "stats.json", 1 << 20) == "an oversized file (1073741824 bytes; at most 1048576 expected)"


def test_a_hard_link_is_refused_on_read(folder, canary):
    os.link(canary, folder / "conduit_key.json")  # same filesystem here: what protected_hardlinks would allow
    assert _refused(folder, "conduit_key.json") == "a hard link (2 names for one file)"
    untouched(canary)


def test_a_write_replaces_the_name_owned_by_the_volume_owner(folder):
    with Volume(folder, "n-data") as vol:
        vol.write("conduit_key.json", b"new")
    info = (folder / "conduit_key.json").stat()
    assert (folder / "conduit_key.json").read_bytes() == b"new"
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NODE_UID, NODE_UID, 0o600)
    assert sorted(os.listdir(folder)) == ["conduit_key.json"]


def test_a_write_over_a_hard_link_never_writes_the_linked_file(folder, canary):
    """The rename replaces the name: the inode behind a hard link keeps its content and owner."""
    os.link(canary, folder / "conduit_key.json")
    with Volume(folder, "n-data") as vol:
        vol.write("conduit_key.json", b"new")
    assert (folder / "conduit_key.json").read_bytes() == b"new"
    untouched(canary)


def test_a_planted_temporary_link_is_removed_never_followed(folder, canary):
    (folder / ".conduit_key.json.restore").symlink_to(canary)
    with Volume(folder, "n-data") as vol:
        vol.write("conduit_key.json", b"new")
    untouched(canary)
    assert (folder / "conduit_key.json").read_bytes() == b"new" and not (folder / "conduit_key.json").is_symlink()


def test_a_planted_temporary_directory_is_refused(folder):
    (folder / ".conduit_key.json.restore").mkdir()
    with pytest.raises(HostileEntry) as caught, Volume(folder, "n-data") as vol:
        vol.write("conduit_key.json", b"new")
    assert (caught.value.name, caught.value.what) == (".conduit_key.json.restore", "a directory")
    assert not (folder / "conduit_key.json").exists()


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_at_the_target_is_refused_not_replaced(folder, canary, dangling):
    (folder / "conduit_key.json").symlink_to(canary.parent / "gone" if dangling else canary)
    with pytest.raises(HostileEntry), Volume(folder, "n-data") as vol:
        vol.write("conduit_key.json", b"new")
    untouched(canary)
    assert (folder / "conduit_key.json").is_symlink() and not (canary.parent / "gone").exists()


def test_a_volume_directory_that_is_a_link_is_refused(tmp_path, folder):
    link = tmp_path / "volumes" / "other" / "_data"
    link.parent.mkdir()
    link.symlink_to(folder)
    with pytest.raises(HostileEntry):
        Volume(link, "other")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\0b"])
def test_only_plain_names_are_asked_for(name):
    with pytest.raises(ValueError):
        plain_name(name)


KINDS = ("absent", "file", "big", "link", "dangling", "fifo", "dir", "hardlink")
NAMES = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=30).filter(lambda n: n not in (".", ".."))


def _plant(folder: Path, name: str, kind: str, canary: Path) -> None:
    path = folder / name
    if kind == "file":
        path.write_bytes(b"ok")
    elif kind == "big":
        path.write_bytes(b"x" * 200)
    elif kind == "link":
        path.symlink_to(canary)
    elif kind == "dangling":
        path.symlink_to(canary.parent / "nothing")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "hardlink":
        os.link(canary, path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(NAMES, st.sampled_from(KINDS), min_size=1, max_size=5), data=st.data())
def test_only_small_regular_files_are_ever_read_and_no_host_file_changes(tmp_path_factory, entries, data):
    """Whatever a node leaves under whatever names: a read gives a small regular file's bytes,
    None, or a HostileEntry naming that entry; a write lands as a new file or is refused; the
    host file is never read, written or chowned."""
    base = tmp_path_factory.mktemp("prop")
    canary = base / "secret"
    canary.write_bytes(SECRET)
    os.chmod(canary, 0o600)
    folder = base / "_data"
    folder.mkdir()
    os.chown(folder, NODE_UID, NODE_UID)
    for name, kind in entries.items():
        _plant(folder, name, kind, canary)
    name = data.draw(st.sampled_from(sorted(entries)))
    kind = entries[name]
    with Volume(folder, "n-data", "n-1") as vol:
        try:
            got = vol.read(name, 100)
        except HostileEntry as exc:
            assert kind in ("big", "link", "dangling", "fifo", "dir", "hardlink") and exc.name == name
        else:
            assert (kind, got) in (("absent", None), ("file", b"ok"))
        try:
            vol.write(name, b"written")
        except HostileEntry as exc:
            assert kind in ("link", "dangling", "fifo", "dir") or exc.name == f".{name}.restore"
        else:
            assert (folder / name).read_bytes() == b"written" and (folder / name).stat().st_uid == NODE_UID
    untouched(canary)
    assert not (canary.parent / "nothing").exists()
