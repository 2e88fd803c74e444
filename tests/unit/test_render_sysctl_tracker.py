import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conduit.drivers import sysctl as sysctl_driver
from conduit.drivers import tracker as tracker_driver
from conduit.drivers.sysctl import observe_sysctl, proc_path
from conduit.drivers.tracker import (
    observe_tracker,
    tracker_argv,
    tracker_pidfile,
)
from conduit.spec.load import load_file, load_text
from conduit.render.sysctl import render_sysctl, sysctl_keys
from conduit.render.tracker import capture_filter, render_tracker, render_tracker_unit
from conduit.spec.profiles import SYSCTL_CLUSTER_V2, SYSCTL_FRONT
from conduit.spec.spec import Tracker
from tests.helpers import EXAMPLE, SMALL_VPS, dump, minimal

KEY_LINE = re.compile(r"^([a-z0-9_.-]+) = (.+)$")


def load(**spec):
    return load_text(dump(minimal(**spec)), "c.yaml", SMALL_VPS)


@pytest.mark.parametrize("sysctl", [{"profile": "conduit"}, {"profile": "cluster-v2"}, {"enabled": False}, {"profile": "none"},
                                    {"profile": "none", "overrides": {"fs.nr_open": 2000000}},
                                    {"profile": "cluster-v2", "overrides": {"net.core.somaxconn": 8192}}])  # fmt: skip
def test_the_keys_a_plan_reads_are_the_keys_render_sets(sysctl):
    doc = load(sysctl=sysctl)
    assert sysctl_keys(doc) == [r.id for r in render_sysctl(doc) if r.kind == "sysctl"]


@pytest.fixture(scope="module")
def example():
    return load_file(EXAMPLE, SMALL_VPS)


def sysctl_file(resources):
    (res,) = [r for r in resources if r.kind == "sysctl_file"]
    return res


def key_lines(content: str) -> list[tuple[str, str]]:
    return [m.groups() for m in map(KEY_LINE.match, content.splitlines()) if m]


# ---------------------------------------------------------------- sysctl renderer


def test_example_sysctl_file(example):
    resources = render_sysctl(example)
    file = sysctl_file(resources)
    assert file.id == "/etc/sysctl.d/99-conduit.conf"
    text = file.props["content"]
    lines = text.splitlines()
    assert lines[0] == "# Managed by conduit for cluster edge-1."
    assert "$(date)" not in text and not re.search(r"\d{4}-\d{2}-\d{2}", text)
    pairs = key_lines(text)
    assert [k for k, _ in pairs] == sorted(k for k, _ in pairs)
    values = dict(pairs)
    assert values["net.core.rmem_max"] == "33554432"  # the spec's override
    assert values["net.core.wmem_max"] == "16777216"
    assert values["net.ipv4.ip_local_port_range"] == "10240 65535"
    for key in SYSCTL_FRONT:  # the example's load balancer is on
        assert key in values
    # Every key line is explained by the comment just above it.
    for i, line in enumerate(lines):
        if KEY_LINE.match(line):
            assert lines[i - 1].startswith("# ") and len(lines[i - 1]) > 4
    assert lines[lines.index("net.core.rmem_max = 33554432") - 1] == "# set in the spec"
    assert "conntrack" in lines[lines.index("net.netfilter.nf_conntrack_max = 262144") - 1]
    assert "ephemeral" in lines[lines.index("net.ipv4.ip_local_port_range = 10240 65535") - 1]
    # One resource per key line, same values.
    assert {r.id: r.props["value"] for r in resources if r.kind == "sysctl"} == values


def test_front_keys_only_with_the_front():
    doc = load(sysctl={"profile": "conduit"})
    ids = {r.id for r in render_sysctl(doc) if r.kind == "sysctl"}
    assert "net.core.rmem_max" in ids and "fs.file-max" in ids
    assert not ids & set(SYSCTL_FRONT)


def test_cluster_v2_profile_values():
    doc = load(sysctl={"profile": "cluster-v2"})
    values = {r.id: r.props["value"] for r in render_sysctl(doc) if r.kind == "sysctl"}
    assert values == SYSCTL_CLUSTER_V2
    text = sysctl_file(render_sysctl(doc)).props["content"]
    assert "net.ipv4.tcp_mem = 786432 1048576 26777216" in text
    assert "net.ipv4.tcp_congestion_control = bbr" in text


def test_disabled_or_empty_profile_renders_nothing():
    assert render_sysctl(load(sysctl={"enabled": False})) == []
    assert render_sysctl(load(sysctl={"profile": "none"})) == []
    only = render_sysctl(load(sysctl={"profile": "none", "overrides": {"fs.nr_open": 2000000}}))
    assert [(r.kind, r.id) for r in only] == [("sysctl", "fs.nr_open"), ("sysctl_file", "/etc/sysctl.d/99-conduit.conf")]
    assert key_lines(only[1].props["content"]) == [("fs.nr_open", "2000000")]


def test_sysctl_render_is_byte_identical(example):
    assert render_sysctl(example) == render_sysctl(load_file(EXAMPLE, SMALL_VPS))


# ---------------------------------------------------------------- tracker renderer


def test_capture_filter_counts_ephemeral_udp_not_443():
    text = capture_filter(Tracker())
    assert text == "udp and (portrange 1024-65535) and not (port 53 or port 443)"
    included, _, excluded = text.partition(" and not ")
    assert "443" not in included and "5566" not in included
    assert "port 443" in excluded


def test_capture_filter_lists_and_single_ports():
    t = Tracker(ports="3478,20000-40000", exclude_ports=[443, 53, 443])
    assert capture_filter(t) == "udp and (port 3478 or portrange 20000-40000) and not (port 53 or port 443)"
    assert capture_filter(Tracker(exclude_ports=[])) == "udp and (portrange 1024-65535)"
    with pytest.raises(ValueError, match="outside"):
        capture_filter(Tracker(ports="1024-70000"))
    with pytest.raises(ValueError, match="backwards"):
        capture_filter(Tracker(ports="5000-1024"))


def test_tracker_command(example):
    (res,) = render_tracker(example)
    assert (res.kind, res.id, res.props["running"]) == ("tracker", "tracker", True)
    cmd = res.props["command"]
    assert all(isinstance(a, str) for a in cmd)
    assert cmd == [
        "conduit", "tracker", "run", "--cluster", "edge-1", "--metrics-ports", "9090-9097",
        "--interface", "eth0", "--source", "auto",
        "--filter", "udp and (portrange 1024-65535) and not (port 53 or port 443)",
        "--sample-seconds", "10", "--interval-seconds", "300", "--snaplen", "96",
        "--retention-days", "30", "--keep-addresses-hours", "0",
    ]  # fmt: skip
    doc = load(tracker={"geoip": False, "interface": "ens3", "source": "capture"})
    cmd = render_tracker(doc, conduit_bin="/opt/conduit/bin/conduit")[0].props["command"]
    assert cmd[0] == "/opt/conduit/bin/conduit" and cmd[-1] == "--no-geoip"
    assert cmd[cmd.index("--interface") + 1] == "ens3" and cmd[cmd.index("--source") + 1] == "capture"
    assert render_tracker(load(tracker={"enabled": False})) == []


def test_tracker_unit(example):
    unit = render_tracker_unit(example, "/usr/local/bin/conduit", "/var/lib/conduit")
    lines = unit.splitlines()
    (exec_line,) = [line for line in lines if line.startswith("ExecStart=")]
    argv = shlex.split(exec_line.removeprefix("ExecStart="))
    assert argv == render_tracker(example, "/usr/local/bin/conduit")[0].props["command"]
    for expected in (
        "Type=simple",
        "Restart=on-failure",
        "RestartSec=5",
        "CPUQuota=10%",
        "Nice=10",
        "NoNewPrivileges=yes",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/conduit",
        "WantedBy=multi-user.target",
    ):
        assert expected in lines
    assert lines.index("[Unit]") < lines.index("[Service]") < lines.index("[Install]")
    assert unit == render_tracker_unit(example, "/usr/local/bin/conduit", "/var/lib/conduit")


def test_tracker_unit_escapes_systemd_specifiers(example):
    unit = render_tracker_unit(example, "/opt/100%/con duit", "/srv/$state")
    assert "ExecStart='/opt/100%%/con duit' tracker run" in unit
    assert "ReadWritePaths=/srv/$$state" not in unit  # quoted as a whole
    assert "ReadWritePaths='/srv/$$state'" in unit


# ---------------------------------------------------------------- sysctl driver (fixture trees)


def proc_tree(root: Path, values: dict[str, str]) -> None:
    for key, value in values.items():
        path = proc_path(root, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")


def spec_with(on_refused="fail", **sysctl):
    return load(sysctl={"profile": "conduit", "on_refused": on_refused, **sysctl})


def test_driver_reads_and_normalises(tmp_path):
    proc_tree(tmp_path, {"net.ipv4.ip_local_port_range": "10240\t65535", "fs.file-max": "524288"})
    obs = observe_sysctl(spec_with(), tmp_path, ["net.ipv4.ip_local_port_range", "fs.file-max"])
    assert {r.id: r.props for r in obs.resources} == {
        "fs.file-max": {"value": "524288"},
        "net.ipv4.ip_local_port_range": {"value": "10240 65535"},
    }
    assert obs.problems == obs.warnings == obs.foreign == []


@pytest.mark.parametrize("policy", ["fail", "warn"])
def test_missing_key_follows_the_policy(tmp_path, policy):
    proc_tree(tmp_path, {"fs.file-max": "1"})
    obs = observe_sysctl(spec_with(policy), tmp_path, ["fs.file-max", "net.netfilter.nf_conntrack_max"])
    missing = [r for r in obs.resources if r.id == "net.netfilter.nf_conntrack_max"]
    assert missing[0].props == {"value": None}
    reported, silent = (obs.problems, obs.warnings) if policy == "fail" else (obs.warnings, obs.problems)
    assert silent == []
    (line,) = reported
    assert line.startswith("sysctl net.netfilter.nf_conntrack_max does not exist on this kernel (module not loaded?)")
    assert "modprobe nf_conntrack" in line


def test_missing_non_netfilter_key_has_no_modprobe_hint(tmp_path):
    obs = observe_sysctl(spec_with(), tmp_path, ["fs.nr_open"])
    assert obs.problems == ["sysctl fs.nr_open does not exist on this kernel (module not loaded?)"]


@pytest.mark.parametrize("policy", ["fail", "warn"])
def test_read_only_key_follows_the_policy(tmp_path, monkeypatch, policy):
    proc_tree(tmp_path, {"net.core.somaxconn": "4096", "fs.file-max": "9"})
    read_only = proc_path(tmp_path, "net.core.somaxconn")
    real_access = os.access

    # Root may write a 0444 file on a normal file system; /proc/sys and read-only mounts refuse.
    def access(path, mode, *a, **kw):
        if Path(path) == read_only and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **kw)

    monkeypatch.setattr(sysctl_driver.os, "access", access)
    before = read_only.read_text()
    obs = observe_sysctl(spec_with(policy), tmp_path, ["net.core.somaxconn", "fs.file-max"])
    assert read_only.read_text() == before
    assert {r.id: r.props["value"] for r in obs.resources} == {"net.core.somaxconn": "4096", "fs.file-max": "9"}
    expected = ["sysctl net.core.somaxconn is read-only here (container or VPS kernel)"]
    assert (obs.problems, obs.warnings) == ((expected, []) if policy == "fail" else ([], expected))


def managed_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etc/sysctl.d/99-conduit.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_our_file_is_reported_with_its_content(tmp_path):
    doc = spec_with()
    content = sysctl_file(render_sysctl(doc)).props["content"]
    managed_file(tmp_path, content)
    obs = observe_sysctl(doc, tmp_path, [])
    assert obs.resources == [sysctl_file(render_sysctl(doc))]
    assert obs.problems == [] and obs.foreign == []


def test_foreign_file_is_a_problem(tmp_path):
    managed_file(tmp_path, "# tuned by hand\nnet.core.somaxconn = 1024\n")
    obs = observe_sysctl(spec_with("warn"), tmp_path, [])
    assert obs.resources == []
    assert obs.foreign == ["/etc/sysctl.d/99-conduit.conf"]
    assert obs.problems == ["/etc/sysctl.d/99-conduit.conf exists and is not managed by conduit"]


def test_file_of_another_cluster_is_not_ours(tmp_path):
    managed_file(tmp_path, "# Managed by conduit for cluster other.\nfs.file-max = 1\n")
    obs = observe_sysctl(spec_with(), tmp_path, [])
    assert obs.resources == [] and obs.foreign == ["/etc/sysctl.d/99-conduit.conf"]
    assert "another cluster (other)" in obs.problems[0]


def test_disabled_spec_still_reports_our_file(tmp_path):
    doc = spec_with()
    content = sysctl_file(render_sysctl(doc)).props["content"]
    managed_file(tmp_path, content)
    off = spec_with(enabled=False)
    assert render_sysctl(off) == []
    obs = observe_sysctl(off, tmp_path, [])
    assert [(r.kind, r.id) for r in obs.resources] == [("sysctl_file", "/etc/sysctl.d/99-conduit.conf")]
    # A foreign file at that path is left alone without complaint when the spec wants nothing there.
    managed_file(tmp_path, "foreign\n")
    obs = observe_sysctl(off, tmp_path, [])
    assert obs.resources == [] and obs.problems == []


# ---------------------------------------------------------------- tracker driver (pidfile path)


@pytest.fixture
def no_systemd(monkeypatch):
    """Take the pidfile path whatever init the machine running the tests has."""
    monkeypatch.setattr(tracker_driver, "systemd_is_init", lambda: False)


def test_no_pidfile_no_resource(tmp_path, no_systemd):
    doc = load()
    assert tracker_pidfile(tmp_path, "test") == tmp_path / "tracker-test.pid"
    assert observe_tracker(doc, tmp_path).resources == []


def test_stale_pidfile_with_a_dead_pid(tmp_path, no_systemd):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    tracker_pidfile(tmp_path, "test").write_text(f"{child.pid}\n")
    obs = observe_tracker(load(), tmp_path)
    assert [r.props for r in obs.resources] == [{"command": None, "running": False}]


def test_pid_reused_by_another_program_is_stale(tmp_path, no_systemd):
    tracker_pidfile(tmp_path, "test").write_text(f"{os.getpid()}\n")  # pytest: alive, not a tracker
    obs = observe_tracker(load(), tmp_path)
    assert [r.props for r in obs.resources] == [{"command": None, "running": False}]


def test_garbage_pidfile_is_stale_with_a_warning(tmp_path, no_systemd):
    tracker_pidfile(tmp_path, "test").write_text("not a pid\n")
    obs = observe_tracker(load(), tmp_path)
    assert [r.props for r in obs.resources] == [{"command": None, "running": False}]
    assert obs.warnings and obs.problems == []


def start_fake_tracker(cluster: str) -> subprocess.Popen:
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "conduit", "tracker", "run", "--cluster", cluster,
            "--filter", "udp and (portrange 1024-65535)"]  # fmt: skip
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # cmdline is readable once exec is done
        if Path(f"/proc/{proc.pid}/cmdline").read_bytes().count(b"\0") >= len(argv):
            break
        time.sleep(0.01)
    return proc


def test_live_pidfile_reads_the_cmdline(tmp_path, no_systemd):
    proc = start_fake_tracker("test")
    try:
        tracker_pidfile(tmp_path, "test").write_text(str(proc.pid))
        obs = observe_tracker(load(), tmp_path)
        assert [r.props for r in obs.resources] == [
            {
                "command": ["conduit", "tracker", "run", "--cluster", "test", "--filter", "udp and (portrange 1024-65535)"],
                "running": True,
            }
        ]
    finally:
        proc.kill()
        proc.wait()


def test_tracker_of_another_cluster_is_foreign(tmp_path, no_systemd):
    proc = start_fake_tracker("other")
    try:
        tracker_pidfile(tmp_path, "test").write_text(str(proc.pid))
        obs = observe_tracker(load(), tmp_path)
        assert obs.resources == []
        assert obs.foreign == [f"tracker process {proc.pid} (cluster other)"]
        assert "cluster other" in obs.problems[0]
    finally:
        proc.kill()
        proc.wait()


def test_two_clusters_on_one_state_directory_each_see_their_own_tracker(tmp_path, no_systemd):
    """An older version's tracker.pid counts for the cluster its process runs for, and for no other."""
    mine, other = start_fake_tracker("test"), start_fake_tracker("other")
    try:
        (tmp_path / "tracker.pid").write_text(f"{mine.pid}\n")
        tracker_pidfile(tmp_path, "other").write_text(f"{other.pid}\n")
        obs = observe_tracker(load(), tmp_path)
        assert [r.props["running"] for r in obs.resources] == [True] and obs.problems == [] and obs.foreign == []
        assert "--cluster" in obs.resources[0].props["command"] and "test" in obs.resources[0].props["command"]
        (tmp_path / "tracker.pid").write_text(f"{other.pid}\n")  # another cluster's: not ours, not a conflict
        obs = observe_tracker(load(), tmp_path)
        assert obs.resources == [] and obs.problems == []
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()


def test_tracker_argv_drops_an_interpreter():
    assert tracker_argv(["/usr/bin/python3", "/usr/local/bin/conduit", "tracker", "run", "--cluster", "x"]) == [
        "/usr/local/bin/conduit", "tracker", "run", "--cluster", "x",
    ]  # fmt: skip
    assert tracker_argv(["sleep", "30"]) is None
    assert tracker_argv([]) is None


# ---------------------------------------------------------------- tracker driver (systemd path)


SHOW_ACTIVE = """LoadState=loaded
ActiveState=active
MainPID=0
ExecStart={ path=/usr/local/bin/conduit ; argv[]=/usr/local/bin/conduit tracker run --cluster test --filter udp and (portrange 1024-65535) ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
"""


def fake_systemctl(tmp_path: Path, monkeypatch, output: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "systemctl.args"
    script = bindir / "systemctl"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(log))}\ncat <<'OUT'\n{output}OUT\n")
    script.chmod(0o755)
    monkeypatch.setattr(tracker_driver, "SYSTEMCTL", str(script))
    monkeypatch.setattr(tracker_driver, "systemd_is_init", lambda: True)
    return log


def test_systemd_path_reports_the_unit(tmp_path, monkeypatch):
    doc = load()
    desired = render_tracker(doc, "/usr/local/bin/conduit")[0].props["command"]
    listing = " ".join(desired)
    log = fake_systemctl(
        tmp_path,
        monkeypatch,
        f"LoadState=loaded\nActiveState=active\nMainPID=0\nExecStart={{ path={desired[0]} ; argv[]={listing} ; ignore_errors=no }}\n",
    )
    obs = observe_tracker(doc, tmp_path / "state", conduit_bin="/usr/local/bin/conduit")
    assert [r.props for r in obs.resources] == [{"command": desired, "running": True}]
    assert log.read_text().split("\n")[:2] == ["show", "conduit-tracker-test"]
    assert "--property=" in log.read_text()


def test_systemd_path_unit_not_found(tmp_path, monkeypatch):
    fake_systemctl(tmp_path, monkeypatch, "LoadState=not-found\nActiveState=inactive\nMainPID=0\nExecStart=\n")
    obs = observe_tracker(load(), tmp_path)
    assert obs.resources == [] and obs.problems == []


def test_systemd_path_inactive_unit(tmp_path, monkeypatch):
    fake_systemctl(tmp_path, monkeypatch, "LoadState=loaded\nActiveState=failed\nMainPID=0\nExecStart=\n")
    obs = observe_tracker(load(), tmp_path)
    assert [r.props for r in obs.resources] == [{"command": None, "running": False}]
