"""Every desired resource of a resolved spec, in one list. Pure and deterministic."""

from __future__ import annotations

from conduit.spec.resources import Resource
from conduit.render.container import render_containers
from conduit.render.nginx import render_nginx
from conduit.render.sysctl import render_sysctl
from conduit.render.tracker import render_tracker
from conduit.spec.spec import ClusterSpec


def render(
    spec: ClusterSpec, drained: frozenset[int] = frozenset(), sysctl_now: dict[str, str | None] | None = None
) -> list[Resource]:
    """`sysctl_now`: the host's current values, which profile floors never lower."""
    return [
        *render_sysctl(spec, sysctl_now),
        *render_nginx(spec, drained),
        *render_containers(spec),
        *render_tracker(spec),
    ]
