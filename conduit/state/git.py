"""Git, where the spec's history lives: the revision a spec file is at, a committed version of it,
and the bare mirror `conduit watch --git` follows."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import urllib.parse
from pathlib import Path

from conduit.drivers.files import private_dir
from conduit.drivers.programs import not_installed
from conduit.errors import GitError


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def public_url(text: str) -> str:
    """`text` with the user and password of every URL in it left out (https://***@host/repo)."""
    return _USERINFO.sub("***@", text)


def without_password(url: str) -> str:
    """The URL with its user and password left out when it has a password (what a unit file may say)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def credentials_env(url: str, path: Path | None) -> dict[str, str]:
    """What git needs in its environment to authenticate to `url` with the credentials in `path`,
    a root-only file of git-credential-store lines (`https://USER:TOKEN@host`). The header goes to
    git through its environment (readable by root alone), never its command line, and only to
    that host; the file is only read (git's own store helper would erase a line that failed once)."""
    if path is None:
        return {}
    target = urllib.parse.urlsplit(url)
    if target.scheme not in ("http", "https"):
        raise GitError(f"--git-credentials-file is for http(s) URLs; {public_url(url)} authenticates with an SSH key")
    line = _credentials_line(path, target)
    auth = base64.b64encode(f"{urllib.parse.unquote(line.username or '')}:{urllib.parse.unquote(line.password or '')}".encode()).decode()
    host = target.netloc.rpartition("@")[2]
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{target.scheme}://{host}/.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {auth}",
    }


def _credentials_line(path: Path, target: urllib.parse.SplitResult) -> urllib.parse.SplitResult:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o077:
            raise GitError(f"git credentials file {path}: must be a file owned by root and readable by no one else; chmod 600 {path}")
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GitError(f"git credentials file {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    host = target.netloc.rpartition("@")[2]
    for text in lines:
        entry = urllib.parse.urlsplit(text.strip())
        if entry.scheme == target.scheme and entry.netloc.rpartition("@")[2] == host and entry.password is not None:
            return entry
    raise GitError(f"git credentials file {path}: no line for {target.scheme}://{host}; add `{target.scheme}://USER:TOKEN@{host}`")


def _git(*args: str, env: dict[str, str] | None = None) -> str:
    try:
        # umask 077: the mirror lives in the private state directory and stays private
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=120, umask=0o077,
                              env={**os.environ, **env} if env else None)
    except FileNotFoundError:
        raise GitError(not_installed("git")) from None
    if done.returncode != 0:
        raise GitError(public_url(f"git {args[0]} failed: {' '.join(done.stderr.split())[:300]}"))
    return done.stdout


def fetch(url: str, ref: str, checkout: Path, credentials: Path | None = None) -> str:
    """The commit `ref` points at in `url`, fetched into a bare mirror under the state dir
    (authenticated with the credentials file, when one is named)."""
    env = credentials_env(url, credentials)
    if not (checkout / "HEAD").exists():
        private_dir(checkout.parent)
        _git("init", "--bare", "-q", str(checkout))
    _git("-C", str(checkout), "fetch", "-q", "--no-tags", url, f"+{ref}:refs/conduit/watched", env=env)
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
