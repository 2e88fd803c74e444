"""Git, where the spec's history lives: the revision a spec file is at, a committed version of it,
and the bare mirror `conduit watch --git` follows."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
import urllib.parse
from pathlib import Path

from conduit.drivers.files import atomic_write, private_dir, read_or_none
from conduit.drivers.programs import not_installed
from conduit.errors import GitError
from conduit.spec.units import human_size


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def public_url(text: str) -> str:
    """`text` with the user and password of every URL in it left out (https://***@host/repo)."""
    return _USERINFO.sub("***@", text)


def _http(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in ("http", "https")


def without_password(url: str) -> str:
    """The URL without its user and password when they may be a secret (what a unit file or git's
    command line may say): any user of an http(s) URL (a token alone is a user there), and any user
    with a password; an ssh URL's user (git@) stays."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and not (_http(url) and parts.username is not None):
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def credentials_env(url: str, path: Path | None) -> dict[str, str]:
    """What git needs in its environment to authenticate to `url` with the credentials in `path`,
    a root-only file of git-credential-store lines (`https://USER:TOKEN@host`), or else with the
    user and password the http(s) URL itself holds. The header goes to git through its environment
    (readable by root alone), never its command line, and only to that host; the file is only
    read (git's own store helper would erase a line that failed once)."""
    target = urllib.parse.urlsplit(url)
    if path is None:
        if not _http(url) or target.username is None:
            return {}
        if target.password is None:  # a user alone: git asks its credential helpers for the password, as for the URL itself
            return _config(f"credential.{target.scheme}://{_host(target)}.username", urllib.parse.unquote(target.username))
        return _header(target, target)
    if target.scheme not in ("http", "https"):
        raise GitError(f"--git-credentials-file is for http(s) URLs; {public_url(url)} authenticates with an SSH key")
    return _header(target, _credentials_line(path, target))


def _host(target: urllib.parse.SplitResult) -> str:
    return target.netloc.rpartition("@")[2]


def _config(key: str, value: str) -> dict[str, str]:
    """One git setting through git's environment (readable by root alone), not its command line."""
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": key, "GIT_CONFIG_VALUE_0": value}


def _header(target: urllib.parse.SplitResult, line: urllib.parse.SplitResult) -> dict[str, str]:
    auth = base64.b64encode(f"{urllib.parse.unquote(line.username or '')}:{urllib.parse.unquote(line.password or '')}".encode()).decode()
    return _config(f"http.{target.scheme}://{_host(target)}/.extraHeader", f"Authorization: Basic {auth}")


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


GIT_SECONDS = 120  # one git command, a fetch included


def _git(*args: str, env: dict[str, str] | None = None, limit: int | None = None) -> str:
    """git's output; `limit`: the largest file it may write, in bytes (util-linux's prlimit, which
    every Debian and Ubuntu has; set in git's own process, not this threaded one's)."""
    argv = ["git", *args]
    if limit is not None:  # prlimit runs git: a git it cannot find would be its error, not ours
        for program in ("git", "prlimit"):
            if shutil.which(program) is None:
                raise GitError(not_installed(program))
        argv = ["prlimit", f"--fsize={limit}", "--core=0", "--", *argv]
    # umask 077: the mirror lives in the private state directory and stays private
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=GIT_SECONDS, umask=0o077, env={**os.environ, **env} if env else None)
    except FileNotFoundError:
        raise GitError(not_installed("git")) from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {_command(args)} did not finish within {GIT_SECONDS} s; check the repository's address and the network") from None
    if done.returncode != 0:
        raise GitError(public_url(f"git {_command(args)} failed: {' '.join(done.stderr.split())[:300]}"))
    return done.stdout


def _command(args: tuple[str, ...]) -> str:
    """git's command among its arguments: the first past the -C DIR and -c KEY=VALUE options."""
    rest = list(args)
    while rest and rest[0] in ("-C", "-c"):
        rest = rest[2:]
    return rest[0] if rest else "git"


def fetch(url: str, ref: str, checkout: Path, credentials: Path | None = None, local: str = "watched", *, most: int) -> str:
    """The commit `ref` points at in `url`, fetched into a bare mirror under the state dir
    (authenticated with the credentials file, when one is named) as refs/conduit/`local`.

    Whoever may push to the repository chooses what a fetch writes: git keeps what it receives as
    one pack (fetch.unpackLimit 1, never loose objects) under a file size limit of `most` bytes
    (prlimit), and what a fetch stopped there left half-written is removed. The mirror's own
    housekeeping (gc) runs after it, without the limit: it repacks what is already here."""
    env = credentials_env(url, credentials)
    if not (checkout / "HEAD").exists():
        private_dir(checkout.parent)
        _git("init", "--bare", "-q", str(checkout))
    remote = without_password(url) if _http(url) else url  # its user and password went into env
    refused = checkout / f"too-big-{local}"  # the commit whose fetch was stopped at the limit, and the limit
    sha, _, limit = (read_or_none(refused) or "").partition(" ")
    if sha and limit.strip() == str(most) and sha in _tips(checkout, remote, ref, env):
        raise GitError(_too_big(url, most) + " (the same commit as before: not fetched again)")
    before = _partial_packs(checkout)
    try:
        _git("-C", str(checkout), "-c", "fetch.unpackLimit=1", "-c", "gc.auto=0", "-c", "maintenance.auto=false", "fetch", "-q",
             "--no-tags", "--end-of-options", remote, f"+{ref}:refs/conduit/{local}", env=env, limit=most)  # fmt: skip
    except GitError:
        left = [p for p in _partial_packs(checkout) if p not in before]
        largest = max((_drop(p) for p in left), default=0)
        if largest >= most:
            tips = _tips(checkout, remote, ref, env)
            if len(tips) == 1:  # remembered, so that each poll does not download it up to the limit again
                atomic_write(refused, f"{tips.pop()} {most}\n")
            raise GitError(_too_big(url, most)) from None
        raise
    refused.unlink(missing_ok=True)
    _git("-C", str(checkout), "gc", "--auto", "--quiet")
    return _git("-C", str(checkout), "rev-parse", f"refs/conduit/{local}").strip()


def _too_big(url: str, most: int) -> str:
    return (f"git fetch of {public_url(url)} stopped: what it brings (the new commits; at the first fetch, the whole history) "
            f"takes more than {human_size(most)}, the host policy's git.max_fetch; make the commit smaller, or raise max_fetch")


def _tips(checkout: Path, remote: str, ref: str, env: dict[str, str] | None) -> set[str]:
    """The commits `ref` names in the repository now (`git ls-remote`: no objects fetched)."""
    listed = _git("-C", str(checkout), "ls-remote", "--end-of-options", remote, ref, env=env)
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def _partial_packs(checkout: Path) -> set[Path]:
    return set((checkout / "objects" / "pack").glob("tmp_*"))


def _drop(partial: Path) -> int:
    """Remove what a stopped fetch left half-written (each later try would leave another); its size."""
    try:
        size = partial.lstat().st_size
        partial.unlink()
        return size
    except OSError:
        return 0


# Only SSH signatures count: gpg and x509 are pointed at `false`, so that no keyring of the machine
# can vouch for a commit; the allowed signers file alone says whose key may sign.
_NO_OTHER_SIGNERS = ("-c", "gpg.openpgp.program=false", "-c", "gpg.x509.program=false")


def signed_by(checkout: Path, sha: str, allowed_signers: Path) -> str | None:
    """The fingerprint of the allowed key that signed commit `sha`, or None when it is unsigned, badly
    signed, or signed by a key the allowed signers file does not list (`git verify-commit`)."""
    out = _git("-C", str(checkout), *_NO_OTHER_SIGNERS, "-c", f"gpg.ssh.allowedSignersFile={allowed_signers}",
               "log", "-1", "--format=%G?%x00%GK", sha, "--")  # fmt: skip
    verdict, _, key = out.strip().partition("\0")
    return key if verdict == "G" and key else None


def show_committed(ref: str, file: str, limit: int) -> str:
    """FILE as committed at REF in the work tree it lives in (`conduit diff --git-ref`, the agent of a
    host that follows git). GitError when it is not there, or is over `limit` bytes (unread then)."""
    path = Path(os.path.abspath(file))
    with CommitFiles(path.parent, ref) as files:
        raw = files.read(path.name, limit)
    if raw is None:
        raise GitError(f"{ref}:{file}: no such file in the commit")
    return raw.decode(errors="replace")


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


class CommitFiles:
    """The files of one commit of the repository a folder is in, read through one `git cat-file
    --batch` process however many are asked for (a fleet of a hundred hosts is one process)."""

    def __init__(self, folder: Path, ref: str):
        folder = Path(folder).resolve()
        self.top = Path(_git("-C", str(folder), "rev-parse", "--show-toplevel").strip())
        self.prefix = folder.relative_to(self.top).as_posix()
        try:
            self.commit = _git("-C", str(self.top), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}").strip()
        except GitError:
            raise GitError(f"{ref!r} is not a commit of the repository at {self.top}; name a branch, tag or commit") from None
        self._proc: subprocess.Popen | None = None

    @classmethod
    def in_mirror(cls, mirror: Path, commit: str, prefix: str = ".") -> CommitFiles:
        """The files of `commit` in a bare mirror (what `conduit watch --git` fetched), under `prefix`."""
        files = cls.__new__(cls)
        files.top, files.prefix, files.commit, files._proc = Path(mirror), prefix or ".", commit, None
        return files

    def path(self, rel: str) -> str:
        """`rel` (relative to the folder) relative to the repository's top."""
        return rel if self.prefix == "." else f"{self.prefix}/{rel}"

    def read(self, rel: str, limit: int) -> bytes | None:
        """The file's bytes at the commit, None when the commit has no such file. A symlink is
        followed inside the repository; one that leaves it is refused. A file over `limit` bytes
        is refused from git's header, before any of it is read: whoever may push writes it, and
        git compresses a gigabyte of one byte into a few KiB."""
        if "\n" in rel or "\r" in rel:
            raise GitError(f"{rel!r}: a path with a line break cannot be read from git")
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{self.commit}:{self.path(rel)}\n".encode())
        proc.stdin.flush()
        header = proc.stdout.readline().decode(errors="replace").split()
        if not header:
            raise GitError("git cat-file stopped answering; run again")
        if header[-1] == "missing":
            return None
        size = int(header[-1])
        if size > limit:
            self._stop()  # git is writing the whole file into the pipe: that git goes, the next read starts another
            raise GitError(f"file is larger than {limit // 1024} KiB; not a spec")
        body = proc.stdout.read(size + 1)[:-1]
        kind = header[0] if len(header) == 2 else header[1]
        if kind == "blob":
            return body
        if kind == "symlink":
            raise GitError(f"{self.path(rel)} is a link to {body.decode(errors='replace')}, outside the repository; name a file inside it")
        return None  # a tree, a dangling or looping link: there is no such file

    def _start(self) -> subprocess.Popen:
        if self._proc is None:
            try:
                self._proc = subprocess.Popen(["git", "-C", str(self.top), "cat-file", "--batch", "--follow-symlinks"],
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            except FileNotFoundError:
                raise GitError(not_installed("git")) from None
        return self._proc

    def _stop(self) -> None:
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait(timeout=30)
        self._proc = None

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
            self._proc = None

    def __enter__(self) -> CommitFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
