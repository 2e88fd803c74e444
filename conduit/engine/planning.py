"""The one plan: `plan(intent, spec, observed)`, pure. The host is read once before it, by
conduit.engine.observe; here nothing is read or written, and no driver or state module is
imported (tests/test_architecture.py). An offline plan is `plan` with nothing observed
(`nothing_observed`); a plan between two specs is `plan` against the old one as if it were
applied exactly (`as_applied`).

The diff itself is conduit.plan.planner, the schedule conduit.plan.schedule.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

from conduit.engine.intent import ApplySaved, Destroy, Intent, Rollback
from conduit.engine.settle import ImageSeen, Learned, Settled, settle
from conduit.errors import HostMoved
from conduit.plan.planner import Plan, Step, make_plan
from conduit.plan.schedule import Rollout, schedule
from conduit.engine.targets import OFFLINE, executable, target_of  # noqa: F401 - target_of is part of this API
from conduit.plan.target import Runtime
from conduit.render.desired import render
from conduit.spec.resources import Observation, Resource
from conduit.spec.spec import ClusterSpec


@dataclass
class Observed:
    """Everything a plan knows of the host, read once (conduit.engine.observe.observe).

    `host`: the drivers' resources, drift, foreign names and preflight findings; `image`: which
    image the nodes should run and what it speaks (None: no Docker daemon was asked); `held_stopped`,
    `held_cpus`: the holds (conduit.state.holds); `refused_before`: the sysctl writes the kernel
    refused at earlier applies; `learned`: what the state does not hold yet, for the apply to
    record; `runtime`: what the host runs the tracker and nginx with; `has_image`: whether Docker has the spec's image (None: as `image` says);
    `sysctl_read`: the sysctl values are the host's own (profile floors never lower them), not a spec's;
    `settled`: the spec settled against `image` when observe did it for this plan (not settled twice; a plan of
    another spec settles its own)."""

    host: Observation = field(default_factory=Observation)
    image: ImageSeen | None = None
    held_stopped: frozenset[str] = frozenset()
    held_cpus: dict[str, float] = field(default_factory=dict)
    refused_before: dict[str, tuple[str, str]] = field(default_factory=dict)
    learned: Learned = field(default_factory=Learned)
    api_calls: int = 0
    has_image: bool | None = None
    sysctl_read: bool = True
    runtime: Runtime = OFFLINE  # whether systemd is PID 1, conduit's path, the state dir (units are rendered for it)
    settled: Settled | None = None


def nothing_observed() -> Observed:
    """An empty host, with no Docker, nginx or /proc/sys to ask: what an offline plan is made against."""
    return Observed()


def as_applied(old: ClusterSpec, new: ClusterSpec) -> Observed:
    """A host where `old` was applied exactly, as `new`'s plan sees it (no Docker daemon asked)."""
    same_image = old.spec.containers.image == new.spec.containers.image
    return Observed(Observation(resources=render(settle(old).spec)), has_image=same_image, sysctl_read=False)


def canaries(spec: ClusterSpec) -> int:
    """spec.updates.canary as a number of nodes: a share ("25%") is rounded up, and is at least one."""
    canary, count = spec.spec.updates.canary, spec.spec.containers.count
    if isinstance(canary, str):
        return max(1, math.ceil(count * int(canary.rstrip("%")) / 100))
    return canary


def rollout(spec: ClusterSpec, image_present: bool, held: dict[str, str] | None = None, update: bool = False) -> Rollout:
    """What the schedule needs of the spec (conduit.plan.schedule). `update`: the nodes take a new image
    behind their tag, canaries first (a rollback, or a spec naming another image, has no canary)."""
    s = spec.spec
    return Rollout(
        held=held or {},
        image=s.containers.image,
        image_present=image_present,
        max_unavailable=s.rollout.max_unavailable,
        drain_seconds=s.rollout.drain_seconds,
        front=s.loadbalancer.enabled,
        sysctl_on_refused=s.sysctl.on_refused,
        canary=canaries(spec) if update else 0,
        analysis_seconds=s.updates.analysis_minutes * 60,
        min_clients_ratio=s.updates.min_clients_ratio,
    )


def plan(intent: Intent, spec: ClusterSpec, seen: Observed) -> Plan:
    """The plan for `intent` on a host seen as `seen`. Raises HostMoved (a saved plan that is not
    what its spec plans for this host now)."""
    if isinstance(intent, Destroy):
        return _removal(spec, seen, intent.purge_data)
    if isinstance(intent, Rollback) and intent.generation is None:
        return _undo(spec, list(intent.before), seen.host.resources, seen.runtime)
    fresh = _converge(spec, seen)
    if isinstance(intent, ApplySaved):
        return _as_saved(intent.plan, fresh)
    return fresh


def _converge(spec: ClusterSpec, seen: Observed) -> Plan:
    """The diff of the settled spec and the host. `held_stopped`: the nodes an operator or the budget
    stopped, planned stopped, not repaired; `held_cpus`: the nodes the budget throttled, planned with
    that CPU limit instead of the spec's.

    Under sysctl.on_refused: warn, a key this kernel cannot take now, or one whose very value it
    refused at the last apply, is held (a no-op with a warning) until the host or the value changes."""
    settled = seen.settled if seen.settled is not None and seen.settled.source is spec else settle(spec, seen.image)
    spec, obs = settled.spec, seen.host
    present = settled.image_present if seen.has_image is None else seen.has_image
    now = {r.id: r.props.get("value") for r in obs.resources if r.kind == "sysctl"} if seen.sysctl_read else None
    desired, observed = stopped_on_hold(render(spec, sysctl_now=now), obs.resources, seen.held_stopped)
    desired = capped_on_hold(desired, seen.held_cpus)
    held, why = _held_keys(spec, desired, obs, seen.refused_before)
    taken = settled.update is not None and settled.update.taken
    diff = make_plan(spec.metadata.name, desired, observed, obs.drifted)
    out = executable(schedule(diff, replace(rollout(spec, present, held, taken), probe=settled.probe)), spec, seen.runtime)
    out.problems, out.foreign = settled.problems + obs.problems, obs.foreign
    out.warnings = settled.warnings + obs.warnings + [w for key, said in why.items() if key not in obs.refused for w in said]
    out.held = _held_in(diff.steps, held, why)
    out.api_calls = seen.api_calls
    if settled.update is not None:
        out.update = asdict(settled.update)
    return out


def _held_in(steps: list[Step], held: dict[str, str], why: dict[str, list[str]]) -> dict[str, list[str]]:
    """The keys whose write this plan holds back (conduit.plan.schedule), each with the warnings that say why."""
    return {s.id: why.get(s.id, []) for s in steps if s.kind == "sysctl" and s.action in ("create", "update") and s.id in held}


STOPPED = ("exited", "created")  # what Docker calls a container that does not run and is not failing over


def stopped_on_hold(desired: list[Resource], observed: list[Resource], nodes: frozenset[str]) -> tuple[list[Resource], list[Resource]]:
    """A held node is wanted `state: stopped`, and a stopped one is seen as that: no step starts it."""
    if not nodes:
        return desired, observed

    def stopped(r: Resource, seen: bool) -> Resource:
        if r.kind != "container" or r.id not in nodes or (seen and r.props.get("state") not in STOPPED):
            return r
        return replace(r, props=r.props | {"state": "stopped"})

    return [stopped(r, False) for r in desired], [stopped(r, True) for r in observed]


def capped_on_hold(desired: list[Resource], cpus: dict[str, float]) -> list[Resource]:
    """A throttled node is wanted with its held CPU limit: an in-place update, its clients stay."""
    return [replace(r, props=r.props | {"cpus": cpus[r.id]}) if r.kind == "container" and r.id in cpus else r for r in desired]


def _held_keys(spec: ClusterSpec, desired: list[Resource], obs: Observation, before: dict[str, tuple[str, str]]):
    """The sysctl keys held under on_refused: warn, why (for the schedule), and the warnings about each."""
    if spec.spec.sysctl.on_refused != "warn":
        return {}, {}
    held = {key: "this kernel cannot take it now" for key in obs.refused}
    why = {key: [text] for key, text in obs.refused.items()}
    for r in desired:
        value = r.props.get("value")
        if r.kind == "sysctl" and r.id not in held and r.id in before and before[r.id][0] == value:
            held[r.id] = f"the kernel refused {value} ({before[r.id][1]})"
            why[r.id] = [f"sysctl {r.id} = {value} was refused by the kernel at the last apply ({before[r.id][1]}); "
                         "not tried again until the spec changes it"]
    return held, why


def _as_json(steps: list) -> list:
    return json.loads(json.dumps([s.to_json() for s in steps], sort_keys=True))


def _as_saved(saved: Plan, fresh: Plan) -> Plan:
    """The saved plan itself, when it is what its spec plans for this host now. Raises HostMoved."""
    if fresh.fingerprint != saved.fingerprint:
        raise HostMoved("the host changed since this plan was saved; make a new plan")
    # The digest proves the file is whole, not who wrote it: its steps must be the ones its
    # own spec plans for this host, or the file says one thing and does another.
    if _as_json(fresh.steps) != _as_json(saved.steps):
        raise HostMoved("the saved plan's steps are not what its spec plans for this host; make a new plan")
    # The same for what the steps run against (labels, the nginx text, units): a re-sealed file
    # must not carry a target of its own.
    if (fresh.target.to_json() if fresh.target else None) != (saved.target.to_json() if saved.target else None):
        raise HostMoved("the saved plan's target is not what its spec plans for this host; make a new plan")
    # What stops an apply now stops this one too, though the plan was made without it.
    problems = saved.problems + [p for p in fresh.problems if p not in saved.problems]
    return replace(saved, problems=problems, warnings=list(saved.warnings), api_calls=fresh.api_calls)


def _removal(spec: ClusterSpec, seen: Observed, purge_data: bool) -> Plan:
    """Remove everything observed of this cluster (sysctl values stay as they are). Data volumes,
    and the node keys in them, are kept; with `purge_data` they are `delete volume` steps."""
    gone = [replace(r, keep=False) if purge_data and r.kind == "volume" else r for r in seen.host.resources if r.kind != "sysctl"]
    out = executable(schedule(make_plan(spec.metadata.name, [], gone), rollout(spec, True)), spec, seen.runtime)
    purged = "--purge-data: the node key in it goes too"
    out.steps = [replace(s, reason=purged) if s.kind == "volume" else s for s in out.steps]
    out.api_calls = seen.api_calls
    return out


def _undo(spec: ClusterSpec, before: list[Resource], observed: list[Resource], runtime: Runtime) -> Plan:
    """Put back what the host had before a first apply: undo what it added or changed.

    Containers cannot be rebuilt from nothing, so those that were there stay as they are now
    (a replaced one was already put back by the rolling replace). Nothing is adopted: a bash
    manager's node that was restored has no rendered image or command to recreate it from.
    """
    had = {b.key for b in before}
    kept = [replace(r, adopt=False) for r in observed if r.kind == "container" and r.key in had]
    wanted = [r for r in before if r.kind != "container"] + kept
    now = [r for r in observed if r.kind != "container" or r.key not in had] + kept
    return executable(schedule(make_plan(spec.metadata.name, wanted, now), rollout(spec, True)), spec, runtime)
