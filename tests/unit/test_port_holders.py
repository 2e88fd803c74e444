"""Host ports the nodes bind: a stranger holding one is a plan error naming it; the cluster's own containers are not."""

from __future__ import annotations

from conduit.drivers.docker import port_problems
from conduit.facts.proc import in_containers
from conduit.spec.load import load_text
from tests.helpers import SMALL_VPS, dump, minimal
from tests.unit.test_render_nginx import fake_proc, socket_row

OURS = "a" * 64
OTHER = "b" * 64


def two_nodes():
    spec = minimal(containers={"count": 2}, conduit={"metrics_port_base": 9101}, network={"mode": "host"})
    return load_text(dump(spec), "c", SMALL_VPS)


def test_a_stranger_on_a_running_nodes_metrics_port_is_named_with_what_to_do(tmp_path):
    fake_proc(tmp_path, {"tcp": [socket_row("0100007F", 9101, "0A", 700), socket_row("0100007F", 9102, "0A", 701)]},
              {300: ("/usr/bin/conduit start", 1, [700]), 400: ("/usr/bin/python3 -m http.server", 1, [701])})
    (tmp_path / "proc/300/cgroup").write_text(f"0::/system.slice/docker-{OURS}.scope\n")
    (tmp_path / "proc/400/cgroup").write_text("0::/user.slice/user-0.slice/session-1.scope\n")
    doc = two_nodes()
    names = [n for n in ("conduit-1", "conduit-2")]
    assert port_problems(doc, set(names), {OURS}, tmp_path / "proc") == [
        "port 9102/tcp (metrics of conduit-2) is already in use by another process: pid 400 (python3); "
        "stop that process or change conduit.metrics_port_base"
    ]


def test_another_clusters_container_is_a_stranger_too(tmp_path):
    fake_proc(tmp_path, {"tcp": [socket_row("00000000", 9101, "0A", 700)]}, {300: ("/usr/bin/conduit start", 1, [700])})
    (tmp_path / "proc/300/cgroup").write_text(f"0::/docker/{OTHER}\n")
    (problem,) = port_problems(two_nodes(), {"conduit-1"}, {OURS}, tmp_path / "proc")
    assert problem.startswith("port 9101/tcp (metrics of conduit-1) is already in use by another process: pid 300 (conduit)")


def test_a_port_held_unseen_is_flagged_only_when_its_node_does_not_run(tmp_path):
    fake_proc(tmp_path, {"tcp": [socket_row("0100007F", 9101, "0A", 700)]}, {})
    assert port_problems(two_nodes(), {"conduit-1"}, {OURS}, tmp_path / "proc") == []
    (problem,) = port_problems(two_nodes(), set(), {OURS}, tmp_path / "proc")
    assert "by another process: a process /proc does not show;" in problem


def test_in_containers_reads_cgroupfs_and_systemd_paths():
    assert in_containers(f"0::/docker/{OURS}\n", {OURS})
    assert in_containers(f"12:memory:/system.slice/docker-{OURS}.scope\n0::/\n", {OURS})
    assert not in_containers("0::/user.slice\n", {OURS}) and not in_containers(f"0::/docker/{OURS}", set())


def test_a_socket_two_processes_hold_is_named_by_the_lower_numbered_one(tmp_path):
    """pid 300 (ours) and pid 1200 (a stranger it handed the socket to) share it: the holder is 300,
    in numeric order (as text, "1200" sorts first)."""
    fake_proc(tmp_path, {"tcp": [socket_row("0100007F", 9101, "0A", 700)]},
              {300: ("/usr/bin/conduit start", 1, [700]), 1200: ("/usr/bin/socat", 1, [700])})
    (tmp_path / "proc/300/cgroup").write_text(f"0::/system.slice/docker-{OURS}.scope\n")
    (tmp_path / "proc/1200/cgroup").write_text("0::/user.slice/user-0.slice/session-1.scope\n")
    assert port_problems(two_nodes(), {"conduit-1"}, {OURS}, tmp_path / "proc") == []
    (tmp_path / "proc/1200").rename(tmp_path / "proc/200")  # now the stranger is the first holder
    (problem,) = port_problems(two_nodes(), {"conduit-1"}, {OURS}, tmp_path / "proc")
    assert "already in use by another process: pid 200 (socat)" in problem


def test_a_holders_name_with_a_newline_stays_in_the_one_line_naming_it(tmp_path):
    """A process names itself (prctl PR_SET_NAME): a newline or an escape there neither splits the line nor forges one."""
    fake_proc(tmp_path, {"tcp": [socket_row("0100007F", 9101, "0A", 700)]}, {300: ("/usr/bin/socat", 1, [700])})
    (tmp_path / "proc/300/comm").write_text("a\nerror: x\x1b[2J\n")
    (tmp_path / "proc/300/cgroup").write_text("0::/user.slice\n")
    (problem,) = port_problems(two_nodes(), set(), {OURS}, tmp_path / "proc")
    assert "already in use by another process: pid 300 (a\\nerror: x\\x1b[2J); stop that process" in problem
    assert problem.isprintable()
