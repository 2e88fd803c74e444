"""Whoever may push to a followed repository chooses what a fetch writes under the state directory:
a fetch writes at most the host policy's git.max_fetch (one pack, under a file size limit), and a
fetch stopped at it leaves nothing half-written behind, however often it is tried."""

from __future__ import annotations

import os
import subprocess

import pytest

from conduit.drivers.observe import HostAccess
from conduit.errors import GitError
from conduit.features.follow import Follower, Target
from conduit.features.watch import Watcher
from conduit.state.git import fetch
from tests.helpers import EXAMPLE, SMALL_VPS

MIB = 1 << 20


@pytest.fixture
def repo(tmp_path):
    """A repository whose one commit carries the example spec and 3 MiB that do not compress."""
    work = tmp_path / "repo"
    work.mkdir()
    (work / "cluster.yaml").write_text(EXAMPLE.read_text())
    (work / "video.bin").write_bytes(os.urandom(3 * MIB))
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@b", GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@b")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "spec and a video"]):
        subprocess.run(["git", "-C", str(work), *args], check=True, env=env)
    return work


def size(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_a_fetch_over_the_limit_stops_in_one_line_and_leaves_nothing_behind(repo, tmp_path):
    mirror = tmp_path / "mirror"
    said = (f"git fetch of {repo} stopped: what it brings (the new commits; at the first fetch, the whole history) takes "
            "more than 1 MiB, the host policy's git.max_fetch; make the commit smaller, or raise max_fetch")
    for poll in range(3):  # each poll tries again; the same commit is not downloaded again
        with pytest.raises(GitError) as info:
            fetch(str(repo), "main", mirror, most=MIB)
        assert str(info.value) == said + ("" if poll == 0 else " (the same commit as before: not fetched again)")
    assert size(mirror) < MIB
    sha = fetch(str(repo), "main", mirror, most=8 * MIB)
    assert sha == subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_the_follower_fetches_under_the_host_policys_max_fetch(repo, tmp_path, monkeypatch):
    policy = tmp_path / "host.yaml"
    policy.write_text("git: {max_fetch: 1m}\n")
    policy.chmod(0o600)
    monkeypatch.setenv("CONDUIT_POLICY", str(policy))
    watcher = Watcher(HostAccess(tmp_path / "root", tmp_path / "state", "unix:///nonexistent.sock"), lambda: SMALL_VPS)
    with pytest.raises(GitError, match="takes more than 1 MiB, the host policy's git.max_fetch"):
        Follower(watcher, Target(str(repo))).resolve()
    policy.write_text("git: {max_fetch: 8m}\n")
    assert Follower(watcher, Target(str(repo))).resolve().text is not None


def test_a_fetch_that_fails_for_another_reason_says_so_and_leaves_other_half_written_files_alone(repo, tmp_path):
    """Only what this fetch left is its own: a pack another git process is still writing stays."""
    mirror = tmp_path / "mirror"
    fetch(str(repo), "main", mirror, most=8 * MIB)
    other = mirror / "objects" / "pack" / "tmp_pack_other"
    other.write_bytes(b"x" * (2 * MIB))
    with pytest.raises(GitError) as info:
        fetch(str(tmp_path / "absent"), "main", mirror, most=MIB)
    assert str(info.value).startswith("git fetch failed: ") and "max_fetch" not in str(info.value)
    assert other.exists()


def test_a_new_commit_after_a_refused_one_is_fetched(tmp_path):
    work, mirror = tmp_path / "repo", tmp_path / "mirror"
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@b", GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@b")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(work), *args], check=True, env=env, capture_output=True, text=True).stdout.strip()

    work.mkdir()
    (work / "cluster.yaml").write_text(EXAMPLE.read_text())
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "spec")
    base = git("rev-parse", "HEAD")
    assert fetch(str(work), "main", mirror, most=MIB) == base
    (work / "video.bin").write_bytes(os.urandom(3 * MIB))
    git("add", ".")
    git("commit", "-qm", "a video")
    with pytest.raises(GitError, match="takes more than 1 MiB"):
        fetch(str(work), "main", mirror, most=MIB)
    git("reset", "-q", "--hard", base)  # the video's commit is taken back, and a small one pushed
    (work / "cluster.yaml").write_text(EXAMPLE.read_text() + "# fixed\n")
    git("commit", "-qam", "spec, fixed")
    assert fetch(str(work), "main", mirror, most=MIB) == git("rev-parse", "HEAD")
