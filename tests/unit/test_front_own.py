"""The tool's own nginx: its main config sized for the spec's capacity, its unit, the capacity
preflight's numbers, and the driver's view of it on fixture roots."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conduit.drivers.nginx import observe_nginx
from conduit.facts.capacity import HostLimits, capacity_findings, effective, front_sizing, size, system_findings
from conduit.render.nginx import render_main_conf, render_nginx, render_nginx_unit
from conduit.errors import SpecError
from conduit.spec.load import load_text
from conduit.spec.policy import HostPolicy
from tests.helpers import SMALL_VPS, minimal
from tests.unit.test_render_nginx import kinds, make_root

ROOMY = HostLimits(nofile_hard=1 << 20, may_raise=True, file_max=10_000_000, nr_open=1 << 20, port_range=(10240, 65535))


def fronted(count: int = 4, max_clients: int = 1000, **lb) -> dict:
    doc = minimal(containers={"count": count, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0"})
    doc["spec"]["conduit"] = {"max_clients": max_clients, "cli_version": "2.0", "build": "official"}
    doc["spec"]["network"] = {"mode": "bridge", "backends": "published"}
    listeners = [{"name": "tcp", "port": 8443, "backend_port": 443, "host_port_base": 9000}]
    doc["spec"]["loadbalancer"] = {"enabled": True, "listeners": listeners, **lb}
    return doc


def load(doc: dict, policy=(HostPolicy(), "the default host policy")):
    return load_text(yaml.safe_dump(doc), "cluster.yaml", SMALL_VPS, policy)


# ------------------------------------------------------------------ the own main config


def test_own_front_renders_a_stream_file_its_main_config_and_the_process():
    stream, main, nginx = render_nginx(load(fronted()))
    assert (stream.kind, stream.id) == ("nginx_conf", "/etc/nginx/conduit/stream.conf")
    assert (main.kind, main.id) == ("nginx_main", "/etc/nginx/conduit/nginx.conf")
    assert (nginx.kind, nginx.props) == ("nginx", {"running": True})
    assert "Included from /etc/nginx/conduit/nginx.conf, the main config of conduit's own nginx." in stream.props["content"]
    assert "worker_rlimit_nofile" not in stream.props["content"]


def test_main_config_is_sized_for_four_backends_of_a_thousand():
    text = render_main_conf(load(fronted(worker_processes=2)))
    lines = [line.strip() for line in text.splitlines() if line and not line.startswith("#")]
    # 4,000 sessions, two connections each, over two workers: 4,000 each and an eighth more
    assert lines == [
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
        "pid /run/conduit-nginx.pid;",
        "error_log /var/log/nginx/conduit-error.log warn;",
        "worker_processes 2;",
        "worker_rlimit_nofile 5528;",
        "events {",
        "worker_connections 4502;",
        "multi_accept on;",
        "}",
        "include /etc/nginx/conduit/stream.conf;",
    ]
    assert text.startswith("# Managed by conduit for cluster test: do not edit by hand")


def test_capacity_workers_and_a_built_in_module():
    doc = load(fronted(capacity=20000, worker_processes=4, nginx={"stream_module": None}))
    text = render_main_conf(doc, "/etc/nginx/conduit/.stream.conf.candidate")
    assert "load_module" not in text
    assert "worker_processes 4;" in text and "worker_connections 11254;" in text
    assert "include /etc/nginx/conduit/.stream.conf.candidate;" in text
    assert "Sized for 20000 sessions per listener x 1 listener(s)" in text


def test_default_capacity_is_the_nodes_max_clients_and_workers_one_per_cpu():
    sizing = front_sizing(load(fronted(count=3, max_clients=500)))
    assert (sizing.capacity, sizing.listeners, sizing.workers) == (1500, 1, 2)  # SMALL_VPS has 2 vCPUs


def test_rlimit_from_the_spec_is_a_floor():
    assert front_sizing(load(fronted(worker_rlimit_nofile=200000))).rlimit_nofile == 200000
    assert front_sizing(load(fronted(worker_rlimit_nofile=1024, worker_processes=2))).rlimit_nofile == 5528  # sized above it


@given(st.integers(1, 10_000_000), st.integers(1, 8), st.integers(1, 256))
def test_sizing_holds_two_connections_per_session(capacity, listeners, workers):
    s = size(capacity, listeners, workers)
    assert s.worker_connections * s.workers >= 2 * capacity * listeners
    assert s.rlimit_nofile >= s.worker_connections


def test_unit_runs_the_own_config_with_the_sized_limit():
    unit = render_nginx_unit(load(fronted(worker_processes=2)))
    assert "ExecStart=/usr/sbin/nginx -e /var/log/nginx/conduit-error.log -c /etc/nginx/conduit/nginx.conf" in unit
    assert "PIDFile=/run/conduit-nginx.pid" in unit and "LimitNOFILE=5528" in unit


# ------------------------------------------------------------------ the host policy


def test_own_paths_stay_under_the_policy():
    with pytest.raises(SpecError) as info:
        load(fronted(nginx={"instance_config": "/etc/cron.d/x", "instance_pid_file": "/tmp/p", "error_log": "/root/e",
                            "stream_module": "/tmp/evil.so"}))
    text = str(info.value)
    for field in ("instance_config", "instance_pid_file", "error_log", "stream_module"):
        assert f"spec.loadbalancer.nginx.{field}" in text


# ------------------------------------------------------------------ the preflight's numbers


def test_a_promise_that_fits_has_no_finding():
    doc = load(fronted(capacity=20000))
    assert capacity_findings(doc, front_sizing(doc), ROOMY) == []


def test_each_limit_is_reported_with_its_numbers():
    spec = fronted(capacity=40000, worker_processes=1)
    spec["spec"]["containers"]["resources"] = {"ulimit_nofile": 8192}
    doc = load(spec)
    tight = HostLimits(nofile_hard=20000, may_raise=False, file_max=100_000, nr_open=1 << 20, port_range=(32768, 40767))
    found = capacity_findings(doc, front_sizing(doc), tight)
    assert len(found) == 4, found
    rlimit, files, ports, backends = found
    assert "needs 91026 open files (worker_connections 90001) but the open-file hard limit nginx inherits" in rlimit
    assert "(no CAP_SYS_RESOURCE to raise it) is 20000" in rlimit
    assert "at most about 8433 per listener fits" in rlimit
    assert "120000 open files" in files and "fs.file-max is 100000; at most 33333 per listener fits" in files
    assert "10000 connections to each of 4 backend addresses" in ports and "holds 8000 ports per address; at most 32000" in ports
    assert "10000 sessions on each of 4 backends but their ulimit_nofile is 8192; at most 32768 per listener fits" in backends


def test_raising_is_bounded_by_nr_open_and_the_sysctl_values_of_this_apply_count():
    doc = load(fronted(capacity=40000, worker_processes=1))
    low = HostLimits(nofile_hard=1024, may_raise=True, file_max=100_000, nr_open=65536, port_range=(32768, 60999))
    found = capacity_findings(doc, front_sizing(doc), low)
    assert any("fs.nr_open is 65536" in f for f in found)
    raised = effective(low, {"fs.nr_open": "1048576", "fs.file-max": "2000000", "net.ipv4.ip_local_port_range": "10240 65535"})
    assert (raised.nr_open, raised.file_max, raised.port_range) == (1048576, 2000000, (10240, 65535))
    assert effective(raised, {"fs.nr_open": "1024"}).nr_open == 1048576  # never lowered


def test_debian_worker_connections_against_four_thousand():
    sizing = size(4000, 1, 2)
    (finding,) = system_findings(sizing, 768, 2, "/etc/nginx/nginx.conf:8")
    assert "needs 8000 nginx connections but /etc/nginx/nginx.conf:8 sets worker_connections 768 x 2 workers" in finding
    assert "holds about 768 sessions" in finding
    assert system_findings(size(700, 1, 2), 768, 2, "x") == []


# ------------------------------------------------------------------ the driver


def test_clean_host_own_front_needs_no_nginx_conf(tmp_path):
    doc = load(fronted())
    obs = observe_nginx(doc, make_root(tmp_path, main=None))
    assert obs.problems == [] and obs.resources == []


def test_own_config_of_another_is_refused_and_ours_is_seen(tmp_path):
    doc = load(fronted())
    root = make_root(tmp_path, main=None)
    own = root / "etc/nginx/conduit/nginx.conf"
    own.parent.mkdir(parents=True)
    own.write_text("worker_processes 1;\n")
    obs = observe_nginx(doc, root)
    assert obs.foreign == ["/etc/nginx/conduit/nginx.conf"] and any("refusing to overwrite" in p for p in obs.problems)
    own.write_text(render_main_conf(doc))
    obs = observe_nginx(doc, root)
    assert kinds(obs)["nginx_main"].props == {"content": render_main_conf(doc)} and obs.problems == []


def test_module_built_in_or_missing(tmp_path):
    doc = load(fronted())
    assert any("built in" in p for p in observe_nginx(doc, make_root(tmp_path / "a", main=None, stream="static")).problems)
    missing = observe_nginx(doc, make_root(tmp_path / "b", main=None, module_file=False)).problems
    assert any("is missing" in p for p in missing)


def test_capacity_check_fails_or_warns(tmp_path):
    root = make_root(tmp_path, main=None)
    limits = Path(root / "proc/sys/net/ipv4")
    limits.mkdir(parents=True)
    (limits / "ip_local_port_range").write_text("60000\t60999\n")
    for check, where in (("fail", "problems"), ("warn", "warnings")):
        doc = fronted(capacity=8000, capacity_check=check)
        doc["spec"]["sysctl"] = {"enabled": False}  # the conduit profile would widen the range
        obs = observe_nginx(load(doc), root)
        found = [f for f in obs.problems + obs.warnings if "ip_local_port_range" in f]
        assert found == [f for f in getattr(obs, where) if "ip_local_port_range" in f]
        assert len(found) == 1 and "60000 60999 holds 1000 ports per address; at most 4000 per listener fits" in found[0]
    doc = fronted(capacity=8000)  # with the profile's 10240 65535 it fits
    assert not [p for p in observe_nginx(load(doc), root).problems if "ip_local_port_range" in p]
