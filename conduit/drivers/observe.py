"""Observe the whole host: every driver, once, into one Observation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conduit.drivers.docker import (
    CountingClient,
    EngineError,
    dockerd_installed,
    engine_down,
    observe_docker,
)
from conduit.drivers.nginx import observe_nginx
from conduit.drivers.sysctl import observe_sysctl
from conduit.drivers.tracker import observe_tracker
from conduit.engine.images import settle_image
from conduit.plan.planner import Plan, make_plan
from conduit.drivers.programs import install_hint
from conduit.spec.resources import Observation, Resource
from conduit.render.desired import render
from conduit.spec.spec import ClusterSpec

DEFAULT_SOCKET = "/var/run/docker.sock"
NO_ENGINE = (f"no Docker engine on this machine ({DEFAULT_SOCKET} is absent): planned as a host without containers; "
             f"apply needs one ({install_hint('dockerd')})")


@dataclass
class HostAccess:
    """Where the host is: its filesystem root, the tool's state and the Docker engine."""

    root: Path
    state_dir: Path
    docker_host: str | None

    def docker(self) -> CountingClient | None:
        """None when no engine is installed here at all: then there are no containers to see.

        An engine that is installed but stopped is an error: its containers cannot be seen.
        """
        if self.docker_host is None and not Path(DEFAULT_SOCKET).exists():
            if dockerd_installed():
                raise EngineError(engine_down(f"unix://{DEFAULT_SOCKET}"))
            return None
        return CountingClient(self.docker_host)


def settle_cli_version(
    doc: ClusterSpec, client: CountingClient | None, state_dir: Path | None = None
) -> tuple[ClusterSpec, list[str]]:
    """The spec with what its image speaks (conduit.engine.images), and the warnings."""
    settled = settle_image(doc, client, state_dir)
    return settled.doc, settled.warnings


def observe_host(
    doc: ClusterSpec, host: HostAccess, client: CountingClient | None, sysctl_keys: list[str]
) -> Observation:
    obs = observe_sysctl(doc, host.root, sysctl_keys)
    obs = obs.merge(observe_nginx(doc, host.root))
    obs = obs.merge(observe_docker(doc, client) if client else Observation(warnings=[NO_ENGINE]))
    return obs.merge(observe_tracker(doc, host.state_dir))


def observed_plan(doc: ClusterSpec, host: HostAccess) -> tuple[Plan, list[Resource]]:
    """The plan for this host, and the resources it was made against."""
    client = host.docker()
    settled = settle_image(doc, client, host.state_dir)
    doc, warnings = settled.doc, settled.warnings
    keys = [r.id for r in render(doc) if r.kind == "sysctl"]
    obs = observe_host(doc, host, client, keys)
    now = {r.id: r.props.get("value") for r in obs.resources if r.kind == "sysctl"}
    desired = render(doc, sysctl_now=now)
    plan = make_plan(doc.metadata.name, desired, obs.resources, obs.drifted)
    plan.problems, plan.warnings, plan.foreign = settled.problems + obs.problems, warnings + obs.warnings, obs.foreign
    plan.api_calls = client.calls if client else 0
    return plan, obs.resources


def plan_against_host(doc: ClusterSpec, host: HostAccess) -> Plan:
    return observed_plan(doc, host)[0]


def plan_offline(doc: ClusterSpec) -> Plan:
    """Against an empty host: no Docker, nginx or /proc/sys needed."""
    settled = settle_image(doc, None)
    plan = make_plan(doc.metadata.name, render(settled.doc), [])
    plan.warnings, plan.problems = settled.warnings, settled.problems
    return plan


def plan_between(old: ClusterSpec, new: ClusterSpec) -> Plan:
    """What changes when `old` is replaced by `new`, as if `old` were applied exactly."""
    old, _ = settle_cli_version(old, None)
    new, warnings = settle_cli_version(new, None)
    plan = make_plan(new.metadata.name, render(new), render(old))
    plan.warnings = warnings
    return plan
