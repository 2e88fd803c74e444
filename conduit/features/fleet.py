"""A fleet from one repository: every host's spec (with its bases) validated, planned offline, or
compared with the same files at a git ref. Reads no host.

Each file is read, parsed and merged once per run and per side (the working tree, or one commit
read through one `git cat-file --batch`), however many hosts extend it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from conduit.engine.intent import Apply
from conduit.engine.planning import as_applied, nothing_observed, plan
from conduit.errors import GitError, SpecError
from conduit.plan.planner import Plan
from conduit.spec.compose import ComposeError, Composer, Directory, Layer, Where
from conduit.spec.fleet import Fleet, Host, load_fleet, load_fleet_text
from conduit.spec.load import MAX_BYTES, compose_problem, load_layer, parse_flat
from conduit.spec.policy import HostPolicy
from conduit.spec.profiles import HostFacts
from conduit.spec.spec import ClusterSpec
from conduit.state.git import CommitFiles

FLEET_FILE = "fleet.yaml"


@dataclass
class HostResult:
    """One host of the fleet: its spec, or the problems (one located line each), and a plan when asked."""

    host: Host
    ring: str | None
    spec: ClusterSpec | None = None
    problems: list[str] = field(default_factory=list)
    plan: Plan | None = None  # none for a host whose document is the same on both sides


class AtCommit:
    """The fleet's files as committed at a ref (conduit.spec.compose.Source)."""

    def __init__(self, files: CommitFiles, ref: str, shown: str):
        self.files, self.ref, self.shown = files, ref, shown

    def name(self, rel: str) -> str:
        if rel == ".":
            return f"{self.ref}:{self.files.prefix}"
        return f"{self.ref}:{posixpath.join(self.shown, rel) if self.shown not in ('', '.') else rel}"

    def read(self, rel: str) -> str:
        where: Where = (self.name(rel), 1, 1)
        try:
            raw = self.files.read(rel, MAX_BYTES)
        except GitError as exc:
            raise ComposeError(where, "", str(exc)) from None
        if raw is None:
            raise ComposeError(where, "", f"no such file at {self.ref}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ComposeError(where, "", f"not UTF-8 text (byte {exc.start})") from None

    def exists(self, rel: str) -> bool:
        try:
            return self.files.read(rel, MAX_BYTES) is not None
        except GitError:
            return True  # let read say what is wrong


class Side:
    """One version of the fleet's files: each spec merged and validated once, whoever names it."""

    def __init__(self, source, detected: HostFacts, policy: tuple[HostPolicy, str] | None):
        self.source, self.detected, self.policy = source, detected, policy
        self.composer = Composer(source, parse_flat)
        self.specs: dict[str, ClusterSpec | list[str]] = {}

    def layer(self, rel: str) -> Layer:
        """Raises SpecError."""
        try:
            return self.composer.resolve(rel)
        except ComposeError as exc:
            raise compose_problem(exc) from None

    def spec(self, rel: str) -> ClusterSpec | list[str]:
        """The validated spec, or its problems as located lines."""
        if rel not in self.specs:
            try:
                self.specs[rel] = load_layer(self.layer(rel), self.source.name(rel), self.detected, self.policy)
            except SpecError as exc:
                self.specs[rel] = exc.lines()
        return self.specs[rel]

    def data(self, rel: str) -> dict | None:
        """The merged document, None when it cannot be read or merged."""
        try:
            return self.layer(rel).data
        except SpecError:
            return None


def open_fleet(path: str | Path) -> tuple[Fleet, Path, str]:
    """The fleet file, the directory its specs are relative to, and how that directory is named. Raises SpecError."""
    fleet = load_fleet(path)
    folder = Path(path).parent
    return fleet, folder, "" if str(folder) == "." else str(folder)


def _working_tree(folder: Path, shown: str, detected: HostFacts, policy) -> Side:
    return Side(Directory(folder, MAX_BYTES, shown), detected, policy)


def validate_fleet(path: str | Path, detected: HostFacts, policy: tuple[HostPolicy, str] | None = None) -> list[HostResult]:
    """Every host's spec resolved with its bases and validated. Raises SpecError for the fleet file itself."""
    fleet, folder, shown = open_fleet(path)
    side = _working_tree(folder, shown, detected, policy)
    out = []
    for host in fleet.hosts:
        found = side.spec(host.spec)
        result = HostResult(host, fleet.ring(host))
        if isinstance(found, list):
            result.problems = found
        else:
            result.spec = found
        out.append(result)
    return out


def plan_fleet(path: str | Path, detected: HostFacts, policy: tuple[HostPolicy, str] | None = None) -> list[HostResult]:
    """Every host's offline plan (against an empty host); hosts whose spec is invalid have problems instead."""
    results = validate_fleet(path, detected, policy)
    plans: dict[str, Plan] = {}  # hosts sharing a spec share its plan
    for result in results:
        if result.spec is not None:
            if result.host.spec not in plans:
                plans[result.host.spec] = plan(Apply(), result.spec, nothing_observed())
            result.plan = plans[result.host.spec]
    return results


@dataclass
class FleetDiff:
    changed: list[HostResult]  # hosts whose plan has changes, or problems
    unchanged: list[str]
    removed: list[str]  # hosts the fleet at the ref had and the working tree's has not


def diff_fleet(path: str | Path, ref: str, detected: HostFacts, policy: tuple[HostPolicy, str] | None = None) -> FleetDiff:
    """For each host, the plan from its spec at `ref` to the working tree's. Raises SpecError (the fleet
    file) and GitError (the ref)."""
    fleet, folder, shown = open_fleet(path)
    new = _working_tree(folder, shown, detected, policy)
    with CommitFiles(folder, ref) as files:
        source = AtCommit(files, ref, shown)
        old = Side(source, detected, policy)
        before = _fleet_at(source, Path(path).name)
        old_paths = {h.name: h.spec for h in before.hosts} if before else {h.name: h.spec for h in fleet.hosts}
        out = FleetDiff([], [], [n for n in old_paths if n not in {h.name for h in fleet.hosts}])
        for host in fleet.hosts:
            result = _host_diff(host, fleet.ring(host), old_paths.get(host.name), old, new)
            if result.problems or (result.plan is not None and result.plan.changes):
                out.changed.append(result)
            else:
                out.unchanged.append(host.name)
    return out


def _fleet_at(source: AtCommit, name: str) -> Fleet | None:
    """The fleet file as committed (None when the commit has none: every host is new)."""
    if not source.exists(name):
        return None
    try:
        return load_fleet_text(source.read(name), source.name(name))
    except ComposeError as exc:
        raise GitError(str(exc)) from None


def _host_diff(host: Host, ring: str | None, old_path: str | None, old: Side, new: Side) -> HostResult:
    result = HostResult(host, ring)
    after = new.spec(host.spec)
    if isinstance(after, list):
        result.problems = after
        return result
    result.spec = after
    if old_path is None or not old.source.exists(old_path):
        result.plan = plan(Apply(), after, nothing_observed())  # a new host: everything is to add
        return result
    if old.data(old_path) == new.data(host.spec):
        return result  # the same document: nothing to plan
    before = old.spec(old_path)
    if isinstance(before, list):
        result.problems = before
        return result
    result.plan = plan(Apply(), after, as_applied(before, after))
    return result
