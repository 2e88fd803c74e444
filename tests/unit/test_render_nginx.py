"""The nginx stream renderer, the include-line edits and the nginx driver on fixture roots, with the
front served by the system nginx (instance: system); the tool's own nginx is tests/unit/test_front_own.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conduit.drivers.nginx import bound_sockets, observe_nginx
from conduit.spec.load import load_file, load_text
from conduit.render.nginx import (
    MANAGED_MARK,
    body_digest,
    header_digest,
    insert_include,
    managed_cluster,
    remove_include,
    render_nginx,
    render_stream_conf,
)
from tests.helpers import EXAMPLE, SMALL_VPS, dump, minimal

LINE = "include /etc/nginx/conduit/stream.conf; # managed by conduit"
DEBIAN_CONF = """user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
include /etc/nginx/modules-enabled/*.conf;

events {
\tworker_connections 768;
}

http {
\tinclude /etc/nginx/conf.d/*.conf;
\tinclude /etc/nginx/sites-enabled/*;
}
"""


def with_lb(doc, **changes):
    lb = doc.spec.loadbalancer.model_copy(update=changes)
    return doc.model_copy(update={"spec": doc.spec.model_copy(update={"loadbalancer": lb})})


@pytest.fixture(scope="module")
def example():
    # Debian's worker_connections 768 holds fewer sessions than the example promises: a warning here,
    # so that the other problems stand alone (the capacity finding itself: test_front_own.py).
    return with_lb(load_file(EXAMPLE, SMALL_VPS), instance="system", capacity_check="warn")


def upstream(text: str, name: str) -> list[str]:
    block = re.search(r"upstream %s \{\n(.*?)\n    \}" % re.escape(name), text, re.S)
    assert block, f"no upstream {name}"
    return [line.strip() for line in block.group(1).splitlines()]


# ------------------------------------------------------------------ renderer


def test_three_resources_for_the_example(example):
    conf, include, nginx = render_nginx(example)
    assert (conf.kind, conf.id) == ("nginx_conf", "/etc/nginx/conduit/stream.conf")
    assert (include.kind, include.id) == ("nginx_include", "/etc/nginx/nginx.conf")
    assert include.props == {"line": LINE}
    assert (nginx.kind, nginx.id, nginx.props) == ("nginx", "nginx", {"running": True})


def test_example_upstreams(example):
    text = render_stream_conf(example)
    backends = [f"server 127.0.0.1:{port} max_fails=20 fail_timeout=30s;" for port in range(8081, 8089)]
    assert upstream(text, "conduit_edge-1_tcp443") == ["least_conn;", *backends]
    assert upstream(text, "conduit_edge-1_udp5566") == ["hash $remote_addr consistent;", *backends]


def test_example_servers_and_logging(example):
    text = render_stream_conf(example)
    assert text.startswith("# Managed by conduit for cluster edge-1: do not edit by hand")
    assert "log_format conduit_stream '$remote_addr" in text
    assert "    access_log /var/log/nginx/conduit-stream.log conduit_stream;\n" in text
    assert "limit_conn_zone $binary_remote_addr zone=conduit_edge-1_perip:10m;" in text
    tcp = re.search(r"listen 443 reuseport backlog=8192;\n(.*?)\n    \}", text, re.S).group(1)
    assert "proxy_pass conduit_edge-1_tcp443;" in tcp
    assert "proxy_connect_timeout 5s;" in tcp and "proxy_timeout 300s;" in tcp
    # a failed connect is tried on at most 3 backends, so one stalled client cannot count a failure on all
    assert "proxy_next_upstream_tries 3;" in tcp
    assert "limit_conn conduit_edge-1_perip 50;" in tcp
    udp = re.search(r"listen 5566 udp reuseport;\n(.*?)\n    \}", text, re.S).group(1)
    assert "proxy_pass conduit_edge-1_udp5566;" in udp and "proxy_timeout 300s;" in udp
    assert "proxy_connect_timeout" not in udp and "limit_conn" not in udp and "backlog" not in udp
    # never set: it would end multi-datagram sessions (only the comment names it)
    assert not re.search(r"^\s*proxy_responses", text, re.M)
    # never emitted: a second load_module of a module Debian already loads is fatal
    assert "load_module" not in text
    assert "worker_rlimit_nofile" not in text
    assert text.count("stream {") == 1 and text.endswith("}\n")


def test_header_digest_matches_body(example):
    text = render_stream_conf(example)
    assert managed_cluster(text) == "edge-1"
    assert header_digest(text) == body_digest(text)
    edited = text.replace("least_conn;", "random;")
    assert header_digest(edited) != body_digest(edited)


def test_round_robin_hash_and_no_udp_affinity(example):
    text = render_stream_conf(with_lb(example, tcp_algorithm="round_robin", udp_affinity=False))
    assert upstream(text, "conduit_edge-1_tcp443")[0].startswith("server ")
    assert upstream(text, "conduit_edge-1_udp5566")[0].startswith("server ")
    text = render_stream_conf(with_lb(example, tcp_algorithm="hash"))
    assert upstream(text, "conduit_edge-1_tcp443")[0] == "hash $remote_addr consistent;"


def test_access_log_off_no_limit_and_rlimit(example):
    text = render_stream_conf(with_lb(example, access_log=None, per_ip_connection_limit=0, worker_rlimit_nofile=65536))
    assert "    access_log off;\n" in text
    assert "limit_conn" not in text
    # main-context directive: before and outside the stream block
    assert re.search(r"^worker_rlimit_nofile 65536;$", text, re.M)
    assert text.index("worker_rlimit_nofile") < text.index("stream {")


def test_drained_backends_are_down_in_every_upstream(example):
    text = render_stream_conf(example, frozenset({2, 8}))
    for name in ("conduit_edge-1_tcp443", "conduit_edge-1_udp5566"):
        lines = upstream(name=name, text=text)
        down = [line for line in lines if line.endswith(" down;")]
        assert down == [
            "server 127.0.0.1:8082 max_fails=20 fail_timeout=30s down;",
            "server 127.0.0.1:8088 max_fails=20 fail_timeout=30s down;",
        ]
    assert render_nginx(example, frozenset()) == render_nginx(example)
    with pytest.raises(ValueError, match="cannot drain containers \\[9\\]"):
        render_stream_conf(example, frozenset({9}))


def test_backends_by_network_address():
    spec = minimal(
        host={"vcpus": 4, "memory": "8GiB", "nic_mbps": 1000},
        containers={"count": 3, "resources": {"cpus": 0.5, "memory": "256MiB", "ulimit_nofile": 4096}},
        network={"mode": "bridge", "subnet": "10.77.0.0/24", "backends": "network"},
        loadbalancer={"enabled": True, "listeners": [{"name": "web", "port": 8443, "backend_port": 443}]},
    )
    doc = load_text(dump(spec), "c.yaml", SMALL_VPS)
    assert upstream(render_stream_conf(doc), "conduit_test_web")[1:] == [
        f"server 10.77.0.{i + 1}:443 max_fails=20 fail_timeout=30s;" for i in (1, 2, 3)
    ]


def test_disabled_front_renders_nothing(example):
    assert render_nginx(with_lb(example, enabled=False)) == []


def test_unsafe_access_log_is_refused(example):
    with pytest.raises(ValueError, match="access_log"):
        render_stream_conf(with_lb(example, access_log="/var/log/x.log; error_log /tmp/y"))


# ------------------------------------------------------------------ the line in nginx.conf


def test_insert_after_debian_modules_include():
    out = insert_include(DEBIAN_CONF, LINE)
    lines = out.splitlines()
    assert lines[lines.index("include /etc/nginx/modules-enabled/*.conf;") + 1] == LINE
    assert remove_include(out) == DEBIAN_CONF


def test_insert_after_load_module_lines_not_inside_blocks():
    text = "load_module a.so;\nload_module b.so;\nuser x;\nevents {\n    load_module c.so;\n}\n"
    assert insert_include(text, LINE) == "load_module a.so;\nload_module b.so;\n" + LINE + "\nuser x;\nevents {\n    load_module c.so;\n}\n"


def test_insert_at_top_without_module_lines():
    assert insert_include("events {}\n", LINE) == LINE + "\nevents {}\n"
    assert insert_include("", LINE) == LINE + "\n"
    assert insert_include("load_module a.so;", LINE) == "load_module a.so;\n" + LINE + "\n"


def test_insert_is_idempotent_and_replaces_an_older_line_in_place():
    once = insert_include(DEBIAN_CONF, LINE)
    assert insert_include(once, LINE) == once
    older = once.replace("conduit/stream.conf", "old/stream.conf")
    assert insert_include(older, LINE) == once
    doubled = once.replace(LINE, LINE + "\ninclude /x.conf; " + MANAGED_MARK)
    assert insert_include(doubled, LINE) == once


def test_remove_is_idempotent():
    once = insert_include(DEBIAN_CONF, LINE)
    assert remove_include(once) == DEBIAN_CONF
    assert remove_include(DEBIAN_CONF) == DEBIAN_CONF


# ------------------------------------------------------------------ the driver on fixture roots

FAKE_NGINX = "#!/bin/sh\necho 'nginx version: nginx/1.22.1' >&2\necho 'configure arguments: {args}' >&2\n"


def make_root(tmp_path: Path, main: str | None = DEBIAN_CONF, stream: str = "dynamic", module_loaded=True,
              module_file=True) -> Path:
    root = tmp_path / "root"
    etc = root / "etc/nginx"
    (etc / "modules-enabled").mkdir(parents=True)
    if main is not None:
        (etc / "nginx.conf").write_text(main)
    if module_loaded:
        (etc / "modules-enabled/50-mod-stream.conf").write_text("load_module modules/ngx_stream_module.so;\n")
    if module_file:
        (root / "usr/lib/nginx/modules").mkdir(parents=True)
        (root / "usr/lib/nginx/modules/ngx_stream_module.so").write_bytes(b"\x7fELF")
    binary = root / "usr/sbin/nginx"
    binary.parent.mkdir(parents=True)
    args = "--with-stream=dynamic" if stream == "dynamic" else "--with-stream" if stream == "static" else ""
    binary.write_text(FAKE_NGINX.format(args=args))
    binary.chmod(0o755)
    return root


def kinds(obs) -> dict:
    return {r.kind: r for r in obs.resources}


def test_clean_host_reports_only_nginx_not_running(tmp_path, example):
    obs = observe_nginx(example, make_root(tmp_path))
    assert obs.problems == [] and obs.foreign == []
    assert [(r.kind, r.props) for r in obs.resources] == [("nginx", {"running": False})]


def test_managed_file_and_line_are_observed(tmp_path, example):
    root = make_root(tmp_path, main=insert_include(DEBIAN_CONF, LINE))
    (root / "etc/nginx/conduit").mkdir()
    wanted = {r.kind: r for r in render_nginx(example)}
    (root / "etc/nginx/conduit/stream.conf").write_text(wanted["nginx_conf"].props["content"])
    obs = observe_nginx(example, root)
    seen = kinds(obs)
    assert seen["nginx_conf"] == wanted["nginx_conf"]
    assert seen["nginx_include"] == wanted["nginx_include"]
    assert obs.problems == [] and obs.drifted == set()


def test_hand_edited_file_is_drifted(tmp_path, example):
    root = make_root(tmp_path)
    (root / "etc/nginx/conduit").mkdir()
    text = render_stream_conf(example).replace("max_fails=20", "max_fails=9")
    (root / "etc/nginx/conduit/stream.conf").write_text(text)
    obs = observe_nginx(example, root)
    assert kinds(obs)["nginx_conf"].props == {"content": text}
    assert obs.drifted == {("nginx_conf", "/etc/nginx/conduit/stream.conf")}


def test_foreign_file_is_refused(tmp_path, example):
    root = make_root(tmp_path)
    (root / "etc/nginx/conduit").mkdir()
    (root / "etc/nginx/conduit/stream.conf").write_text("stream { }\n")
    obs = observe_nginx(example, root)
    assert "nginx_conf" not in kinds(obs)
    assert obs.foreign == ["/etc/nginx/conduit/stream.conf"]
    assert obs.problems == ["/etc/nginx/conduit/stream.conf exists and is not managed by conduit; refusing to overwrite it"]
    # with the front off it is left alone and not a problem
    obs = observe_nginx(with_lb(example, enabled=False), root)
    assert obs.foreign == ["/etc/nginx/conduit/stream.conf"] and obs.problems == []


def test_another_clusters_file_is_refused(tmp_path, example):
    root = make_root(tmp_path)
    (root / "etc/nginx/conduit").mkdir()
    other = example.model_copy(update={"metadata": example.metadata.model_copy(update={"name": "edge-2"})})
    (root / "etc/nginx/conduit/stream.conf").write_text(render_stream_conf(other))
    obs = observe_nginx(example, root)
    assert "nginx_conf" not in kinds(obs)
    assert obs.problems == ["/etc/nginx/conduit/stream.conf belongs to conduit cluster edge-2; refusing to overwrite it"]


def test_disabled_front_still_reports_our_leftovers(tmp_path, example):
    root = make_root(tmp_path, main=insert_include(DEBIAN_CONF, LINE), stream="none", module_loaded=False)
    (root / "etc/nginx/conduit").mkdir()
    (root / "etc/nginx/conduit/stream.conf").write_text(render_stream_conf(example))
    obs = observe_nginx(with_lb(example, enabled=False), root)
    # so that the plan deletes them; nginx itself is not ours to stop, and no preflight runs
    assert sorted(kinds(obs)) == ["nginx_conf", "nginx_include"]
    assert obs.problems == []


def test_missing_binary(tmp_path, example):
    root = make_root(tmp_path)
    (root / "usr/sbin/nginx").unlink()
    obs = observe_nginx(example, root)
    assert obs.problems == ["nginx not found at /usr/sbin/nginx: apt-get install nginx libnginx-mod-stream"]


def test_missing_main_config(tmp_path, example):
    obs = observe_nginx(example, make_root(tmp_path, main=None))
    assert len(obs.problems) == 1
    assert obs.problems[0].startswith("/etc/nginx/nginx.conf not found")


def test_stream_module_not_loaded(tmp_path, example):
    obs = observe_nginx(example, make_root(tmp_path, module_loaded=False))
    (problem,) = obs.problems
    assert "does not load it" in problem and "libnginx-mod-stream" in problem
    assert "load_module /usr/lib/nginx/modules/ngx_stream_module.so;" in problem


def test_stream_module_not_installed(tmp_path, example):
    obs = observe_nginx(example, make_root(tmp_path, module_loaded=False, module_file=False))
    assert obs.problems == [
        "nginx has no stream module (/usr/lib/nginx/modules/ngx_stream_module.so is missing): "
        "apt-get install libnginx-mod-stream"
    ]


def test_stream_module_loaded_from_nginx_conf_or_compiled_in(tmp_path, example):
    main = "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n" + DEBIAN_CONF
    assert observe_nginx(example, make_root(tmp_path / "a", main=main, module_loaded=False)).problems == []
    static = make_root(tmp_path / "b", stream="static", module_loaded=False, module_file=False)
    assert observe_nginx(example, static).problems == []


def test_own_stream_block_is_a_problem(tmp_path, example):
    main = DEBIAN_CONF + "\nstream {\n    server { listen 9999; proxy_pass 127.0.0.1:1; }\n}\n"
    (problem,) = observe_nginx(example, make_root(tmp_path, main=main)).problems
    assert problem.startswith("/etc/nginx/nginx.conf already has a stream block (/etc/nginx/nginx.conf:16)")


def test_stream_block_in_a_main_level_include_is_found(tmp_path, example):
    root = make_root(tmp_path)
    (root / "etc/nginx/modules-enabled/60-other.conf").write_text("stream { }\n")
    (problem,) = observe_nginx(example, root).problems
    assert "already has a stream block (/etc/nginx/modules-enabled/60-other.conf:1)" in problem


def test_include_file_inside_http_is_a_problem(tmp_path, example):
    doc = with_lb(example, nginx=example.spec.loadbalancer.nginx.model_copy(update={"include_file": "/etc/nginx/conf.d/conduit.conf"}))
    (problem,) = observe_nginx(doc, make_root(tmp_path)).problems
    assert "included inside a block" in problem and "include /etc/nginx/conf.d/*.conf" in problem


def test_worker_rlimit_twice_is_a_problem(tmp_path, example):
    main = "worker_rlimit_nofile 4096;\n" + DEBIAN_CONF
    root = make_root(tmp_path, main=main)
    assert observe_nginx(example, root).problems == []
    (problem,) = observe_nginx(with_lb(example, worker_rlimit_nofile=65536), root).problems
    assert "already sets worker_rlimit_nofile" in problem


# --------------------------------------------------------- nginx running and ports, from a fixture /proc

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def socket_row(address: str, port: int, state: str, inode: int) -> str:
    return f"   0: {address}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0\n"


def fake_proc(root: Path, tables: dict[str, list[str]], processes: dict[int, tuple[str, int, list[int]]]):
    """tables: name -> rows; processes: pid -> (cmdline, ppid, socket inodes)."""
    proc = root / "proc"
    (proc / "net").mkdir(parents=True)
    for name in ("tcp", "tcp6", "udp", "udp6"):
        (proc / "net" / name).write_text(TCP_HEADER + "".join(tables.get(name, [])))
    for pid, (cmdline, ppid, inodes) in processes.items():
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(cmdline.encode().replace(b" ", b"\0") + b"\0")
        (proc / str(pid) / "comm").write_text(cmdline.split()[0].split("/")[-1] + "\n")
        (proc / str(pid) / "stat").write_text(f"{pid} (x) S {ppid} 1 1 0\n")
        for n, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", proc / str(pid) / "fd" / str(10 + n))


def running_nginx_root(tmp_path, example, served: bool):
    root = make_root(tmp_path)
    master = os.getpid()  # alive for os.kill(pid, 0); its cmdline comes from the fixture /proc
    (root / "run").mkdir()
    (root / "run/nginx.pid").write_text(f"{master}\n")
    fake_proc(
        root,
        {"tcp": [socket_row("00000000", 443, "0A", 501)], "udp": [socket_row("00000000", 5566, "07", 502)]},
        {master: ("nginx: master process /usr/sbin/nginx", 1, [501]), 77777: ("nginx: worker process", master, [502])},
    )
    if served:
        (root / "etc/nginx/conduit").mkdir()
        (root / "etc/nginx/conduit/stream.conf").write_text(render_stream_conf(example))
    return root


def test_running_nginx_holding_our_ports_is_fine(tmp_path, example):
    obs = observe_nginx(example, running_nginx_root(tmp_path, example, served=True))
    assert kinds(obs)["nginx"].props == {"running": True}
    assert obs.problems == []


def test_running_nginx_holding_the_port_for_another_server(tmp_path, example):
    obs = observe_nginx(example, running_nginx_root(tmp_path, example, served=False))
    assert obs.problems == [
        "port 443/tcp is already in use by nginx itself (a server outside conduit's stream file listens on it)",
        "port 5566/udp is already in use by nginx itself (a server outside conduit's stream file listens on it)",
    ]


def test_port_held_by_another_process(tmp_path, example):
    root = make_root(tmp_path)
    fake_proc(
        root,
        {"tcp6": [socket_row("00000000000000000000000000000000", 443, "0A", 900),
                  socket_row("00000000000000000000000001000000", 5566, "0A", 901)],  # ::1, TCP: no clash
         "udp": [socket_row("0100007F", 5566, "01", 902)]},  # connected, not bound for receiving
        {4242: ("/usr/bin/caddy run", 1, [900])},
    )
    obs = observe_nginx(example, root)
    assert kinds(obs)["nginx"].props == {"running": False}
    assert obs.problems == ["port 443/tcp is already in use by another process (pid 4242 (caddy)); "
                            f"stop that process or change listener {example.spec.loadbalancer.listeners[0].name}'s port in spec.loadbalancer.listeners"]


def test_bound_sockets_filters_state_and_v6_addresses(tmp_path):
    root = tmp_path
    fake_proc(root, {
        "tcp": [socket_row("0100007F", 80, "0A", 1), socket_row("0100007F", 80, "06", 2)],
        "tcp6": [socket_row("0000000000000000FFFF00000100007F", 80, "0A", 3),
                 socket_row("000080FE00000000FF005450B6AD1DFE", 80, "0A", 4)],
    }, {})
    assert bound_sockets(root / "proc", "tcp") == {80: {1, 3}}  # the v4 and v4-mapped listeners, merged
    assert bound_sockets(root / "proc", "udp") == {}
