"""conduit.facts.systemd on `systemctl show` output (tests/fixtures/facts/systemd/README.md:
written from systemd's documented Key=Value format, as systemctl cannot run on this machine)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.systemd import exec_start_argv, loaded, main_pid, parse_systemctl_show, running

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "systemd"
EXPECTED = ["/usr/local/bin/conduit", "tracker", "run", "--cluster", "edge", "--interface", "eth0",
            "--filter", "udp and portrange 32768-60999"]


def show(name: str) -> dict[str, str]:
    return parse_systemctl_show((FIXTURES / name).read_text())


def test_an_active_unit():
    props = show("show-active.txt")
    assert loaded(props) and running(props)
    assert main_pid(props) == 4242
    assert exec_start_argv(props["ExecStart"], EXPECTED) == EXPECTED


def test_a_listing_unlike_the_expected_argv_is_split_on_spaces():
    other = exec_start_argv(show("show-active.txt")["ExecStart"], ["conduit"])
    assert other[:3] == ["/usr/local/bin/conduit", "tracker", "run"] and "udp" in other and "and" in other


def test_a_unit_systemd_does_not_know():
    props = show("show-not-found.txt")
    assert not loaded(props) and not running(props)
    assert "ExecStart" not in props and main_pid(props) == 0


def test_a_failed_unit_is_loaded_and_not_running():
    props = show("show-failed.txt")
    assert loaded(props) and not running(props) and main_pid(props) == 0
    assert exec_start_argv(props["ExecStart"], EXPECTED) == EXPECTED[:5]


def test_reloading_counts_as_running():
    assert running({"ActiveState": "reloading"})
    assert not running({"ActiveState": "activating"})


def test_missing_or_odd_properties():
    assert parse_systemctl_show("no equals sign\nA=b=c\n") == {"A": "b=c"}
    assert not loaded({})
    assert main_pid({"MainPID": "[not set]"}) == 0
    assert exec_start_argv("", EXPECTED) is None
    assert exec_start_argv("{ path=/x ; argv[]= ; }", EXPECTED) is None
