"""Checks that span several fields or need the host's facts; run on a resolved spec."""

from __future__ import annotations

import ipaddress
import re

from conduit.spec.profiles import HostFacts
from conduit.spec.image_checks import field_path, image_checks
from conduit.spec.resolve import image_facts, nodes
from conduit.spec.spec import ClusterSpec

Path = tuple[str | int, ...]
Issue = tuple[Path, str]

_NGINX_TOKEN = re.compile(r"^[A-Za-z0-9_./@:+=,%~$-]+$")
_IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def check(spec: ClusterSpec, facts: HostFacts) -> list[Issue]:
    issues: list[Issue] = []
    issues += _override_checks(spec)
    issues += _nofile_checks(spec, facts)
    # What the image would refuse, as far as the spec and the image tag tell; plan asks the image.
    issues += image_checks(spec, image_facts(spec))
    issues += _network_checks(spec)
    issues += _port_checks(spec)
    issues += _tracker_checks(spec)
    issues += _nginx_value_checks(spec)
    issues += _absolute_path_checks(spec)
    return issues


_RESOURCES: Path = ("spec", "containers", "resources")


def _override_checks(spec: ClusterSpec) -> list[Issue]:
    count = spec.spec.containers.count or 0
    return [
        (("spec", "containers", "overrides", index), f"container {index} does not exist (count is {count})")
        for index in spec.spec.containers.overrides
        if index > count
    ]


def _nofile_checks(spec: ClusterSpec, facts: HostFacts) -> list[Issue]:
    """Docker cannot give a container more open files than the host's hard limit."""
    for n in nodes(spec):
        if n.ulimit_nofile > facts.nofile_limit:
            return [
                (
                    field_path(spec, n.index, "ulimit_nofile", _RESOURCES + ("ulimit_nofile",)),
                    f"{n.ulimit_nofile} exceeds the host's hard open-file limit of {facts.nofile_limit}; "
                    "the container would fail to start",
                )
            ]
    return []


def _tracker_checks(spec: ClusterSpec) -> list[Issue]:
    issues: list[Issue] = []
    s = spec.spec
    for part in s.tracker.ports.split(","):
        low, _, high = part.partition("-")
        if not (1 <= int(low) <= int(high or low) <= 65535):
            issues.append((("spec", "tracker", "ports"), f"{part} is not a port or an upward range within 1-65535"))
            break
    iface = s.tracker.interface
    if iface != "auto" and not _IFACE.match(iface):
        issues.append((("spec", "tracker", "interface"), f"{iface!r} is not an interface name"))
    return issues


def _nginx_value_checks(spec: ClusterSpec) -> list[Issue]:
    """Written into nginx directives unquoted: nothing that would end or open one."""
    s = spec.spec
    nginx_values = [(("spec", "loadbalancer", "nginx", "include_file"), s.loadbalancer.nginx.include_file)]
    if s.loadbalancer.access_log:
        nginx_values.append((("spec", "loadbalancer", "access_log"), s.loadbalancer.access_log))
    return [
        (path, "must not hold spaces, ';', quotes, braces or '#' (it is written into nginx config)")
        for path, value in nginx_values
        if not _NGINX_TOKEN.match(value)
    ]


def _absolute_path_checks(spec: ClusterSpec) -> list[Issue]:
    s = spec.spec
    return [
        (path, "must be an absolute path")
        for path, value in (
            (("spec", "sysctl", "file"), s.sysctl.file),
            (("spec", "loadbalancer", "nginx", "binary"), s.loadbalancer.nginx.binary),
            (("spec", "loadbalancer", "nginx", "main_config"), s.loadbalancer.nginx.main_config),
            (("spec", "loadbalancer", "nginx", "include_file"), s.loadbalancer.nginx.include_file),
            (("spec", "loadbalancer", "nginx", "pid_file"), s.loadbalancer.nginx.pid_file),
        )
        if not value.startswith("/")
    ]


def _network_checks(spec: ClusterSpec) -> list[Issue]:
    s = spec.spec
    lb = s.loadbalancer
    issues: list[Issue] = []
    if not lb.enabled:
        return issues
    if s.network.mode != "bridge":
        issues.append(
            (("spec", "network", "mode"), "the load balancer needs bridge networking (host mode gives every container the same ports)")
        )
    if not lb.listeners:
        issues.append((("spec", "loadbalancer", "listeners"), "the load balancer needs at least one listener"))
    names = [listener.name for listener in lb.listeners]
    for i, name in enumerate(names):
        if names.index(name) != i:
            issues.append((("spec", "loadbalancer", "listeners", i, "name"), f"listener name {name!r} is used twice"))
    if s.network.backends == "published":
        for i, listener in enumerate(lb.listeners):
            if listener.host_port_base is None:
                issues.append(
                    (
                        ("spec", "loadbalancer", "listeners", i, "host_port_base"),
                        "required when backends are published on 127.0.0.1",
                    )
                )
    elif s.network.subnet is None:
        issues.append((("spec", "network", "subnet"), "required when the load balancer reaches backends by address"))
    else:
        net = ipaddress.ip_network(s.network.subnet, strict=False)
        if net.num_addresses - 3 < (s.containers.count or 0):
            issues.append((("spec", "network", "subnet"), f"{net} has no room for {s.containers.count} containers"))
    return issues


def _port_checks(spec: ClusterSpec) -> list[Issue]:
    """Every host port the cluster binds is bound once: metrics, published backends, listeners."""
    s = spec.spec
    count = s.containers.count or 0
    taken: dict[tuple[str, int], str] = {}
    issues: list[Issue] = []

    def claim(proto: str, port: int, owner: str, path: Path) -> None:
        if port > 65535:
            issues.append((path, f"{owner} would need port {port}, above 65535"))
        elif (proto, port) in taken:
            issues.append((path, f"{proto}/{port} of {owner} collides with {taken[(proto, port)]}"))
        else:
            taken[(proto, port)] = owner

    if s.loadbalancer.enabled:
        for i, listener in enumerate(s.loadbalancer.listeners):
            claim(listener.protocol, listener.port, f"listener {listener.name}", ("spec", "loadbalancer", "listeners", i, "port"))
    for index in range(1, count + 1):
        claim(
            "tcp",
            s.conduit.metrics_port_base + index - 1,
            f"the metrics of container {index}",
            ("spec", "conduit", "metrics_port_base"),
        )
    if s.loadbalancer.enabled and s.network.backends == "published":
        for i, listener in enumerate(s.loadbalancer.listeners):
            if listener.host_port_base is None:
                continue
            for index in range(1, count + 1):
                claim(
                    listener.protocol,
                    listener.host_port_base + index - 1,
                    f"container {index} behind listener {listener.name}",
                    ("spec", "loadbalancer", "listeners", i, "host_port_base"),
                )
    # One message per field is enough: the first collision names the clash.
    seen: set[Path] = set()
    return [issue for issue in issues if not (issue[0] in seen or seen.add(issue[0]))]
