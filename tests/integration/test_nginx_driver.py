"""Real nginx accepts what the renderer writes, and the driver sees a real nginx and real sockets."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from conduit.drivers.nginx import bound_sockets, observe_nginx
from conduit.spec.load import load_file, load_text
from conduit.render.nginx import insert_include, render_nginx
from conduit.spec.profiles import HostFacts
from harness import free_port
from tests.helpers import EXAMPLE, SMALL_VPS, dump, minimal
from tests.strategies import valid_specs

pytestmark = pytest.mark.integration

NGINX = "/usr/sbin/nginx"
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
BIG_HOST = HostFacts(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=20000)


def unavailable(reason: str) -> None:
    """Skip, or fail when CI is "true": there a missing nginx is a broken runner."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    if not os.access(NGINX, os.X_OK):
        unavailable(f"nginx not found at {NGINX} (apt-get install nginx)")
    if not Path(STREAM_MODULE).exists():
        unavailable(f"nginx stream module {STREAM_MODULE} not found (apt-get install libnginx-mod-stream)")
    return NGINX


def in_dir(doc, directory: Path):
    """The spec with every nginx path (and the access log) inside `directory`."""
    lb = doc.spec.loadbalancer
    paths = lb.nginx.model_copy(
        update={
            "main_config": str(directory / "nginx.conf"),
            "include_file": str(directory / "conduit" / "stream.conf"),
            "pid_file": str(directory / "nginx.pid"),
        }
    )
    access_log = str(directory / "stream-access.log") if lb.access_log else None
    lb = lb.model_copy(update={"nginx": paths, "access_log": access_log, "instance": "system"})
    return doc.model_copy(update={"spec": doc.spec.model_copy(update={"loadbalancer": lb})})


def write_rendered(doc, directory: Path, drained: frozenset[int] = frozenset()) -> Path:
    """Write the rendered stream file and the main config that includes it, as apply would."""
    main = directory / "nginx.conf"
    main.write_text(
        f"load_module {STREAM_MODULE};\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'};\n"
        "events {}\n"
    )
    for resource in render_nginx(doc, drained):
        if resource.kind == "nginx_conf":
            Path(resource.id).parent.mkdir(parents=True, exist_ok=True)
            Path(resource.id).write_text(resource.props["content"])
        elif resource.kind == "nginx_include":
            main.write_text(insert_include(main.read_text(), resource.props["line"]))
    return main


def nginx_test(binary: str, directory: Path, main: Path) -> None:
    result = subprocess.run(
        [binary, "-t", "-p", f"{directory}/", "-e", "stderr", "-c", str(main)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr + "\n" + (directory / "conduit" / "stream.conf").read_text()


@pytest.mark.parametrize(
    "changes, drained",
    [
        ({}, frozenset()),
        ({}, frozenset(range(1, 9))),  # every backend drained: still a valid config
        ({"worker_rlimit_nofile": 65536, "access_log": None, "per_ip_connection_limit": 0}, frozenset({3})),
        ({"tcp_algorithm": "hash", "udp_affinity": False}, frozenset()),
        ({"tcp_algorithm": "round_robin", "max_fails": 0}, frozenset()),
    ],
)
def test_nginx_accepts_the_example(nginx_binary, tmp_path, changes, drained):
    doc = load_file(EXAMPLE, SMALL_VPS)
    doc = doc.model_copy(update={"spec": doc.spec.model_copy(update={
        "loadbalancer": doc.spec.loadbalancer.model_copy(update=changes)})})
    doc = in_dir(doc, tmp_path)
    main = write_rendered(doc, tmp_path, drained)
    assert main.read_text().splitlines()[1].endswith("# managed by conduit")
    nginx_test(nginx_binary, tmp_path, main)


def test_nginx_accepts_network_backends_and_odd_cluster_names(nginx_binary, tmp_path):
    spec = minimal(
        host={"vcpus": 4, "memory": "8GiB", "nic_mbps": 1000},
        containers={"count": 3, "resources": {"cpus": 0.5, "memory": "256MiB", "ulimit_nofile": 4096}},
        network={"mode": "bridge", "subnet": "10.77.0.0/24", "backends": "network"},
        loadbalancer={"enabled": True, "per_ip_connection_limit": 5, "listeners": [
            {"name": "web_1.a", "port": 8443, "backend_port": 443},
            {"name": "dns", "port": 8053, "protocol": "udp", "backend_port": 53},
        ]},
    )
    spec["metadata"]["name"] = "edge.eu_1"
    doc = in_dir(load_text(dump(spec), "c.yaml", SMALL_VPS), tmp_path)
    nginx_test(nginx_binary, tmp_path, write_rendered(doc, tmp_path))


@given(valid_specs().filter(lambda d: d["spec"].get("loadbalancer", {}).get("enabled")))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_nginx_accepts_generated_specs(nginx_binary, data):
    doc = load_text(yaml.safe_dump(data, sort_keys=False), "c.yaml", BIG_HOST)
    with tempfile.TemporaryDirectory(prefix="cdk-ngxt") as tmp:
        directory = Path(tmp)
        doc = in_dir(doc, directory)
        nginx_test(nginx_binary, directory, write_rendered(doc, directory))


# ------------------------------------------------------------------ the driver against real processes


def front_spec(nginx_paths: dict, tcp_port: int, udp_port: int):
    spec = minimal(
        host={"vcpus": 4, "memory": "8GiB", "nic_mbps": 1000},
        containers={"count": 2, "resources": {"cpus": 0.5, "memory": "256MiB", "ulimit_nofile": 4096}},
        network={"mode": "bridge"},
        loadbalancer={
            "enabled": True,
            "listeners": [
                {"name": "t", "port": tcp_port, "protocol": "tcp", "backend_port": 443, "host_port_base": 20001},
                {"name": "u", "port": udp_port, "protocol": "udp", "backend_port": 5566, "host_port_base": 20001},
            ],
            "access_log": None,
            "nginx": nginx_paths,
            # the system nginx's include line; its worker_connections are weighed in test_front_own.py
            "instance": "system",
            "capacity_check": "warn",
        },
    )
    return load_text(dump(spec), "c.yaml", SMALL_VPS)


def test_nginx_accepts_the_own_main_config(nginx_binary, tmp_path):
    """The own nginx's main config, sized for 20,000 sessions, with the stream file it includes."""
    doc = in_dir(load_file(EXAMPLE, SMALL_VPS), tmp_path)
    lb = doc.spec.loadbalancer
    paths = lb.nginx.model_copy(update={"instance_config": str(tmp_path / "own.conf"), "instance_pid_file": str(tmp_path / "own.pid"),
                                        "error_log": str(tmp_path / "own-error.log")})
    lb = lb.model_copy(update={"nginx": paths, "instance": "own", "capacity": 20000})
    doc = doc.model_copy(update={"spec": doc.spec.model_copy(update={"loadbalancer": lb})})
    resources = {r.kind: r for r in render_nginx(doc)}
    (tmp_path / "conduit").mkdir()
    Path(resources["nginx_conf"].id).write_text(resources["nginx_conf"].props["content"])
    main = Path(resources["nginx_main"].id)
    main.write_text(resources["nginx_main"].props["content"])
    assert "worker_connections" in main.read_text()
    nginx_test(nginx_binary, tmp_path, main)


def test_driver_sees_a_running_nginx_that_holds_our_ports(nginx_server):
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    include = nginx_server.include_dir / "conduit-stream.conf"
    doc = front_spec(
        {
            "binary": nginx_server.binary,
            "main_config": str(nginx_server.main_conf),
            "include_file": str(include),
            "pid_file": str(nginx_server.pid_file),
        },
        tcp_port,
        udp_port,
    )
    wanted = {r.kind: r for r in render_nginx(doc)}
    # keep the test's listeners on loopback; the driver reads listen lines with an address too
    content = re.sub(r"listen (\d+)", r"listen 127.0.0.1:\1", wanted["nginx_conf"].props["content"])
    include.write_text(content)
    nginx_server.main_conf.write_text(insert_include(nginx_server.main_conf.read_text(), wanted["nginx_include"].props["line"]))
    nginx_server.reload()

    # nginx really holds both ports: the preflight must recognise them as its own
    proc = Path("/proc")
    assert bound_sockets(proc, "tcp").get(tcp_port) and bound_sockets(proc, "udp").get(udp_port)
    obs = observe_nginx(doc, Path("/"))
    seen = {r.kind: r for r in obs.resources}
    assert seen["nginx"].props == {"running": True}
    assert seen["nginx_conf"].props == {"content": content}
    assert seen["nginx_include"] == wanted["nginx_include"]
    assert obs.problems == [] and obs.foreign == []
    assert obs.drifted == {("nginx_conf", str(include))}  # the listen lines were edited by hand above

    nginx_server.stop()
    obs = observe_nginx(doc, Path("/"))
    assert {r.kind: r for r in obs.resources}["nginx"].props == {"running": False}


def test_port_in_use_by_another_process(tmp_path):
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        udp.bind(("127.0.0.1", 0))
        tcp_port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        main = tmp_path / "nginx.conf"
        main.write_text(f"load_module {STREAM_MODULE};\nevents {{}}\n")
        doc = front_spec(
            {"main_config": str(main), "include_file": str(tmp_path / "s.conf"), "pid_file": str(tmp_path / "none.pid")},
            tcp_port,
            udp_port,
        )
        problems = [p for p in observe_nginx(doc, Path("/")).problems if p.startswith("port ")]
        me = f"pid {os.getpid()} ("
        assert len(problems) == 2, problems
        assert problems[0].startswith(f"port {tcp_port}/tcp is already in use by another process ({me}")
        assert problems[1].startswith(f"port {udp_port}/udp is already in use by another process ({me}")
    finally:
        tcp.close()
        udp.close()
    assert [p for p in observe_nginx(doc, Path("/")).problems if p.startswith("port ")] == []


def test_preflight_on_this_hosts_nginx(nginx_binary, tmp_path):
    """The real nginx -V and a Debian-style main config: no problem; without the module line: one."""
    main = tmp_path / "nginx.conf"
    enabled = tmp_path / "modules-enabled"
    enabled.mkdir()
    (enabled / "50-mod-stream.conf").write_text(f"load_module {STREAM_MODULE};\n")
    main.write_text("include modules-enabled/*.conf;\nevents {}\n")
    paths = {"main_config": str(main), "include_file": str(tmp_path / "s.conf"), "pid_file": str(tmp_path / "none.pid")}
    doc = front_spec(paths, free_port(), free_port(socket.SOCK_DGRAM))
    version = subprocess.run([nginx_binary, "-V"], capture_output=True, text=True).stderr
    assert observe_nginx(doc, Path("/")).problems == []
    if "--with-stream=dynamic" in version:
        (enabled / "50-mod-stream.conf").unlink()
        (problem,) = observe_nginx(doc, Path("/")).problems
        assert "libnginx-mod-stream" in problem
    shutil.rmtree(enabled)


def test_a_reload_is_taken_once_the_master_runs_workers_of_the_new_configuration(nginx_server, tmp_path):
    """What the nginx phase waits for after its reload, instead of a fixed pause; a reload the master
    refuses keeps the old workers, which the gate then reports."""
    from conduit.drivers.nginx import children
    from conduit.execute.executor import Executor
    from tests.helpers import poll

    ex = Executor(target=None, root=Path("/"), state_dir=tmp_path, client=None)
    master = nginx_server.master_pid()
    workers = children(Path("/proc"), master)
    assert workers and "started no workers with the new configuration" in ex.reload_pending(master, workers)
    before = ex.hangup(master)
    assert before == workers
    assert poll(lambda: ex.reload_pending(master, before), 30) is None
    assert children(Path("/proc"), master) - before

    nginx_server.main_conf.write_text(nginx_server.main_conf.read_text() + "\nnot_a_directive on;\n")
    before = ex.hangup(master)
    reason = poll(lambda: ex.reload_pending(master, before), 1)
    assert reason == f"nginx (master pid {master}) started no workers with the new configuration after its reload; its error log says why"
    assert not children(Path("/proc"), master) - before  # the old workers serve on
