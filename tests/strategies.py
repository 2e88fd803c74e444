"""Hypothesis strategies for specs: mutated ones for the loader, valid ones for renderers and planner."""

from __future__ import annotations

import copy

import yaml
from hypothesis import strategies as st

from tests.helpers import EXAMPLE, minimal

EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["auto", "384MiB", "4g", "-1", "no", "host", "bridge", "1.x", "2.x", "", "0", "65536"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _paths(value, prefix + (i,))


@st.composite
def mutated_examples(draw) -> dict:
    """The example spec with a few fields replaced, deleted or added."""
    data = copy.deepcopy(EXAMPLE_DATA)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return data


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)


@st.composite
def valid_specs(draw) -> dict:
    """Specs that fit a 4 vCPU / 8 GiB host, across the choices the language offers."""
    count = draw(st.integers(1, 6))
    cpus = draw(st.sampled_from([0.1, 0.25, 0.5]))
    memory = draw(st.sampled_from(["128MiB", "256MiB", "384m", "1GiB"]))
    lb = draw(st.booleans())
    spec: dict = {
        "host": {"vcpus": 4, "memory": "8GiB", "nic_mbps": 1000, "profile": draw(st.sampled_from(["official", "cluster-v2"]))},
        "containers": {
            "count": count,
            "image": draw(st.sampled_from(["conduit-standin:2.0.0", "ghcr.io/psiphon-inc/conduit/cli:2.0.0", "ghcr.io/psiphon-inc/conduit/cli:1.5.0"])),
            "naming": {"scheme": draw(st.sampled_from(["indexed", "v1"])), "prefix": draw(NAMES)},
            "resources": {"cpus": cpus, "memory": memory, "ulimit_nofile": draw(st.sampled_from([1024, 4096, 16384]))},
            "restart_policy": draw(st.sampled_from(["no", "always", "unless-stopped", "on-failure"])),
            "env": draw(st.dictionaries(st.from_regex(r"X[A-Z_]{0,6}", fullmatch=True), st.text(max_size=8), max_size=2)),
        },
        "network": {"mode": "bridge" if lb else draw(st.sampled_from(["host", "bridge"]))},
        "conduit": {
            "cli_version": draw(st.sampled_from(["1.x", "2.x"])),
            "max_clients": draw(st.integers(1, 1000)),
            "bandwidth_mbps": draw(st.sampled_from([-1, 1, 2.5, 40])),
            "metrics_port_base": draw(st.integers(9000, 9500)),
        },
        "sysctl": {
            "profile": draw(st.sampled_from(["conduit", "cluster-v2", "none"])),
            "overrides": draw(st.dictionaries(st.sampled_from(["net.core.rmem_max", "net.core.wmem_max", "fs.nr_open"]), st.integers(100000, 10**8), max_size=2)),
        },
        "tracker": {"enabled": draw(st.booleans())},
    }
    if draw(st.booleans()):
        spec["conduit"]["data_cap"] = {"traffic_limit_gb": draw(st.integers(100, 5000)), "period_days": draw(st.integers(7, 60))}
    if count > 1 and draw(st.booleans()):
        spec["containers"]["overrides"] = {count: {"max_clients": draw(st.integers(1, 1000)), "memory": "200MiB"}}
    if lb:
        spec["loadbalancer"] = {
            "enabled": True,
            "listeners": [
                {"name": "tcp", "port": draw(st.integers(1000, 1999)), "protocol": "tcp", "backend_port": 443, "host_port_base": 20000},
                {"name": "udp", "port": draw(st.integers(1000, 1999)), "protocol": "udp", "backend_port": 5566, "host_port_base": 20000},
            ],
            "tcp_algorithm": draw(st.sampled_from(["least_conn", "round_robin", "hash"])),
            "udp_affinity": draw(st.booleans()),
            "per_ip_connection_limit": draw(st.integers(0, 100)),
            "access_log": draw(st.sampled_from([None, "/var/log/nginx/c.log"])),
        }
    doc = minimal(**spec)
    doc["metadata"]["name"] = draw(NAMES)
    return doc


@st.composite
def conduit_settings(draw) -> dict:
    """conduit: settings across every field the image's version and build decide on."""
    conduit: dict = {
        "max_clients": draw(st.integers(1, 1000)),
        "bandwidth_mbps": draw(st.one_of(st.just(-1), st.floats(1, 10000, allow_nan=False, allow_infinity=False))),
        "verbosity": draw(st.integers(0, 2)),
    }
    if draw(st.booleans()):
        conduit["max_personal_clients"] = draw(st.integers(0, 1000))
    if draw(st.booleans()):
        hour = st.integers(0, 23).map(str)
        start = draw(st.tuples(hour, st.integers(0, 59)).map(lambda t: f"{t[0]}:{t[1]:02d}"))
        end = draw(st.tuples(hour, st.integers(0, 59)).map(lambda t: f"{t[0]}:{t[1]:02d}").filter(lambda e: e != start))
        conduit["reduced_hours"] = {"start": start, "end": end, "max_clients": draw(st.integers(1, conduit["max_clients"]))}
    if draw(st.booleans()):
        conduit["idle_restart"] = draw(st.sampled_from(["30m", "1h", "2h30m", "90m"]))
    if draw(st.booleans()):
        conduit["data_cap"] = {
            "traffic_limit_gb": draw(st.integers(100, 5000)),
            "period_days": draw(st.integers(7, 60)),
            "bandwidth_threshold_percent": draw(st.integers(60, 90)),
            "min_connections": draw(st.integers(1, 1000)),
            "min_bandwidth_mbps": draw(st.integers(1, 100)),
        }
    return conduit
