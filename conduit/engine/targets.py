"""A scheduled plan made executable: its target (conduit.plan.target) and every text its steps write,
rendered here from the settled spec and the host's Runtime, so the executor renders and decides nothing.

This is the last place the spec is read for a plan.
"""

from __future__ import annotations

from dataclasses import replace

from conduit.plan.kinds import Action, Kind
from conduit.plan.planner import Plan, Step
from conduit.plan.target import CANDIDATE, FrontTarget, NodeTarget, Runtime, Target
from conduit.render.container import labels, render_containers
from conduit.render.nginx import (
    front_config,
    front_pid_file,
    include_line,
    nginx_unit_name,
    render_main_conf,
    render_nginx_unit,
    render_stream_conf,
)
from conduit.render.tracker import tracker_unit, unit_name
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec

OFFLINE = Runtime()


def _front(spec: ClusterSpec) -> FrontTarget:
    lb = spec.spec.loadbalancer
    paths, own = lb.nginx, lb.instance == "own"
    return FrontTarget(
        enabled=lb.enabled, own=own, binary=paths.binary, config=front_config(lb), pid_file=front_pid_file(lb),
        system_pid_file=paths.pid_file, instance_pid_file=paths.instance_pid_file, include_file=paths.include_file,
        error_log=paths.error_log, tcp_ports=tuple(x.port for x in lb.listeners if x.protocol == "tcp"),
        stream=render_stream_conf(spec) if lb.enabled else "",
        test_main=render_main_conf(spec, CANDIDATE) if lb.enabled and own else None,
        unit_name=nginx_unit_name(spec.metadata.name), unit=render_nginx_unit(spec) if lb.enabled and own else None,
        test_include=include_line(CANDIDATE) if lb.enabled and not own else "",
    )  # fmt: skip


def target_of(spec: ClusterSpec, runtime: Runtime = OFFLINE) -> Target:
    """What the executor needs of this (settled) spec and host: conduit.plan.target."""
    props = {r.id: r.props for r in render_containers(spec) if r.kind == "container"}
    members = {n.name: NodeTarget(n.index, n.volume, n.max_clients, n.metrics_port, labels(spec, n, props[n.name])) for n in nodes(spec)}
    health = spec.spec.health
    return Target(spec.metadata.name, _front(spec), members, health.gate_timeout_seconds, health.settle_seconds,
                  runtime.systemd, unit_name(spec.metadata.name))  # fmt: skip


def executable(plan: Plan, spec: ClusterSpec, runtime: Runtime = OFFLINE) -> Plan:
    """The scheduled plan with what the executor needs of `spec` and the host: its target, each drain
    step with the stream file it writes (every node in the front but the drained ones), and, where
    systemd is PID 1, the tracker step with its unit."""
    index = {n.name: n.index for n in nodes(spec)}

    def filled(step: Step) -> Step:
        if step.kind == Kind.BACKENDS and step.action == Action.DRAIN:
            out = frozenset(index[name] for name in step.desired["nodes"] if name in index)
            return replace(step, desired={**step.desired, "content": render_stream_conf(spec, out)})
        if step.kind == Kind.TRACKER and runtime.systemd:
            return replace(step, desired=_tracker_unit(spec.metadata.name, step, runtime))
        return step

    return replace(plan, steps=[filled(s) for s in plan.steps], target=target_of(spec, runtime))


def _tracker_unit(cluster: str, step: Step, runtime: Runtime) -> dict | None:
    """The tracker's unit text (its rendered command, run by conduit's absolute path); a delete stays empty."""
    if step.desired is None:
        return None
    argv = [runtime.conduit_bin, *step.desired["command"][1:]]
    return {**step.desired, "unit": tracker_unit(cluster, argv, runtime.state_dir)}
