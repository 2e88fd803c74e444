from conduit.spec.load import load_text
from conduit.render.container import CONFIG_HASH, container_props, labels, render_containers
from conduit.spec.resolve import node_settings, with_cli_version
from tests.helpers import EXAMPLE, SMALL_VPS, dump, minimal


def spec(version="2.x", **parts):
    doc = load_text(dump(minimal(**parts)), "c.yaml", SMALL_VPS)
    return with_cli_version(doc, version)


def example(version="2.x"):
    return with_cli_version(load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS), version)


def test_2x_uses_short_flags_and_no_stats_file():
    doc = spec(conduit={"max_clients": 200, "bandwidth_mbps": 5})
    props = container_props(doc, node_settings(doc, 1))
    assert props["entrypoint"] is None
    assert props["command"] == ["start", "-m", "200", "-b", "5", "-d", "/home/conduit/data", "--metrics-addr", "127.0.0.1:9090"]
    assert props["network"] == "host" and props["ports"] == []


def test_1x_keeps_its_stats_file():
    doc = spec("1.x", conduit={"max_clients": 200, "bandwidth_mbps": -1})
    command = container_props(doc, node_settings(doc, 1))["command"]
    assert command[:5] == ["start", "-m", "200", "-b", "-1"] and command[-1] == "--stats-file"


def test_data_cap_runs_under_conduit_monitor():
    doc = spec(conduit={"max_clients": 100, "bandwidth_mbps": 2, "data_cap": {"traffic_limit_gb": 500, "period_days": 30}})
    props = container_props(doc, node_settings(doc, 1))
    assert props["entrypoint"] == ["conduit-monitor"]
    cmd = props["command"]
    # the monitor needs the data dir and metrics address itself, so they come before --
    assert cmd[: cmd.index("--")] == [
        "--traffic-limit", "500", "--traffic-period", "30",
        "--data-dir", "/home/conduit/data", "--metrics-addr", "127.0.0.1:9090",
    ]
    assert cmd[cmd.index("--") + 1 :] == ["-m", "100", "-b", "2"]


def test_bridge_publishes_one_host_port_per_container_port():
    doc = example()
    props = container_props(doc, node_settings(doc, 3))
    assert props["ports"] == ["127.0.0.1:8083:443/tcp", "127.0.0.1:8083:5566/udp", "127.0.0.1:9092:9090/tcp"]
    assert props["network"] == "conduit"
    assert "--metrics-addr" in props["command"] and "0.0.0.0:9090" in props["command"]


def test_network_backends_get_fixed_addresses():
    doc = load_text(
        EXAMPLE.read_text().replace("backends: published", "backends: network\n    subnet: 10.77.0.0/24"), "c", SMALL_VPS
    )
    props = container_props(doc, node_settings(doc, 3))
    assert props["ip"] == "10.77.0.4"
    assert all(":9090/tcp" in p for p in props["ports"])  # only metrics published


def test_limits_security_and_volume():
    doc = example()
    props = container_props(doc, node_settings(doc, 8))
    assert props["memory"] == 512 << 20 and props["cpus"] == 0.2 and props["ulimit_nofile"] == 16384
    assert props["security_opt"] == ["no-new-privileges:true"] and props["cap_drop"] == ["ALL"]
    assert props["volume"] == "conduit-data-8:/home/conduit/data"


def test_hash_covers_replace_only_fields():
    doc = example()
    node = node_settings(doc, 1)
    base = container_props(doc, node)
    more_memory = dict(base, memory=base["memory"] * 2)
    other_command = dict(base, command=base["command"] + ["-v"])
    h = labels(doc, node, base)[CONFIG_HASH]
    assert labels(doc, node, more_memory)[CONFIG_HASH] == h
    assert labels(doc, node, other_command)[CONFIG_HASH] != h


def test_render_lists_network_volumes_and_containers_in_order():
    kinds = [(r.kind, r.id) for r in render_containers(example())]
    assert kinds[0] == ("network", "conduit")
    assert [i for k, i in kinds if k == "volume"] == [f"conduit-data-{i}" for i in range(1, 9)]
    assert [i for k, i in kinds if k == "container"] == [f"conduit-{i}" for i in range(1, 9)]
    assert all(r.keep for r in render_containers(example()) if r.kind == "volume")
