"""A node's create body, written by conduit for Docker's API, is the one the Docker SDK wrote for the
same node before (its create_container and create_host_config, used here as the reference)."""

from __future__ import annotations

import docker
import docker.types
import pytest

from conduit.drivers.docker import container_config
from conduit.drivers.dockerapi import API_VERSION

BRIDGE = {
    "image": "ghcr.io/psiphon-inc/conduit/cli:latest", "image_id": "sha256:" + "a" * 64, "entrypoint": None,
    "command": ["start", "-m", "50", "-b", "2", "-d", "/home/conduit/data"], "env": {"A": "b", "C": "d=e"},
    "network": "cn", "ip": "172.30.7.12", "ports": ["127.0.0.1:9090:9090/tcp", "0.0.0.0:9443:443/udp"],
    "volume": "conduit-data-1:/home/conduit/data", "ulimit_nofile": 16384, "restart_policy": "unless-stopped",
    "security_opt": ["no-new-privileges:true"], "cap_drop": ["ALL"], "read_only": False,
    "log_config": {"type": "json-file", "max-size": "15m", "max-file": "3"}, "cpus": 0.9, "memory": 1879048192,
}  # fmt: skip
HOST = BRIDGE | {"network": "host", "ip": None, "ports": [], "env": {}, "security_opt": [], "cap_drop": [], "read_only": True,
                 "entrypoint": ["conduit-monitor", "--"], "cpus": 0.333}  # fmt: skip
LABELS = {"io.conduit.managed-by": "conduit", "io.conduit.config": "{}"}


def sdk_body(props: dict, image: str) -> dict:
    """The body docker-py built for /containers/create from these props (as conduit called it before)."""
    api = docker.APIClient(base_url="unix:///nowhere.sock", version=API_VERSION)
    bindings = {target: (host_ip, int(host_port)) for host_ip, host_port, target in (p.split(":") for p in props["ports"])}
    volume, target = props["volume"].split(":", 1)
    host_config = api.create_host_config(
        binds={volume: {"bind": target, "mode": "rw"}}, port_bindings=bindings, network_mode=props["network"],
        restart_policy={"Name": props["restart_policy"]},
        ulimits=[docker.types.Ulimit(name="nofile", soft=props["ulimit_nofile"], hard=props["ulimit_nofile"])],
        security_opt=props["security_opt"] or None, cap_drop=props["cap_drop"] or None, read_only=props["read_only"],
        log_config=docker.types.LogConfig(type="json-file", config={k: v for k, v in props["log_config"].items() if k != "type"}),
        nano_cpus=int(round(props["cpus"] * 1e9)), mem_limit=props["memory"], memswap_limit=props["memory"],
    )  # fmt: skip
    networking = None
    if props["network"] != "host" and props.get("ip"):
        networking = api.create_networking_config({props["network"]: api.create_endpoint_config(ipv4_address=props["ip"])})
    ports = [(int(p.split("/")[0]), p.split("/")[1]) for p in bindings]
    environment = [f"{k}={v}" for k, v in props["env"].items()] or None  # as create_container formats a dict
    return api.create_container_config(image, props["command"], detach=True, ports=ports, environment=environment,
                                       entrypoint=props["entrypoint"], host_config=host_config, labels=LABELS,
                                       networking_config=networking)  # fmt: skip


def meaningful(body: dict) -> dict:
    """What Docker reads of a body: null, false and empty values are its defaults."""
    if isinstance(body, dict):
        return {k: meaningful(v) for k, v in body.items() if v not in (None, False, {}, [])}
    return body


@pytest.mark.parametrize("props", [BRIDGE, HOST], ids=["bridge with ports and an address", "host network"])
def test_the_create_body_is_what_the_sdk_sent_for_the_same_node(props):
    ours, theirs = container_config(props, LABELS, props["image_id"]), sdk_body(props, props["image_id"])
    assert meaningful(ours) == meaningful(theirs)
    assert ours["ExposedPorts"] == theirs["ExposedPorts"]  # its values are empty objects, which `meaningful` drops
    assert ours["HostConfig"]["MemorySwap"] == ours["HostConfig"]["Memory"] == props["memory"]
