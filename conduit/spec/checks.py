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


def check(doc: ClusterSpec, facts: HostFacts) -> list[Issue]:
    issues: list[Issue] = []
    issues += _override_checks(doc)
    issues += _nofile_checks(doc, facts)
    # What the image would refuse, as far as the spec and the image tag tell; plan asks the image.
    issues += image_checks(doc, image_facts(doc))
    issues += _network_checks(doc)
    issues += _port_checks(doc)
    issues += _tracker_checks(doc)
    issues += _nginx_value_checks(doc)
    issues += _absolute_path_checks(doc)
    return issues


_RESOURCES: Path = ("spec", "containers", "resources")


def _override_checks(doc: ClusterSpec) -> list[Issue]:
    count = doc.spec.containers.count or 0
    return [
        (("spec", "containers", "overrides", index), f"container {index} does not exist (count is {count})")
        for index in doc.spec.containers.overrides
        if index > count
    ]


def _nofile_checks(doc: ClusterSpec, facts: HostFacts) -> list[Issue]:
    """The engine cannot give a container more open files than the host's hard limit."""
    for n in nodes(doc):
        if n.ulimit_nofile > facts.nofile_limit:
            return [
                (
                    field_path(doc, n.index, "ulimit_nofile", _RESOURCES + ("ulimit_nofile",)),
                    f"{n.ulimit_nofile} exceeds the host's hard open-file limit of {facts.nofile_limit}; "
                    "the container would fail to start",
                )
            ]
    return []


def _tracker_checks(doc: ClusterSpec) -> list[Issue]:
    issues: list[Issue] = []
    spec = doc.spec
    for part in spec.tracker.ports.split(","):
        low, _, high = part.partition("-")
        if not (1 <= int(low) <= int(high or low) <= 65535):
            issues.append((("spec", "tracker", "ports"), f"{part} is not a port or an upward range within 1-65535"))
            break
    iface = spec.tracker.interface
    if iface != "auto" and not _IFACE.match(iface):
        issues.append((("spec", "tracker", "interface"), f"{iface!r} is not an interface name"))
    return issues


def _nginx_value_checks(doc: ClusterSpec) -> list[Issue]:
    """Written into nginx directives unquoted: nothing that would end or open one."""
    spec = doc.spec
    nginx_values = [(("spec", "loadbalancer", "nginx", "include_file"), spec.loadbalancer.nginx.include_file)]
    if spec.loadbalancer.access_log:
        nginx_values.append((("spec", "loadbalancer", "access_log"), spec.loadbalancer.access_log))
    return [
        (path, "must not hold spaces, ';', quotes, braces or '#' (it is written into nginx config)")
        for path, value in nginx_values
        if not _NGINX_TOKEN.match(value)
    ]


def _absolute_path_checks(doc: ClusterSpec) -> list[Issue]:
    spec = doc.spec
    return [
        (path, "must be an absolute path")
        for path, value in (
            (("spec", "sysctl", "file"), spec.sysctl.file),
            (("spec", "loadbalancer", "nginx", "binary"), spec.loadbalancer.nginx.binary),
            (("spec", "loadbalancer", "nginx", "main_config"), spec.loadbalancer.nginx.main_config),
            (("spec", "loadbalancer", "nginx", "include_file"), spec.loadbalancer.nginx.include_file),
            (("spec", "loadbalancer", "nginx", "pid_file"), spec.loadbalancer.nginx.pid_file),
        )
        if not value.startswith("/")
    ]


def _network_checks(doc: ClusterSpec) -> list[Issue]:
    spec = doc.spec
    lb = spec.loadbalancer
    issues: list[Issue] = []
    if not lb.enabled:
        return issues
    if spec.network.mode != "bridge":
        issues.append(
            (("spec", "network", "mode"), "the load balancer needs bridge networking (host mode gives every container the same ports)")
        )
    if not lb.listeners:
        issues.append((("spec", "loadbalancer", "listeners"), "the load balancer needs at least one listener"))
    names = [listener.name for listener in lb.listeners]
    for i, name in enumerate(names):
        if names.index(name) != i:
            issues.append((("spec", "loadbalancer", "listeners", i, "name"), f"listener name {name!r} is used twice"))
    if spec.network.backends == "published":
        for i, listener in enumerate(lb.listeners):
            if listener.host_port_base is None:
                issues.append(
                    (
                        ("spec", "loadbalancer", "listeners", i, "host_port_base"),
                        "required when backends are published on 127.0.0.1",
                    )
                )
    elif spec.network.subnet is None:
        issues.append((("spec", "network", "subnet"), "required when the load balancer reaches backends by address"))
    else:
        net = ipaddress.ip_network(spec.network.subnet, strict=False)
        if net.num_addresses - 3 < (spec.containers.count or 0):
            issues.append((("spec", "network", "subnet"), f"{net} has no room for {spec.containers.count} containers"))
    return issues


def _port_checks(doc: ClusterSpec) -> list[Issue]:
    """Every host port the cluster binds is bound once: metrics, published backends, listeners."""
    spec = doc.spec
    count = spec.containers.count or 0
    taken: dict[tuple[str, int], str] = {}
    issues: list[Issue] = []

    def claim(proto: str, port: int, owner: str, path: Path) -> None:
        if port > 65535:
            issues.append((path, f"{owner} would need port {port}, above 65535"))
        elif (proto, port) in taken:
            issues.append((path, f"{proto}/{port} of {owner} collides with {taken[(proto, port)]}"))
        else:
            taken[(proto, port)] = owner

    if spec.loadbalancer.enabled:
        for i, listener in enumerate(spec.loadbalancer.listeners):
            claim(listener.protocol, listener.port, f"listener {listener.name}", ("spec", "loadbalancer", "listeners", i, "port"))
    for index in range(1, count + 1):
        claim(
            "tcp",
            spec.conduit.metrics_port_base + index - 1,
            f"the metrics of container {index}",
            ("spec", "conduit", "metrics_port_base"),
        )
    if spec.loadbalancer.enabled and spec.network.backends == "published":
        for i, listener in enumerate(spec.loadbalancer.listeners):
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
