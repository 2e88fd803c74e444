"""The spec file itself is read as its bases are (conduit.spec.compose.Directory): in a git work
tree that others push to, a spec that is a link out of the repository is refused without reading
what it points at (its lines would come back as "unknown field" errors, to every viewer of the
watcher's record); a spec that is not a regular file, or is far too big, is refused without
reading it all."""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from conduit.errors import SpecError
from conduit.spec.load import read_spec_text

SECRET = "root:$y$j9T$notforanyone:19000:0:99999:7:::\n"


@pytest.fixture
def repo(tmp_path) -> Path:
    work = tmp_path / "fleet"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return work


def refusal(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        read_spec_text(path)
    return str(caught.value)


def test_a_spec_linked_out_of_its_repository_is_refused_unread(repo, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    (repo / "cluster.yaml").symlink_to(secret)
    said = refusal(repo / "cluster.yaml")
    assert "notforanyone" not in said and "19000" not in said
    assert said == f"{repo / 'cluster.yaml'}:1:1: is a link to {secret}, outside {repo}; a spec must live inside it"


def test_a_link_inside_the_repository_and_a_link_to_a_repository_are_read(repo, tmp_path):
    (repo / "hosts").mkdir()
    (repo / "hosts" / "a.yaml").write_text("metadata: {name: a}\n")
    (repo / "cluster.yaml").symlink_to("hosts/a.yaml")
    assert read_spec_text(repo / "cluster.yaml") == "metadata: {name: a}\n"
    operators = tmp_path / "etc"
    operators.mkdir()
    (operators / "cluster.yaml").symlink_to(repo / "hosts" / "a.yaml")  # root's own link, outside any repository
    assert read_spec_text(operators / "cluster.yaml") == "metadata: {name: a}\n"


def test_a_device_is_not_a_spec(repo):
    (repo / "cluster.yaml").symlink_to(os.devnull)
    said = refusal(repo / "cluster.yaml")
    assert said.endswith(f"is a link to {os.devnull}, outside {repo}; a spec must live inside it")
    assert refusal(Path(os.devnull)) == f"{os.devnull}:1:1: is not a regular file"


def test_a_huge_spec_is_refused_without_reading_it_all(repo):
    huge = repo / "cluster.yaml"
    with open(huge, "wb") as f:
        f.truncate(256 << 20)  # sparse: no disk, 256 MiB to read
    tracemalloc.start()
    try:
        said = refusal(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert said.endswith("file is larger than 1024 KiB; not a spec")
    assert peak < 8 << 20, f"{peak} bytes held at once"


def test_a_directory_is_not_a_spec_and_leaves_no_descriptor_open(repo):
    (repo / "cluster.yaml").mkdir()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        assert refusal(repo / "cluster.yaml") == f"{repo / 'cluster.yaml'}:1:1: is not a regular file"
    assert len(os.listdir("/proc/self/fd")) == before
