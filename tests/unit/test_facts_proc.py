"""conduit.facts.proc on the kernel's own /proc files (tests/fixtures/facts/proc/README.md says how each was captured)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.proc import CAP_SYS_RESOURCE, bound_ports, cmdline, default_interface, established_inodes, has_capability, mem_total, parent_pid, socket_inode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "proc"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_cmdline_keeps_words_with_spaces():
    argv = cmdline((FIXTURES / "cmdline-tracker.bin").read_bytes())
    assert argv[0].endswith("/python3") and argv[1].endswith("/conduit")
    assert argv[2:] == ["tracker", "run", "--cluster", "edge one", "--interface", "eth0",
                        "--filter", "udp and portrange 32768-60999"]


def test_cmdline_of_other_processes():
    assert cmdline((FIXTURES / "cmdline-sleep.bin").read_bytes()) == ["sleep", "30"]
    assert cmdline((FIXTURES / "cmdline-zombie.bin").read_bytes()) == []


def test_cmdline_keeps_bytes_that_are_not_utf8():
    assert cmdline(b"a\xffb\0c\0") == ["a\udcffb", "c"]


def test_parent_pid():
    assert parent_pid(fixture("stat-python.txt")) == 20499
    assert parent_pid(fixture("stat-odd-comm.txt")) == 20558  # comm "we(i)rd ) name"
    assert parent_pid("") is None


def test_socket_inode():
    links = fixture("fd-links.txt").splitlines()
    assert [socket_inode(link) for link in links] == [1024607, 1024608, 1024609, 1024610, None]


def test_one_read_of_a_table_answers_for_every_port():
    table = fixture("net-tcp.txt")
    assert bound_ports(table, "tcp", v6=False) == {8445: {1024610}, 2024: {1572}}  # the listeners, no connected socket
    assert bound_ports(fixture("net-tcp6.txt"), "tcp", v6=True) == {8443: {1024608}}  # not the v6 loopback one
    assert bound_ports(fixture("net-udp.txt"), "udp", v6=False) == {5566: {1024607}}


def test_mem_total():
    assert mem_total(fixture("meminfo.txt")) == 24683584 * 1024
    assert mem_total("") == 0


def test_default_interface():
    assert default_interface(fixture("net-route.txt")) == "eth0"
    assert default_interface(fixture("net-route.txt").splitlines()[0]) is None


def test_the_default_route_of_lowest_metric_wins():
    head = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    rows = ("wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
            "eth1\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n")
    assert default_interface(head + rows) == "eth1"


def test_established_inodes_of_tcp_and_connected_udp():
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    rows = [
        "   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0\n",
        "   1: 0100007F:20FB 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0\n",
        "   2: 0100007F:C351 0100007F:2328 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 100 0 0 10 0\n",
    ]
    assert established_inodes(header + "".join(rows)) == {101}


def test_cap_sys_resource_from_status():
    assert has_capability("Name:\tx\nCapEff:\t000001ffffffffff\n", CAP_SYS_RESOURCE)
    assert not has_capability("CapEff:\t00000000a80425fb\n", CAP_SYS_RESOURCE)  # Docker's default set
    assert not has_capability("Name:\tx\n", CAP_SYS_RESOURCE)
