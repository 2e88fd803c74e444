"""Git, where the spec's history lives: the revision a spec file is at, a committed version of it,
and the bare mirror `conduit watch --git` follows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conduit.drivers.files import private_dir
from conduit.drivers.programs import not_installed


class GitError(Exception):
    pass


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def public_url(text: str) -> str:
    """`text` with the user and password of every URL in it left out (https://***@host/repo)."""
    return _USERINFO.sub("***@", text)


def _git(*args: str) -> str:
    try:
        # umask 077: the mirror lives in the private state directory and stays private
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=120, umask=0o077)
    except FileNotFoundError:
        raise GitError(not_installed("git")) from None
    if done.returncode != 0:
        raise GitError(public_url(f"git {args[0]} failed: {' '.join(done.stderr.split())[:300]}"))
    return done.stdout


def fetch(url: str, ref: str, checkout: Path) -> str:
    """The commit `ref` points at in `url`, fetched into a bare mirror under the state dir."""
    if not (checkout / "HEAD").exists():
        private_dir(checkout.parent)
        _git("init", "--bare", "-q", str(checkout))
    _git("-C", str(checkout), "fetch", "-q", "--no-tags", url, f"+{ref}:refs/conduit/watched")
    return _git("-C", str(checkout), "rev-parse", "refs/conduit/watched").strip()


def show(checkout: Path, sha: str, path: str) -> str:
    return _git("-C", str(checkout), "show", f"{sha}:{path.lstrip('/')}")


def show_committed(ref: str, file: str) -> str:
    """FILE as committed at REF in the work tree it lives in (`conduit diff --git-ref`)."""
    path = Path(file).resolve()
    try:
        top = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        rel = path.relative_to(top)
        return subprocess.run(
            ["git", "-C", top, "show", f"{ref}:{rel.as_posix()}"], capture_output=True, text=True, check=True
        ).stdout
    except FileNotFoundError:
        raise GitError(not_installed("git")) from None
    except subprocess.CalledProcessError as exc:
        raise GitError(f"git could not show {ref}:{file}: {(exc.stderr or '').strip().splitlines()[-1:] or ['failed']}") from None


def git_revision(path: str | None) -> tuple[str | None, bool | None]:
    """(commit, dirty) when the spec lives in a git work tree."""
    if not path:
        return None, None
    folder = str(Path(path).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--", str(Path(path).resolve())],
            capture_output=True, text=True, timeout=10,
        )
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
