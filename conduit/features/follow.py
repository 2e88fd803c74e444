"""`conduit watch --git`: the host follows a repository. Each poll fetches the commit, checks its
signature when the host policy asks for one, reads the host's spec and the bases it extends from
that same commit, and hands the merged document to the watcher only when it differs from the one
applied (a commit that touches other hosts' files applies nothing here).

With a fleet file (`--fleet fleet.yaml --host NAME`), the host's ring in that file names the ref
it follows (canary: main, stable: stable), and the fleet file at that ref names its spec.
"""

from __future__ import annotations

import hashlib
import posixpath
import random
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from conduit.errors import GitError, PolicyError, SpecError
from conduit.features.fleet import AtCommit, Side
from conduit.features.watch import Watcher
from conduit.drivers.files import atomic_write, private_tree
from conduit.spec.compose import KEY as EXTENDS, ComposeError
from conduit.spec.fleet import Fleet, Host, load_fleet_text
from conduit.spec.load import compose_problem, parse_flat
from conduit.spec.policy import GitPolicy, UntrustedPath, load_policy, trusted_path
from conduit.spec.units import parse_docker_size
from conduit.state.git import CommitFiles, fetch, public_url, signed_by

SPEC_FILE = "fleet-spec.yaml"  # the merged spec last applied, for `conduit serve` and `conduit status`


@dataclass(frozen=True)
class Target:
    """What the host follows: a repository, the ref, and either a spec path or a fleet file and a host name."""

    url: str
    ref: str = "main"
    spec_path: str = "cluster.yaml"
    fleet: str | None = None  # the fleet file's path in the repository
    host: str | None = None
    credentials: Path | None = None


@dataclass(frozen=True)
class Resolved:
    """One commit read for this host: the merged spec's text (or why there is none), its ring, what to call it."""

    commit: str
    source: str
    text: str | None = None
    problem: str | None = None
    status: str = "invalid"  # what a problem is: invalid (the files), blocked (the signature)
    ring: str | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256((self.text or "").encode()).hexdigest()


class Follower:
    """Fetches and resolves; the Watcher applies."""

    def __init__(self, watcher: Watcher, target: Target):
        self.watcher, self.target = watcher, target
        self.mirror = watcher.host.state_dir / "git" / hashlib.sha256(target.url.encode()).hexdigest()[:16]
        self.shown = public_url(target.url)
        self.fleet: Fleet | None = None  # the fleet file last read

    def _git_policy(self) -> GitPolicy:
        try:
            return load_policy()[0].git
        except PolicyError as exc:
            raise GitError(str(exc)) from None

    def _unsigned(self, sha: str, policy: GitPolicy) -> str | None:
        """Why commit `sha` may not be applied under the policy, or None."""
        if not policy.require_signed_commits:
            return None
        signers = policy.allowed_signers
        try:
            trusted = trusted_path(signers)
        except FileNotFoundError:
            return f"the host policy requires signed commits and {signers} does not exist; write it (root's, chmod 644)"
        except (OSError, UntrustedPath) as exc:
            return f"allowed signers {signers}: {exc}"
        if signed_by(self.mirror, sha, Path(trusted)) is None:
            return (f"commit {sha[:12]} is not signed by a key in {signers}; it is not applied: "
                    f"sign it (git commit -S) with a listed key and push again")  # fmt: skip
        return None

    def resolve(self) -> Resolved:
        """The commit to apply and the host's merged spec at it. Raises GitError when git fails."""
        policy = self._git_policy()
        target = self.target
        most = parse_docker_size(policy.max_fetch)
        sha = fetch(target.url, target.ref, self.mirror, target.credentials, most=most)
        ring, spec_path = None, target.spec_path
        if target.fleet:
            refusal = self._unsigned(sha, policy)  # the fleet file names the ring: it is trusted no more than a spec
            if refusal:
                return Resolved(sha, f"{self.shown}@{sha[:12]}", problem=refusal, status="blocked")
            ring, ref = self._ring(sha)
            if ref != target.ref:
                sha = fetch(target.url, ref, self.mirror, target.credentials, "ring", most=most)
        source = f"{self.shown}@{sha[:12]}"
        refusal = self._unsigned(sha, policy)
        if refusal:
            return Resolved(sha, source, problem=refusal, status="blocked", ring=ring)
        with CommitFiles.in_mirror(self.mirror, sha) as files:
            if target.fleet:
                host, problems = self._host_entry(files, sha)
                if host is None:
                    return Resolved(sha, source, problem=" / ".join(problems), ring=ring)
                spec_path = posixpath.join(posixpath.dirname(target.fleet), host.spec)
            text, problems = merged_spec(files, sha, spec_path, self.watcher.facts())
        if text is None:
            return Resolved(sha, f"{source}:{spec_path}", problem=" / ".join(problems), ring=ring)
        return Resolved(sha, f"{source}:{spec_path}", text=text, ring=ring)

    def _host_entry(self, files: CommitFiles, sha: str) -> tuple[Host | None, list[str]]:
        """This host's entry in the fleet file at `sha` (and the fleet), or the lines that say why there is none."""
        name = self.target.fleet or ""
        source = AtCommit(files, sha[:12], "")
        try:
            fleet = load_fleet_text(source.read(name), source.name(name))
        except ComposeError as exc:
            return None, compose_problem(exc).lines()
        except SpecError as exc:
            return None, exc.lines()
        self.fleet = fleet
        for host in fleet.hosts:
            if host.name == self.target.host:
                return host, []
        return None, [f"{source.name(name)}: no host named {self.target.host!r}; add it to the fleet, or pass --host NAME"]

    def _ring(self, sha: str) -> tuple[str | None, str]:
        """The host's ring and the ref it follows, as the fleet file at `sha` (of --ref) says. Raises
        GitError when it names no such host."""
        with CommitFiles.in_mirror(self.mirror, sha) as files:
            host, problems = self._host_entry(files, sha)
        if host is None:
            raise GitError(" / ".join(problems))
        ring = self.fleet.ring(host)
        return ring, self.fleet.rings.get(ring, self.target.ref) if ring else self.target.ref


def merged_spec(files: CommitFiles, sha: str, spec_path: str, facts) -> tuple[str | None, list[str]]:
    """The spec at `spec_path` with the bases it extends, all read at commit `sha` and validated: the
    document a generation records (the file as written when it extends nothing); or the problems,
    one located line each, naming the file at the commit."""
    side = Side(AtCommit(files, sha[:12], ""), facts, None)
    found = side.spec(spec_path)
    if isinstance(found, list):
        return None, found
    raw = side.source.read(spec_path)
    data, _ = parse_flat(raw, spec_path)
    if not (isinstance(data, dict) and EXTENDS in data):
        return raw, []
    merged = side.data(spec_path)
    return f"# {spec_path} with the files it extends merged in\n" + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), []


def follow(watcher: Watcher, target: Target, interval: float, poll: float, jitter: float = 0.2) -> None:
    """Poll every `poll` seconds (plus up to `jitter` of it at random, so that a fleet's hosts do not
    fetch at once); apply when the host's merged spec changed; heal drift every `interval`."""
    follower = Follower(watcher, target)
    applied: Resolved | None = None  # the last commit whose spec was handed to the watcher
    seen: str | None = None  # the last commit looked at, whatever came of it
    next_heal = 0.0
    if target.host:
        watcher.status["host"] = target.host
    while not watcher.stopping.is_set():
        try:
            found = follower.resolve()
        except GitError as exc:
            watcher.note("failed", str(exc), "poll", None)
        else:
            watcher.status.update(ring=found.ring, attempted_commit=found.commit)
            if found.commit != seen:
                seen = found.commit
                applied = _take(watcher, found, applied, "changed" if applied else "start")
                next_heal = time.monotonic() + watcher._next(interval)
            elif time.monotonic() >= next_heal and applied is not None:
                watcher.reconcile(applied.text or "", applied.source, "interval", (applied.commit, False))
                next_heal = time.monotonic() + watcher._next(interval)
        watcher.stopping.wait(poll + random.uniform(0, jitter * poll))


def _take(watcher: Watcher, found: Resolved, applied: Resolved | None, reason: str) -> Resolved | None:
    """A new commit: apply its spec when it differs from the one applied; say why when it cannot be."""
    if found.problem:
        watcher.note(found.status, found.problem, reason, (found.commit, False))
        return applied
    if applied is not None and found.digest == applied.digest and watcher.status.get("last_result") in ("applied", "unchanged"):
        watcher.note("unchanged", f"commit {found.commit[:12]} does not change this host's spec", reason, (found.commit, False))
        return found
    result = watcher.reconcile(found.text or "", found.source, reason, (found.commit, False))
    if result.status in ("applied", "unchanged"):
        try:
            atomic_write(private_tree(watcher.host.state_dir) / SPEC_FILE, found.text or "")
        except OSError:
            pass  # the status record says what the watcher did; this copy is for `serve` and `status`
        return found
    return applied
