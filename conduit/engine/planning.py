"""Plans for a real host, an empty host or between two specs: settle the image, observe, render, diff;
and destroy's plan, which removes what is observed.

Observation is the drivers' (conduit.drivers.observe); what the image speaks is asked by
conduit.engine.images; the diff itself is pure (conduit.plan.planner).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from conduit.drivers.docker import CountingClient
from conduit.drivers.observe import HostAccess, host_runtime, observe_host
from conduit.engine.images import Settled, settle_image
from conduit.engine.targets import OFFLINE, executable, target_of  # noqa: F401 - target_of is part of this API
from conduit.engine.updates import UpdateRequest
from conduit.plan.planner import Plan, make_plan
from conduit.plan.schedule import Rollout, schedule
from conduit.plan.target import Runtime
from conduit.render.desired import render
from conduit.errors import HostMoved
from conduit.spec.resources import Observation, Resource
from conduit.spec.spec import ClusterSpec
from conduit.state.db import Database, StateError
from conduit.state.holds import Holds
from conduit.state.kernel import KernelAnswers


def settle_cli_version(
    doc: ClusterSpec, client: CountingClient | None, state_dir: Path | None = None, pin: str | None = None
) -> tuple[ClusterSpec, list[str]]:
    """The spec with what its image (or the image ID `pin`) speaks (conduit.engine.images), and the
    warnings; the registry is not asked."""
    settled = settle_image(doc, client, state_dir, UpdateRequest(registry="never", take=False, pin=pin))
    return settled.doc, settled.warnings


def canaries(doc: ClusterSpec) -> int:
    """spec.updates.canary as a number of nodes: a share ("25%") is rounded up, and is at least one."""
    canary, count = doc.spec.updates.canary, doc.spec.containers.count
    if isinstance(canary, str):
        return max(1, math.ceil(count * int(canary.rstrip("%")) / 100))
    return canary


def rollout(doc: ClusterSpec, image_present: bool, held: dict[str, str] | None = None, update: bool = False) -> Rollout:
    """What the schedule needs of the spec (conduit.plan.schedule). `update`: the nodes take a new image
    behind their tag, canaries first (a rollback, or a spec naming another image, has no canary)."""
    s = doc.spec
    return Rollout(
        held=held or {},
        image=s.containers.image,
        image_present=image_present,
        max_unavailable=s.rollout.max_unavailable,
        drain_seconds=s.rollout.drain_seconds,
        front=s.loadbalancer.enabled,
        sysctl_on_refused=s.sysctl.on_refused,
        canary=canaries(doc) if update else 0,
        analysis_seconds=s.updates.analysis_minutes * 60,
        min_clients_ratio=s.updates.min_clients_ratio,
    )


def observed_plan(doc: ClusterSpec, host: HostAccess, request: UpdateRequest | None = None) -> tuple[Plan, list[Resource]]:
    """The plan for this host, and the resources it was made against. `request`: how a new image
    behind the tag is treated (conduit.engine.updates; default: as spec.updates says)."""
    client = host.docker()
    settled = settle_image(doc, client, host.state_dir, request)
    keys = [r.id for r in render(settled.doc) if r.kind == "sysctl"]
    obs = observe_host(settled.doc, host, client, keys)
    holds = Holds(host.state_dir).current()
    plan = plan_observed(settled, obs, recorded_refusals(host.state_dir), frozenset(n for n, h in holds.items() if h.cpus is None),
                         {n: h.cpus for n, h in holds.items() if h.cpus is not None}, host_runtime(host))  # fmt: skip
    plan.api_calls = client.calls if client else 0
    return plan, obs.resources


def _as_json(steps: list) -> list:
    return json.loads(json.dumps([s.to_json() for s in steps], sort_keys=True))


def saved_planner(saved: Plan) -> Callable[[ClusterSpec, HostAccess], tuple[Plan, list[Resource]]]:
    """A planner (conduit.engine.reconcile.Request.planner) that observes the host again and returns
    the saved plan itself, with what it observed as the state to roll back to. Raises HostMoved when
    the host's fingerprint is not the one the plan was made against."""

    def planner(doc: ClusterSpec, host: HostAccess) -> tuple[Plan, list[Resource]]:
        fresh, before = observed_plan(doc, host)
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
        return replace(saved, problems=problems, warnings=list(saved.warnings), api_calls=fresh.api_calls), before

    return planner


def recorded_refusals(state_dir: Path) -> dict[str, tuple[str, str]]:
    """The sysctl writes the kernel refused at earlier applies (none when the state cannot be read)."""
    try:
        db = Database.reader(state_dir)
        return KernelAnswers(db).refused() if db else {}
    except StateError:
        return {}


def plan_observed(settled: Settled, obs: Observation, refused_before: dict[str, tuple[str, str]] | None = None,
                  held_stopped: frozenset[str] = frozenset(), held_cpus: dict[str, float] | None = None,
                  runtime: Runtime = OFFLINE) -> Plan:  # fmt: skip
    """The plan for a settled spec and what was observed of the host. Pure. `held_stopped`: the
    nodes an operator or the budget stopped (conduit.state.holds), planned stopped, not repaired;
    `held_cpus`: the nodes the budget throttled, planned with that CPU limit instead of the spec's.

    Under sysctl.on_refused: warn, a key this kernel cannot take now, or one whose very value it
    refused at the last apply, is held (a no-op with a warning) until the host or the value changes."""
    doc = settled.doc
    now = {r.id: r.props.get("value") for r in obs.resources if r.kind == "sysctl"}
    desired, observed = stopped_on_hold(render(doc, sysctl_now=now), obs.resources, held_stopped)
    desired = capped_on_hold(desired, held_cpus or {})
    held, warnings = _held_keys(doc, desired, obs, refused_before or {})
    taken = settled.update is not None and settled.update.taken
    plan = executable(schedule(make_plan(doc.metadata.name, desired, observed, obs.drifted), rollout(doc, settled.image_present, held, taken)), doc, runtime)
    plan.problems, plan.foreign = settled.problems + obs.problems, obs.foreign
    plan.warnings = settled.warnings + obs.warnings + warnings
    if settled.update is not None:
        plan.update = asdict(settled.update)
    return plan


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


def _held_keys(doc: ClusterSpec, desired: list[Resource], obs: Observation, before: dict[str, tuple[str, str]]):
    if doc.spec.sysctl.on_refused != "warn":
        return {}, []
    held = {key: "this kernel cannot take it now" for key in obs.refused}
    warnings = []
    for r in desired:
        value = r.props.get("value")
        if r.kind == "sysctl" and r.id not in held and r.id in before and before[r.id][0] == value:
            held[r.id] = f"the kernel refused {value} ({before[r.id][1]})"
            warnings.append(f"sysctl {r.id} = {value} was refused by the kernel at the last apply ({before[r.id][1]}); "
                            "not tried again until the spec changes it")
    return held, warnings


def plan_against_host(doc: ClusterSpec, host: HostAccess, request: UpdateRequest | None = None) -> Plan:
    return observed_plan(doc, host, request)[0]


def plan_offline(doc: ClusterSpec) -> Plan:
    """Against an empty host: no Docker, nginx or /proc/sys needed."""
    settled = settle_image(doc, None)
    plan = executable(schedule(make_plan(doc.metadata.name, render(settled.doc), []), rollout(settled.doc, False)), settled.doc)
    plan.warnings, plan.problems = settled.warnings, settled.problems
    return plan


def plan_between(old: ClusterSpec, new: ClusterSpec) -> Plan:
    """What changes when `old` is replaced by `new`, as if `old` were applied exactly."""
    old, _ = settle_cli_version(old, None)
    new, warnings = settle_cli_version(new, None)
    same_image = old.spec.containers.image == new.spec.containers.image
    plan = executable(schedule(make_plan(new.metadata.name, render(new), render(old)), rollout(new, same_image)), new)
    plan.warnings = warnings
    return plan


def removal_plan(doc: ClusterSpec, host: HostAccess, purge_data: bool = False) -> tuple[Plan, list[Resource]]:
    """Remove everything observed of this cluster (sysctl values stay as they are). Data volumes,
    and the node keys in them, are kept; with `purge_data` they are `delete volume` steps."""
    _plan, observed = observed_plan(doc, host)
    gone = [replace(r, keep=False) if purge_data and r.kind == "volume" else r for r in observed if r.kind != "sysctl"]
    plan = executable(schedule(make_plan(doc.metadata.name, [], gone), rollout(doc, True)), doc, host_runtime(host))
    purged = "--purge-data: the node key in it goes too"
    plan.steps = [replace(s, reason=purged) if s.kind == "volume" else s for s in plan.steps]
    return plan, observed
