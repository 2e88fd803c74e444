"""The tracker driver's non-systemd path on real processes, and the capture filter in a real tcpdump on lo."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conduit.drivers.tracker import observe_tracker, systemd_is_init, tracker_pidfile
from conduit.spec.load import load_text
from conduit.render.tracker import capture_filter, render_tracker
from conduit.spec.spec import Tracker
from harness import need, unavailable
from tests.helpers import SMALL_VPS, dump, minimal

pytestmark = pytest.mark.integration

SLEEPER = "import time; time.sleep(60)"




@pytest.fixture
def pidfile_host():
    if systemd_is_init():
        pytest.skip("PID 1 is systemd here: the driver asks systemctl, not the pidfile")


def wait_for_exec(proc: subprocess.Popen, marker: bytes) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if marker in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError("child never showed its command line")


def doc():
    return load_text(dump(minimal()), "c.yaml", SMALL_VPS)


def test_pidfile_of_a_running_tracker_matches_the_desired_command(tmp_path, pidfile_host):
    spec = doc()
    (desired,) = render_tracker(spec)
    command = desired.props["command"]
    # A Python process whose argv carries the rendered command after its own script.
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, *command])
    try:
        wait_for_exec(proc, b"--keep-addresses-hours")
        tracker_pidfile(tmp_path, spec.metadata.name).write_text(f"{proc.pid}\n")
        obs = observe_tracker(spec, tmp_path)
        assert obs.resources == [desired]  # what the planner sees as "up to date"
        assert obs.problems == [] and obs.foreign == []
    finally:
        proc.kill()
        proc.wait()
    # Same pidfile once the process is gone: stale, so the planner restarts it.
    obs = observe_tracker(spec, tmp_path)
    assert [r.props for r in obs.resources] == [{"command": None, "running": False}]


def test_console_script_is_named_as_the_spec_names_it(tmp_path, monkeypatch, pidfile_host):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "conduit"
    script.write_text(f"#!{sys.executable}\n{SLEEPER}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    spec = doc()
    (desired,) = render_tracker(spec)
    proc = subprocess.Popen([str(script), *desired.props["command"][1:]])
    try:
        wait_for_exec(proc, b"--keep-addresses-hours")
        raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert raw[1] == str(script).encode()  # the kernel put the interpreter in front
        tracker_pidfile(tmp_path, spec.metadata.name).write_text(str(proc.pid))
        assert observe_tracker(spec, tmp_path).resources == [desired]
    finally:
        proc.kill()
        proc.wait()


def test_capture_filter_compiles_in_tcpdump():
    tcpdump = need("tcpdump")
    for tracker in (Tracker(), Tracker(ports="3478,20000-40000", exclude_ports=[53, 123, 443]), Tracker(exclude_ports=[])):
        done = subprocess.run([tcpdump, "-d", "-i", "lo", capture_filter(tracker)], capture_output=True, text=True, check=False)
        if done.returncode != 0 and "permission" in done.stderr.lower():
            unavailable(f"tcpdump cannot open lo here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr


def test_capture_counts_ephemeral_udp_and_not_443_or_53():
    """Real packets on lo, to 127.0.0.1 only: the excluded ports go first, so a filter letting them in fails."""
    tcpdump = need("tcpdump")
    wanted = [40001, 40002, 40003]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    # Only this test's packets: tests running beside it send UDP on lo too (the front's UDP listeners).
    ours = f"({capture_filter(Tracker())}) and udp src port {sock.getsockname()[1]}"
    argv = [tcpdump, "-i", "lo", "-n", "-l", "-p", "--immediate-mode", "-c", str(len(wanted)), ours]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()
    errors: list[str] = []

    def watch_stderr():
        for line in proc.stderr:
            errors.append(line)
            if "listening on" in line:
                ready.set()

    threading.Thread(target=watch_stderr, daemon=True).start()
    try:
        if not ready.wait(30):
            proc.kill()
            unavailable(f"tcpdump cannot capture on lo here: {''.join(errors).strip()}")
        time.sleep(0.2)
        for port in (443, 53, *wanted):
            sock.sendto(b"probe", ("127.0.0.1", port))
            time.sleep(0.02)
        out, _ = proc.communicate(timeout=30)
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ports = [int(m.group(1)) for m in re.finditer(r"> 127\.0\.0\.1\.(\d+):", out)]
    assert ports, out
    assert set(ports) <= set(wanted), out
