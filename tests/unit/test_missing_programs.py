"""Every external program the tool runs, missing: one line naming the Debian package to install.

The programs are hidden by an empty PATH, which is what a host without the package looks
like to the tool; nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conduit.drivers import observe
from conduit.tracker.capture import CaptureError, local_addresses, window
from conduit.drivers import docker as docker_driver
from conduit.errors import DockerError, GitError
from conduit.drivers.docker import docker_down
from conduit.drivers.tracker import _observe_systemd
from conduit.execute.executor import Executor, StepFailed, systemctl
from conduit.engine.planning import target_of
from conduit.spec.load import load_text
from conduit.drivers.observe import HostAccess
from conduit.state.git import fetch
from conduit.spec.profiles import HostFacts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FACTS = HostFacts(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=1 << 20)


@pytest.fixture
def bare_path(tmp_path, monkeypatch) -> Path:
    """PATH is one empty directory: no program is installed. Returns it, to add fakes to."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def fake(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def example(name: str = "cluster.yaml", edit=lambda text: text):
    path = EXAMPLES / name
    return load_text(edit(path.read_text()), str(path), FACTS)


def test_ip_missing(bare_path):
    with pytest.raises(CaptureError) as info:
        local_addresses("eth0")
    assert str(info.value) == "ip is not installed (apt-get install iproute2)"


def test_tcpdump_missing(bare_path):
    fake(bare_path, "ip", "echo '[]'")
    with pytest.raises(CaptureError) as info:
        window("eth0", "udp", 0.1, 96)
    assert str(info.value) == "tcpdump is not installed (apt-get install tcpdump)"


def test_the_tracker_without_iproute2_logs_one_line_per_window_and_keeps_running(tmp_path, bare_path):
    code = "from conduit.cli.root import main; main()"
    argv = [sys.executable, "-c", code, "--state-dir", str(tmp_path / "state"), "tracker", "run", "--cluster", "t",
            "--source", "capture", "--interface", "eth0", "--sample-seconds", "1", "--interval-seconds", "0.3"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while len(lines) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, lines  # one window after another, not one crash
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        reader.join(timeout=10)
    err = "".join(lines)
    assert process.returncode == 0, err
    assert len(lines) >= 2, err
    assert all("tracker.capture_failed" in line and "ip is not installed (apt-get install iproute2)" in line for line in lines), err
    assert "Traceback" not in err


def test_nginx_missing_when_apply_tests_the_configuration(tmp_path):
    absent = tmp_path / "sbin" / "nginx"
    doc = example(edit=lambda text: text.replace("binary: /usr/sbin/nginx", f"binary: {absent}"))
    main = tmp_path / "etc/nginx/nginx.conf"
    main.parent.mkdir(parents=True)
    main.write_text("events {}\n")
    ex = Executor(target_of(doc), tmp_path, tmp_path / "state", None)
    with pytest.raises(StepFailed) as info:
        ex.test_nginx()
    assert str(info.value) == f"nginx not found at {absent} (apt-get install nginx libnginx-mod-stream)"
    with pytest.raises(StepFailed) as info:
        ex.start_nginx()
    assert str(info.value) == f"nginx not found at {absent} (apt-get install nginx libnginx-mod-stream)"


def test_git_missing_for_diff(tmp_path, bare_path):
    from click.testing import CliRunner

    from conduit.cli.root import main

    spec = tmp_path / "cluster.yaml"
    spec.write_text((EXAMPLES / "node.yaml").read_text())
    result = CliRunner().invoke(main, ["diff", "--git-ref", "HEAD", str(spec)])
    assert result.exit_code == 1
    assert result.stderr == "error: git is not installed (apt-get install git)\n"


def test_git_missing_for_watch(tmp_path, bare_path):
    with pytest.raises(GitError) as info:
        fetch("https://example.org/ops.git", "main", tmp_path / "mirror", most=1 << 28)
    assert str(info.value) == "git is not installed (apt-get install git)"


def test_systemctl_missing(bare_path):
    with pytest.raises(StepFailed) as info:
        systemctl("daemon-reload")
    assert str(info.value) == "PID 1 is systemd but systemctl is not installed (apt-get install systemd)"
    obs = _observe_systemd(example(), "conduit")
    assert obs.problems == ["PID 1 is systemd but systemctl is not installed (apt-get install systemd)"]


# --------------------------------------------------------------------- the Docker daemon


@pytest.fixture
def engine_dirs(tmp_path, monkeypatch) -> Path:
    """The engine's socket and binary are looked for only in tmp_path: a machine of the test's making."""
    folder = tmp_path / "sbin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(docker_driver, "SBIN_PATH", str(folder))
    monkeypatch.setattr(observe, "DEFAULT_SOCKET", str(tmp_path / "docker.sock"))
    monkeypatch.setattr(docker_driver, "USUAL_SOCKETS", (str(tmp_path / "docker.sock"),))
    return folder


def test_no_engine_installed_plans_without_containers(tmp_path, engine_dirs):
    host = HostAccess(root=tmp_path, state_dir=tmp_path / "state", docker_host=None)
    assert host.docker() is None
    assert "apply needs one (apt-get install docker.io)" in observe.NO_ENGINE
    assert docker_down("unix:///x.sock") == "cannot reach the Docker daemon at unix:///x.sock: dockerd is not installed (apt-get install docker.io)"


def test_engine_installed_but_stopped_is_told_apart(tmp_path, engine_dirs):
    fake(engine_dirs, "dockerd", "exit 1")
    host = HostAccess(root=tmp_path, state_dir=tmp_path / "state", docker_host=None)
    with pytest.raises(DockerError) as info:
        host.docker()
    sock = tmp_path / "docker.sock"
    assert str(info.value) == (
        f"cannot reach the Docker daemon at unix://{sock}: dockerd is installed but not running ({sock} is absent); "
        "start it with `systemctl start docker`"
    )


def test_a_socket_that_refuses_is_a_stopped_engine(tmp_path, engine_dirs):
    """A socket file left behind by a dockerd that is gone: connections are refused."""
    fake(engine_dirs, "dockerd", "exit 1")
    sock = tmp_path / "stale.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.close()  # the file stays, nobody listens
    client = HostAccess(root=tmp_path, state_dir=tmp_path / "state", docker_host=f"unix://{sock}").docker()
    with pytest.raises(DockerError) as info:
        docker_driver.call(client, client.api.containers)
    assert str(info.value).endswith(f"dockerd is installed but not running ({sock} refuses connections); start it with "
                                    "`systemctl start docker`, or give --docker-host (DOCKER_HOST) the socket it listens on")  # fmt: skip



@pytest.mark.parametrize("command", ["plan", "apply", "status"])
def test_only_plan_offers_to_go_without_the_stopped_engine(tmp_path, engine_dirs, command):
    """A stopped engine is one line saying how to start it; only `plan` can do without one, so only it says --offline."""
    from click.testing import CliRunner

    from conduit.cli.root import main

    fake(engine_dirs, "dockerd", "exit 1")
    args = ["--root", str(tmp_path), "--state-dir", str(tmp_path / "state"), command, str(EXAMPLES / "cluster.yaml")]
    result = CliRunner().invoke(main, args + (["--auto-approve"] if command == "apply" else []))
    sock = tmp_path / "docker.sock"
    started = f"error: cannot reach the Docker daemon at unix://{sock}: dockerd is installed but not running ({sock} is absent); start it with `systemctl start docker`"
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (1, started + (", or plan with --offline" if command == "plan" else ""))

def test_problems_that_stop_a_plan_come_last_on_stderr(tmp_path, engine_dirs):
    """A fresh host (no engine, no nginx) and the full example: the plan, then what to install."""
    from click.testing import CliRunner

    from conduit.cli.root import main

    root = tmp_path / "root"
    root.mkdir()
    args = ["--root", str(root), "--state-dir", str(tmp_path / "state"), "plan", str(EXAMPLES / "cluster.yaml")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "error" not in result.stdout and result.stdout.rstrip().splitlines()[-1].startswith("Plan: ")
    block = result.stderr.strip().splitlines()
    assert block[0].startswith("This host cannot take the plan yet (")
    assert "error: nginx not found at /usr/sbin/nginx: apt-get install nginx libnginx-mod-stream" in block
    assert all(line.startswith("error: ") for line in block[1:])


def test_the_readme_node_plans_cleanly_on_a_fresh_host(tmp_path, engine_dirs):
    from click.testing import CliRunner

    from conduit.cli.root import main

    args = ["--root", str(tmp_path), "--state-dir", str(tmp_path / "state"), "plan", str(EXAMPLES / "node.yaml")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert "+ container conduit-1" in result.stdout and "apt-get install docker.io" in result.stdout
    assert result.stderr == ""


def test_plan_offers_offline_when_the_named_socket_is_not_there_either(tmp_path, engine_dirs):
    """The daemon the client fails to reach (not only the default socket looked at first) is a DockerDown too."""
    from click.testing import CliRunner

    from conduit.cli.root import main

    fake(engine_dirs, "dockerd", "exit 1")
    sock = tmp_path / "elsewhere.sock"
    args = ["--docker-host", f"unix://{sock}", "--root", str(tmp_path), "--state-dir", str(tmp_path / "state"), "plan", str(EXAMPLES / "cluster.yaml")]
    result = CliRunner().invoke(main, args)
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (1, (
        f"error: cannot reach the Docker daemon at unix://{sock}: dockerd is installed but not running ({sock} is absent); start it "
        "with `systemctl start docker`, or give --docker-host (DOCKER_HOST) the socket it listens on, or plan with --offline"))  # fmt: skip
