"""A commit is written by whoever may push: a spec file of a gigabyte (a few KiB once git has
compressed it) is refused from git's header, never read into the watcher's memory; what is read
after it is read as before."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

from conduit.features.follow import merged_spec
from conduit.spec.load import MAX_BYTES
from conduit.state.git import CommitFiles
from tests.helpers import SMALL_VPS

HUGE = 64 << 20  # 64 MiB of comment: 64 times what a spec may be


def git(*argv: str, cwd: Path) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit_with_huge_spec(tmp_path: Path) -> tuple[Path, str]:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    with open(work / "huge.yaml", "wb") as f:
        for _ in range(HUGE >> 20):
            f.write(b"#" * (1 << 20))
    (work / "cluster.yaml").write_text("metadata: {name: edge}\n")
    git("add", "-A", cwd=work)
    git("-c", "user.name=x", "-c", "user.email=x@example.net", "-c", "commit.gpgsign=false", "commit", "-qm", "big", cwd=work)
    return work, git("rev-parse", "HEAD", cwd=work)


def test_a_huge_spec_in_a_commit_is_refused_without_reading_it(tmp_path):
    work, sha = commit_with_huge_spec(tmp_path)
    tracemalloc.start()
    try:
        with CommitFiles.in_mirror(work, sha) as files:
            text, problems = merged_spec(files, sha, "huge.yaml", SMALL_VPS)
            after = files.read("cluster.yaml", MAX_BYTES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert text is None
    assert len(problems) == 1 and "huge.yaml" in problems[0] and "larger than 1024 KiB" in problems[0], problems
    assert after == b"metadata: {name: edge}\n"  # git's pipe was not left holding the refused file
    assert peak < 8 << 20, f"{peak} bytes held at once"
