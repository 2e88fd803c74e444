"""The stand-in Conduit image behaves like the Conduit CLI where the reconciler depends on it."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from harness import free_port, metric, scrape, wait_for

pytestmark = pytest.mark.integration

DATA = "/home/conduit/data"


def logs(container) -> str:
    return container.logs(stdout=True, stderr=True).decode(errors="replace")


def wait_log(container, needle: str, timeout: float = 10.0) -> str:
    def found():
        container.reload()
        text = logs(container)
        if needle in text:
            return text
        if container.status == "exited":
            raise AssertionError(f"container exited before printing {needle!r}:\n{text}")
        return None
    return wait_for(found, timeout=timeout, message=f"{needle!r} in the container log")


def wait_metrics(port: int, predicate=lambda text: True, timeout: float = 10.0) -> str:
    def answer():
        text = scrape(port)
        return text if predicate(text) else None
    return wait_for(answer, timeout=timeout, message=f"metrics on 127.0.0.1:{port}")


def read_from_container(container, path: str) -> tuple[tarfile.TarInfo, bytes | None]:
    stream, _ = container.get_archive(path)
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    member = tar.getmembers()[0]
    data = tar.extractfile(member).read() if member.isfile() else None
    return member, data


def run_to_exit(client, image, command, timeout: float = 15, **kwargs):
    container = client.containers.run(image, command, detach=True, **kwargs)
    result = container.wait(timeout=timeout)
    return container, result["StatusCode"], logs(container)


def test_image_runs_as_conduit_user(docker_engine, standin_image):
    client = docker_engine.client
    image = client.images.get(standin_image)
    config = image.attrs["Config"]
    assert config["User"] == "1000"
    assert config["Entrypoint"] == ["conduit"]
    assert config["Cmd"] == ["start", "--data-dir", DATA]
    assert config["WorkingDir"] == "/home/conduit"
    assert config["Labels"]["org.opencontainers.image.version"] == "2.0.0"

    # the default command runs: check the process's real uid from the host side
    container = client.containers.run(standin_image, detach=True)
    wait_log(container, "Starting Psiphon Conduit (Max Common Clients: 200, Bandwidth: 5 Mbps)")
    container.reload()
    status = Path(f"/proc/{container.attrs['State']['Pid']}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["1000"] * 4

    out = client.containers.run(standin_image, ["--version"], remove=True).decode()
    assert out.strip() == "conduit version 2.0.0"


def test_metrics_on_host_network_and_clean_stop(docker_engine, standin_image):
    client = docker_engine.client
    port = free_port()
    container = client.containers.run(
        standin_image,
        ["start", "-m", "7", "-b", "5", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"],
        network_mode="host", detach=True,
    )
    text = wait_metrics(port)
    assert metric(text, "conduit_max_common_clients") == 7
    assert metric(text, "conduit_max_personal_clients") == 0
    assert metric(text, "conduit_bandwidth_limit_bytes_per_second") == 5 * 125000
    assert metric(text, "conduit_is_live") == 1
    assert metric(text, "conduit_connected_clients") == 0
    assert metric(text, "conduit_build_info", version="2.0.0") == 1
    for name in ("conduit_announcing", "conduit_connecting_clients", "conduit_bytes_uploaded",
                 "conduit_bytes_downloaded", "conduit_uptime_seconds", "conduit_idle_seconds"):
        assert metric(text, name) is not None, name
        assert f"# TYPE {name} gauge" in text
    assert "conduit_max_clients " not in text  # 1.x name

    with pytest.raises(Exception) as err:
        scrape(port, path="/nope")
    assert "404" in str(err.value)
    assert "Starting Psiphon Conduit (Max Common Clients: 7, Bandwidth: 5 Mbps)" in logs(container)

    began = time.monotonic()
    container.stop(timeout=10)
    elapsed = time.monotonic() - began
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0
    assert elapsed < 3, f"docker stop took {elapsed:.1f} s"
    assert logs(container).rstrip().endswith("Stopped.")


def test_unlimited_bandwidth_and_long_flags(docker_engine, standin_image):
    port = free_port()
    container = docker_engine.client.containers.run(
        standin_image,
        ["start", "--max-common-clients=12", "--max-personal-clients", "3", "--bandwidth", "-1",
         "--data-dir", DATA, "--compartment-id", "abc", "--set", "a=b", "--set", "c=d", "-vv",
         f"--metrics-addr=127.0.0.1:{port}"],
        network_mode="host", detach=True,
    )
    text = wait_metrics(port)
    assert metric(text, "conduit_max_common_clients") == 12
    assert metric(text, "conduit_max_personal_clients") == 3
    assert metric(text, "conduit_bandwidth_limit_bytes_per_second") == -1
    assert "Bandwidth: unlimited" in logs(container)


@pytest.mark.parametrize("args, message", [
    (["--stats-file"], "unknown flag: --stats-file"),
    (["--max-clients", "5"], "unknown flag: --max-clients"),
    (["-s"], "unknown shorthand flag: 's' in -s"),
    (["-m", "1001"], "between 0 and 1000"),
    (["--max-personal-clients", "-1"], "between 0 and 1000"),
    (["-m", "lots"], 'invalid argument "lots"'),
    (["--bogus"], "unknown flag: --bogus"),
])
def test_2x_rejects_bad_flags(docker_engine, standin_image, args, message):
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["start", "-d", DATA, *args])
    assert code == 1
    assert "Error: " in out and message in out


def test_unknown_subcommand_fails(docker_engine, standin_image):
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["serve"])
    assert code == 1
    assert 'unknown command "serve"' in out


def test_key_created_once_and_kept_on_named_volume(docker_engine, standin_image, docker_cleanup):
    client = docker_engine.client
    volume = client.volumes.create(docker_cleanup.name("data"), labels=docker_cleanup.labels)
    mount = {volume.name: {"bind": DATA, "mode": "rw"}}

    first = client.containers.run(standin_image, volumes=mount, detach=True)
    out = wait_log(first, "Starting Psiphon Conduit")
    assert "Generated new identity key" in out
    dir_info, _ = read_from_container(first, DATA)
    assert (dir_info.mode & 0o777, dir_info.uid, dir_info.gid) == (0o700, 1000, 1000)
    info, key1 = read_from_container(first, f"{DATA}/conduit_key.json")
    assert (info.mode & 0o777, info.uid) == (0o600, 1000)
    doc = json.loads(key1)
    assert len(doc["mnemonic"].split()) == 12
    assert all(w.isalpha() and w.islower() for w in doc["mnemonic"].split())
    raw = base64.b64decode(doc["privateKeyBase64"] + "==")
    assert len(raw) == 64 and "=" not in doc["privateKeyBase64"]
    first.remove(force=True)

    second = client.containers.run(standin_image, volumes=mount, detach=True)
    out = wait_log(second, "Starting Psiphon Conduit")
    assert "Generated new identity key" not in out
    info2, key2 = read_from_container(second, f"{DATA}/conduit_key.json")
    assert key2 == key1
    assert info2.mode & 0o777 == 0o600

    # a claim code for the Ryve app carries the same key (asks first on stdin)
    env = dict(os.environ, DOCKER_HOST=docker_engine.host)
    base = ["docker", "run", "--rm", "-i", "--hostname", "node-a", "-v", f"{volume.name}:{DATA}",
            standin_image, "ryve-claim", "-d", DATA]
    refused = subprocess.run(base, input="n\n", capture_output=True, text=True, env=env, timeout=30)
    assert refused.returncode == 1
    assert "Reveal the private key as a claim code? [y/N]" in refused.stdout
    assert "claim=" not in refused.stdout
    claimed = subprocess.run(base, input="y\n", capture_output=True, text=True, env=env, timeout=30)
    assert claimed.returncode == 0, claimed.stderr
    url = next(w for w in claimed.stdout.split() if w.startswith("network.ryve.app://(app)/conduits?claim="))
    code = url.split("claim=", 1)[1]
    payload = json.loads(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4)))
    assert payload == {"version": 1, "data": {"name": "node-a", "key": doc["privateKeyBase64"]}}


def test_unwritable_data_dir_fails(docker_engine, standin_image, docker_cleanup):
    # root-owned 0755 directories are not writable for uid 1000
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["start", "-d", "/usr/bin/data"])
    assert code == 1
    assert "Error: failed to create data directory /usr/bin/data" in out
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["start", "-d", "/home"])
    assert code == 1
    assert "Error: data directory /home is not writable" in out


def test_1x_stats_file(docker_engine, standin_image_v1, docker_cleanup):
    client = docker_engine.client
    _, code, out = run_to_exit(client, standin_image_v1, ["start", "--max-common-clients", "5"])
    assert code == 1 and "unknown flag: --max-common-clients" in out
    _, code, out = run_to_exit(client, standin_image_v1, ["start", "-m", "0"])
    assert code == 1 and "between 1 and 1000" in out

    port = free_port()
    container = client.containers.run(
        standin_image_v1,
        ["start", "--max-clients", "9", "-b", "2.5", "-d", DATA, "--stats-file", "--geo",
         "--metrics-addr", f"127.0.0.1:{port}"],
        network_mode="host", detach=True,
    )
    wait_log(container, "Starting Psiphon Conduit (Max Clients: 9, Bandwidth: 2.5 Mbps)")
    text = wait_metrics(port)
    assert metric(text, "conduit_max_clients") == 9
    assert metric(text, "conduit_max_common_clients") is None
    assert metric(text, "conduit_bandwidth_limit_bytes_per_second") == 312500
    _, body = wait_for(lambda: read_from_container(container, f"{DATA}/stats.json"), timeout=5,
                       message="stats.json")
    stats = json.loads(body)
    assert set(stats) == {"announcing", "connectingClients", "connectedClients", "totalBytesUp",
                          "totalBytesDown", "uptimeSeconds", "idleSeconds", "isLive", "timestamp", "geo"}
    assert stats["geo"] == []  # --geo lists countries; this node has no clients
    assert stats["isLive"] is True and stats["connectedClients"] == 0
    assert stats["timestamp"].endswith("Z") and "T" in stats["timestamp"]


def test_tcp_listener_through_published_port(docker_engine, standin_image, docker_cleanup):
    client = docker_engine.client
    lb_port, udp_port, metrics_port = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    container = client.containers.run(
        standin_image,
        ["start", "-d", DATA, "--metrics-addr", ":9090"],
        environment={"STANDIN_LISTEN": "tcp:8443,udp:5566"},
        hostname="backend-a",
        ports={"8443/tcp": ("127.0.0.1", lb_port), "5566/udp": ("127.0.0.1", udp_port),
               "9090/tcp": ("127.0.0.1", metrics_port)},
        detach=True,
    )
    wait_metrics(metrics_port)

    clients = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", lb_port), timeout=5)
        clients.append(s)
        banner = b""
        while not banner.endswith(b"\n"):
            chunk = s.recv(100)
            assert chunk, "connection closed before the banner"
            banner += chunk
        assert banner == b"standin backend-a 8443\n"
    clients[0].sendall(b"ping-through-docker")
    echoed = b""
    while len(echoed) < len(b"ping-through-docker"):
        echoed += clients[0].recv(100)
    assert echoed == b"ping-through-docker"

    text = wait_metrics(metrics_port, lambda t: metric(t, "conduit_connected_clients") == 3)
    assert metric(text, "conduit_bytes_uploaded") >= len(b"ping-through-docker")
    clients.pop().close()
    wait_metrics(metrics_port, lambda t: metric(t, "conduit_connected_clients") == 2)
    for s in clients:
        s.close()
    wait_metrics(metrics_port, lambda t: metric(t, "conduit_connected_clients") == 0)

    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(b"hello", ("127.0.0.1", udp_port))
    reply, _ = u.recvfrom(200)
    u.close()
    assert reply == b"standin backend-a 5566 hello"

    # [STATS] lines coalesce changes (at most one a second); the last one shows the idle state
    out = wait_log(container, "Connected: 0 |")
    stats = [line for line in out.splitlines() if line.startswith("[STATS]")]
    assert stats[0].startswith("[STATS] Announcing: 0 | Connecting: 0 | Connected: ")
    assert stats[-1].startswith("[STATS] Announcing: 0 | Connecting: 0 | Connected: 0 | Up: ")
    assert "Regions" not in stats[-1]


def test_region_gauges(docker_engine, standin_image):
    port = free_port()
    container = docker_engine.client.containers.run(
        standin_image,
        ["start", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"],
        environment={"STANDIN_REGIONS": "IR=3:1000:2000,CN=2:10:20"},
        network_mode="host", detach=True,
    )
    text = wait_metrics(port)
    assert metric(text, "conduit_region_connected_clients", scope="common", region="IR") == 3
    assert metric(text, "conduit_region_connected_clients", scope="common", region="CN") == 2
    assert metric(text, "conduit_region_connecting_clients", scope="common", region="IR") == 0
    assert metric(text, "conduit_region_bytes_uploaded", scope="common", region="IR") == 1000
    assert metric(text, "conduit_region_bytes_downloaded", scope="common", region="CN") == 20
    assert metric(text, "conduit_connected_clients") == 5
    assert metric(text, "conduit_bytes_uploaded") == 1010
    assert metric(text, "conduit_bytes_downloaded") == 2020
    out = wait_log(container, "[STATS]")
    assert "[STATS] Announcing: 0 | Connecting: 0 | Connected: 5 |" in out
    assert "| Regions: IR:3 CN:2" in out


def test_failure_knobs(docker_engine, standin_image):
    client = docker_engine.client
    _, code, out = run_to_exit(client, standin_image, ["start", "-d", DATA],
                               environment={"STANDIN_EXIT_AFTER": "0"})
    assert code == 3

    port = free_port()
    began = time.monotonic()
    container = client.containers.run(
        standin_image, ["start", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"],
        environment={"STANDIN_EXIT_AFTER": "1", "STANDIN_NO_METRICS": "1"},
        network_mode="host", detach=True,
    )
    wait_log(container, "Metrics server listening")
    with pytest.raises(Exception):
        scrape(port, timeout=0.5)
    assert container.wait(timeout=10)["StatusCode"] == 3
    assert 0.9 < time.monotonic() - began < 6


def test_conduit_monitor(docker_engine, standin_image):
    client = docker_engine.client
    _, code, out = run_to_exit(
        client, standin_image, ["--traffic-limit", "50", "--traffic-period", "30", "--", "start", "-m", "5"],
        entrypoint=["conduit-monitor"])
    assert code == 1
    assert "[ERROR] Configuration error:" in out

    port = free_port()
    container = client.containers.run(
        standin_image,
        ["--traffic-limit", "100", "--traffic-period", "30", "--data-dir", DATA,
         "--metrics-addr", f"127.0.0.1:{port}", "--", "start", "-m", "9", "-b", "-1"],
        entrypoint=["conduit-monitor"], network_mode="host", detach=True,
    )
    text = wait_metrics(port)
    assert metric(text, "conduit_max_common_clients") == 9
    out = logs(container)
    assert "[INFO] Starting Conduit in NORMAL mode" in out
    assert "Starting Psiphon Conduit (Max Common Clients: 9, Bandwidth: unlimited)" in out
    _, key = read_from_container(container, f"{DATA}/conduit_key.json")
    assert b"privateKeyBase64" in key
    container.stop(timeout=10)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0
