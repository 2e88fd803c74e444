"""Observe the whole host: every driver, once, into one Observation."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from conduit.errors import DockerDown
from conduit.drivers.docker import (
    CountingClient,
    dockerd_installed,
    docker_down,
    observe_docker,
)
from conduit.drivers.nginx import observe_nginx
from conduit.drivers.sysctl import observe_sysctl
from conduit.drivers.tracker import observe_tracker, systemd_is_init
from conduit.drivers.programs import install_hint
from conduit.plan.target import Runtime
from conduit.spec.resources import Observation
from conduit.spec.spec import ClusterSpec

DEFAULT_SOCKET = "/var/run/docker.sock"
NO_ENGINE = (f"no Docker daemon on this machine ({DEFAULT_SOCKET} is absent): planned as a host without containers; "
             f"apply needs one ({install_hint('dockerd')})")


@dataclass
class HostAccess:
    """Where the host is: its filesystem root, the tool's state and the Docker daemon."""

    root: Path
    state_dir: Path
    docker_host: str | None

    def docker(self, kept: dict | None = None) -> CountingClient | None:
        """None when no Docker daemon is installed here at all: then there are no containers to see.
        `kept`: status's kept answers, read instead of asking (conduit.drivers.docker.recalled).

        A Docker daemon that is installed but stopped is an error: its containers cannot be seen.
        """
        if self.docker_host is None and not Path(DEFAULT_SOCKET).exists():
            if dockerd_installed():
                raise DockerDown(docker_down(f"unix://{DEFAULT_SOCKET}"))
            return None
        return CountingClient(self.docker_host, kept)


def observe_host(
    spec: ClusterSpec, host: HostAccess, client: CountingClient | None, sysctl_keys: list[str], listed: list[dict] | None = None
) -> Observation:
    """`listed`: Docker's list of every container, when the caller asked it already."""
    obs = observe_sysctl(spec, host.root, sysctl_keys)
    obs = obs.merge(observe_nginx(spec, host.root))
    obs = obs.merge(observe_docker(spec, client, listed) if client else Observation(warnings=[NO_ENGINE]))
    return obs.merge(observe_tracker(spec, host.state_dir))


def host_runtime(host: HostAccess) -> Runtime:
    """What the plan needs of this host to run (conduit.plan.target.Runtime): whether systemd is PID 1,
    conduit's absolute path for a unit's ExecStart, the state directory a unit hands the tracker."""
    return Runtime(systemd_is_init(), shutil.which("conduit") or Runtime.conduit_bin, str(host.state_dir.resolve()))
