"""The stand-in Conduit image behaves like the Conduit CLI where the reconciler depends on it."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conduit.facts.keyfile import check_key, ed25519_public
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


def binaries(client, image) -> list[str]:
    """Files in the image's /usr/local/bin (where cli/Dockerfile puts them)."""
    container = client.containers.create(image)
    try:
        stream, _ = container.get_archive("/usr/local/bin")
        tar = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
        return sorted(m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile())
    finally:
        container.remove(force=True)


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
    # release-cli.yml at 2.0.0 labels nothing: a tool must ask the binary which version it is
    assert "org.opencontainers.image.version" not in (config.get("Labels") or {})
    assert not any(e.startswith("CONDUIT_STANDIN") for e in config.get("Env") or [])

    # the default command runs: check the process's real uid from the host side
    container = client.containers.run(standin_image, detach=True)
    wait_log(container, "[OK] Starting Psiphon Conduit (Max Common Clients: 50, Max Personal Clients: 0, "
                        "Bandwidth: 40 Mbps)")
    container.reload()
    status = Path(f"/proc/{container.attrs['State']['Pid']}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["1000"] * 4

    out = client.containers.run(standin_image, ["--version"], remove=True).decode()
    assert out == "conduit version 2.0.0\n"
    assert binaries(client, standin_image) == ["conduit", "conduit-monitor"]


def test_metrics_on_host_network_and_clean_stop(docker_engine, standin_image):
    client = docker_engine.client
    port = free_port()
    container = client.containers.run(
        standin_image,
        ["start", "-m", "7", "-b", "5", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"],
        network_mode="host", detach=True,
    )
    text = wait_metrics(port, lambda t: metric(t, "conduit_is_live") == 1)
    assert metric(text, "conduit_max_common_clients") == 7
    assert metric(text, "conduit_max_personal_clients") == 0
    assert metric(text, "conduit_bandwidth_limit_bytes_per_second") == 5 * 125000
    assert metric(text, "conduit_announcing") == 1
    assert metric(text, "conduit_connected_clients") == 0
    assert metric(text, "conduit_build_info", build_repo="https://github.com/Psiphon-Labs/psiphon-tunnel-core.git",
                  build_rev="8531118", go_version="go1.24.12 linux/amd64", values_rev="unknown") == 1
    for name in ("conduit_announcing", "conduit_connecting_clients", "conduit_bytes_uploaded",
                 "conduit_bytes_downloaded", "conduit_uptime_seconds", "conduit_idle_seconds"):
        assert metric(text, name) is not None, name
        assert f"# TYPE {name} gauge" in text
    assert "conduit_max_clients " not in text  # 1.x name

    with pytest.raises(Exception) as err:
        scrape(port, path="/nope")
    assert "404" in str(err.value)
    out = logs(container)
    assert f"[OK] Prometheus metrics available at http://127.0.0.1:{port}/metrics" in out
    assert "[OK] Starting Psiphon Conduit (Max Common Clients: 7, Max Personal Clients: 0, Bandwidth: 5 Mbps)" in out

    container.stop(timeout=10)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0  # it stopped on SIGTERM: Docker's SIGKILL after 10 s would be 137
    tail = logs(container).rstrip().splitlines()[-2:]
    assert tail[0].endswith(" Shutting down...") and tail[1].endswith(" Stopped.")


def test_is_live_only_once_announced(docker_engine, standin_image):
    port = free_port()
    docker_engine.client.containers.run(
        standin_image, ["start", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"],
        environment={"STANDIN_LIVE_AFTER": "never"}, network_mode="host", detach=True,
    )
    text = wait_metrics(port)
    assert metric(text, "conduit_is_live") == 0 and metric(text, "conduit_announcing") == 0


def test_unlimited_bandwidth_and_long_flags(docker_engine, standin_image):
    port = free_port()
    compartment = "A" * 42 + "E"
    container = docker_engine.client.containers.run(
        standin_image,
        ["start", "--max-common-clients=12", "--max-personal-clients", "3", "--bandwidth", "-1",
         "--data-dir", DATA, "--compartment-id", compartment, "--set", "InproxyReducedStartTime=22:00",
         "--set", "InproxyReducedMaxCommonClients=2", "-vv", f"--metrics-addr=127.0.0.1:{port}"],
        network_mode="host", detach=True,
    )
    text = wait_metrics(port)
    assert metric(text, "conduit_max_common_clients") == 12
    assert metric(text, "conduit_max_personal_clients") == 3
    assert metric(text, "conduit_bandwidth_limit_bytes_per_second") == 0  # unlimited reads 0
    out = logs(container)
    assert "Bandwidth: unlimited" in out
    assert "New keys saved to /home/conduit/data/conduit_key.json" in out  # said only with -v


@pytest.mark.parametrize("args, message", [
    (["--stats-file"], "unknown flag: --stats-file"),
    (["--max-clients", "5"], "unknown flag: --max-clients"),
    (["-s"], "unknown shorthand flag: 's' in -s"),
    (["-m", "1001"], "max-common-clients must be between 0 and 1000"),
    (["--max-personal-clients", "-1"], "max-personal-clients must be between 0 and 1000"),
    (["-m", "lots"], 'invalid argument "lots" for "-m, --max-common-clients" flag'),
    (["--bogus"], "unknown flag: --bogus"),
    (["--set", "a=b"], 'unsupported --set key "a"'),
])
def test_2x_rejects_bad_flags(docker_engine, standin_image, args, message):
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["start", "-d", DATA, *args])
    assert code == 1
    assert f"Error: {message}" in out and "Usage:\n  conduit start [flags]" in out


def test_unknown_subcommand_fails(docker_engine, standin_image):
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["serve"])
    assert code == 1
    assert 'unknown command "serve" for "conduit"' in out


def test_key_created_once_and_kept_on_named_volume(docker_engine, standin_image, docker_cleanup):
    client = docker_engine.client
    volume = client.volumes.create(docker_cleanup.name("data"), labels=docker_cleanup.labels)
    mount = {volume.name: {"bind": DATA, "mode": "rw"}}

    first = client.containers.run(standin_image, volumes=mount, detach=True)
    out = wait_log(first, "Starting Psiphon Conduit")
    assert "New keys saved" not in out  # upstream says nothing without -v
    # the image's /home/conduit/data (RUN mkdir as conduit: 0755, group of `useradd -r`) seeds the volume;
    # os.MkdirAll(dir, 0700) leaves an existing directory as it is
    dir_info, _ = read_from_container(first, DATA)
    assert (dir_info.mode & 0o777, dir_info.uid, dir_info.gid) == (0o755, 1000, 999)
    info, key1 = read_from_container(first, f"{DATA}/conduit_key.json")
    assert (info.mode & 0o777, info.uid) == (0o600, 1000)
    doc = json.loads(key1)
    assert list(doc) == ["mnemonic", "privateKeyBase64"]
    assert len(doc["mnemonic"].split()) == 24  # bip39, 256 bits of entropy
    raw = base64.b64decode(doc["privateKeyBase64"] + "==")
    assert len(raw) == 64 and "=" not in doc["privateKeyBase64"]
    # seed || public key of that seed (crypto.go:74-103): a key the reconciler will back up and restore
    assert raw[32:] == ed25519_public(raw[:32])
    assert check_key(key1) == raw
    first.remove(force=True)

    second = client.containers.run(standin_image, ["start", "-d", DATA, "-v"], volumes=mount, detach=True)
    out = wait_log(second, "Starting Psiphon Conduit")
    assert "Loaded existing key from /home/conduit/data/conduit_key.json" in out
    info2, key2 = read_from_container(second, f"{DATA}/conduit_key.json")
    assert key2 == key1
    assert info2.mode & 0o777 == 0o600

    # ryve-claim (cmd/ryve.go): asks first; "n" is not an error
    env = dict(os.environ, DOCKER_HOST=docker_engine.host)
    base = ["docker", "run", "--rm", "-i", "--hostname", "node-a", "-v", f"{volume.name}:{DATA}",
            standin_image, "ryve-claim", "-d", DATA]
    refused = subprocess.run(base, input="n\n", capture_output=True, text=True, env=env, timeout=30)
    assert refused.returncode == 0
    assert refused.stdout == ("This command will reveal your station's private key to terminal output. Please only "
                              "reveal in a secure location. Continue? (y/n) Aborted.\n")
    claimed = subprocess.run(base, input="y\n", capture_output=True, text=True, env=env, timeout=30)
    assert claimed.returncode == 0, claimed.stderr
    assert "Station Name:  node-a (use --name to explicitly set)\n" in claimed.stdout
    assert "claim=" not in claimed.stdout  # upstream draws a QR code, it prints no URL
    assert f"claim QR code created at {DATA}/ryve-claim-qr.png" in claimed.stdout
    # Proxy ID: the Curve25519 form of the public half (crypto.go KeyPairToCurve25519Base64)
    assert f"Proxy ID:      {proxy_id(raw[32:])}\n" in claimed.stdout
    # the stand-in leaves the claim URL where upstream leaves the QR PNG (a secret in the volume)
    _, url = read_from_container(second, f"{DATA}/ryve-claim-qr.png")
    code = url.decode().split("network.ryve.app://(app)/conduits?claim=", 1)[1]
    assert len(code) % 4 == 0  # URL-safe base64 WITH padding
    payload = base64.urlsafe_b64decode(code)
    assert payload == ('{"data":{"key":"%s","name":"node-a"},"version":1}' % doc["privateKeyBase64"]).encode()


# RFC 8032 7.1, TEST 1-3 and TEST SHA(abc): secret key (the seed) -> public key
RFC8032_KEYS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"),
]


def ryve_claim(engine, image, volume: str, name: str = "node-a") -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_HOST=engine.host)
    command = ["docker", "run", "--rm", "-i", "-v", f"{volume}:{DATA}", image, "ryve-claim", "-d", DATA, "-n", name]
    return subprocess.run(command, input="y\n", capture_output=True, text=True, env=env, timeout=30)


def proxy_id(public: bytes) -> str:
    """crypto.go KeyPairToCurve25519Base64: u = (1 + y) / (1 - y) of the Edwards point, unpadded base64."""
    p = 2**255 - 19
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % p, p - 2, p) % p
    return base64.b64encode(u.to_bytes(32, "little")).decode().rstrip("=")


@pytest.mark.parametrize("seed, public", RFC8032_KEYS)
def test_new_key_is_the_rfc8032_key_pair_of_its_seed(docker_engine, standin_image, seed, public):
    """The stand-in's own Ed25519 (tests/standin/ed25519.c) against RFC 8032's vectors, byte for byte."""
    container, code, out = run_to_exit(docker_engine.client, standin_image, ["start", "-d", DATA],
                                       environment={"STANDIN_KEY_SEED_HEX": seed, "STANDIN_EXIT_AFTER": "0"})
    assert code == 3, out
    _, body = read_from_container(container, f"{DATA}/conduit_key.json")
    raw = base64.b64decode(json.loads(body)["privateKeyBase64"] + "==")
    assert raw.hex() == seed + public
    assert check_key(body) == raw


def test_proxy_id_is_the_curve25519_form_of_the_stored_public_half(docker_engine, standin_image, docker_cleanup):
    """ryve-claim (cmd/ryve.go:103-106): the Proxy ID is crypto.go's KeyPairToCurve25519Base64 of the
    public half AS STORED (ParsePrivateKey keeps key[32:]); no curve point there, and the command fails."""
    client = docker_engine.client
    seed, public = (bytes.fromhex(h) for h in RFC8032_KEYS[0])
    volume = client.volumes.create(docker_cleanup.name("made"), labels=docker_cleanup.labels)
    _, code, out = run_to_exit(client, standin_image, ["start", "-d", DATA],
                               environment={"STANDIN_KEY_SEED_HEX": seed.hex(), "STANDIN_EXIT_AFTER": "0"},
                               volumes={volume.name: {"bind": DATA, "mode": "rw"}})
    assert code == 3, out
    claimed = ryve_claim(docker_engine, standin_image, volume.name)
    assert claimed.returncode == 0, claimed.stderr
    # the X25519 public key of the same secret scalar, worked out apart from this code:
    # openssl pkey -pubout of the X25519 key SHA-512(seed)[:32] (RFC 7748 clamps it alike)
    assert "Proxy ID:      2F4H7CKwrYgVN8L0TWYtGhQ8+DDFespDBdhcepD2ti4\n" in claimed.stdout
    assert proxy_id(public) == "2F4H7CKwrYgVN8L0TWYtGhQ8+DDFespDBdhcepD2ti4"

    def key_file(public_half: bytes) -> bytes:
        encoded = base64.b64encode(seed + public_half).decode().rstrip("=")
        return json.dumps({"mnemonic": "x", "privateKeyBase64": encoded}).encode()

    # the base point B (y = 4/5) as the public half, though it is not the seed's: u = 9
    volume, path = _volume_with_key(client, docker_cleanup, key_file(bytes.fromhex("58" + "66" * 31)))
    claimed = ryve_claim(docker_engine, standin_image, volume.name)
    assert claimed.returncode == 0, claimed.stderr
    assert "Proxy ID:      " + base64.b64encode(bytes([9]) + bytes(31)).decode().rstrip("=") + "\n" in claimed.stdout
    # y = 2: x^2 = (y^2 - 1) / (d y^2 + 1) is no square, so no point (edwards25519 SetBytes)
    content = key_file((2).to_bytes(32, "little"))
    path.write_bytes(content)
    (path.parent / "ryve-claim-qr.png").unlink()
    container = client.containers.run(standin_image, ["start", "-d", DATA, "-v"],
                                      volumes={volume.name: {"bind": DATA, "mode": "rw"}}, detach=True)
    out = wait_log(container, "Starting Psiphon Conduit")
    assert "Loaded existing key" in out and path.read_bytes() == content  # start only counts 64 bytes
    container.remove(force=True)
    claimed = ryve_claim(docker_engine, standin_image, volume.name)
    assert claimed.returncode == 1
    assert "Error: failed to derive proxy id: failed to convert public key: edwards25519: invalid point encoding\n" \
        in claimed.stderr
    assert "Proxy ID" not in claimed.stdout
    assert not (path.parent / "ryve-claim-qr.png").exists()  # it fails before the QR code


def _volume_with_key(client, cleanup, content: bytes, mode: int = 0o600):
    volume = client.volumes.create(cleanup.name("key"), labels=cleanup.labels)
    mountpoint = Path(client.api.inspect_volume(volume.name)["Mountpoint"])
    (mountpoint / "conduit_key.json").write_bytes(content)
    os.chmod(mountpoint / "conduit_key.json", mode)
    os.chown(mountpoint / "conduit_key.json", 1000, 999)
    os.chown(mountpoint, 1000, 999)
    return volume, mountpoint / "conduit_key.json"


@pytest.mark.parametrize("content, kept", [
    (b'{"mnemonic": "x", "privateKeyBase64": "%s"}' % base64.b64encode(bytes(range(64))), True),  # padded: fine
    (b'{"privateKeyBase64": "%s", "extra": [1, 2]}' % base64.b64encode(bytes(range(64))).rstrip(b"="), True),
    (b'{"mnemonic": "x", "privateKeyBase64": "%s"' % base64.b64encode(bytes(range(64))), False),  # bad JSON
    (b'{"privateKeyBase64": "not base64!"}', False),
    (b'{"privateKeyBase64": "%s"}' % base64.b64encode(bytes(32)), False),  # 32 bytes, not 64
    (b'{"privateKeyBase64": ""}', False),
])
def test_unparsable_key_is_silently_replaced(docker_engine, standin_image_v1, docker_cleanup, content, kept):
    """config.go loadOrCreateKey (2.0.0 :295-349, 1.1.0 :139-194): a key that does not parse is overwritten."""
    client = docker_engine.client
    volume, path = _volume_with_key(client, docker_cleanup, content, 0o644)
    container = client.containers.run(standin_image_v1, ["start", "-d", DATA],
                                      volumes={volume.name: {"bind": DATA, "mode": "rw"}}, detach=True)
    out = wait_log(container, "Starting Psiphon Conduit")
    assert "Error" not in out and "WARN" not in out  # not a word about it
    after = path.read_bytes()
    if kept:
        assert after == content
    else:
        assert after != content and len(json.loads(after)["privateKeyBase64"]) == 86
        assert path.stat().st_mode & 0o777 == 0o644  # os.WriteFile keeps the mode of an existing file


def test_unwritable_data_dir_fails(docker_engine, standin_image):
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["start", "-d", "/usr/bin/data"])
    assert code == 1
    assert ("Error: failed to load configuration: failed to create data directory: mkdir /usr/bin/data: "
            "permission denied") in out
    _, code, out = run_to_exit(docker_engine.client, standin_image, ["start", "-d", "/home"])
    assert code == 1
    assert ("failed to load configuration: failed to load or create key: failed to save key: "
            "open /home/conduit_key.json: permission denied") in out


def test_1x_stats_file(docker_engine, standin_image_v1, docker_cleanup):
    client = docker_engine.client
    _, code, out = run_to_exit(client, standin_image_v1, ["start", "--max-common-clients", "5"])
    assert code == 1 and "unknown flag: --max-common-clients" in out
    _, code, out = run_to_exit(client, standin_image_v1, ["start", "-m", "0"])
    assert code == 1 and "max-clients must be between 1 and 1000" in out
    _, code, out = run_to_exit(client, standin_image_v1, ["start", "--geo"])
    assert code == 1 and "unknown flag: --geo" in out  # the community build's flag

    port = free_port()
    container = client.containers.run(
        standin_image_v1,
        ["start", "--max-clients", "9", "-b", "2.5", "-d", DATA, "--stats-file",
         "--metrics-addr", f"127.0.0.1:{port}"],
        # live (and so the first stats.json) late enough that the absence check below runs before it on a loaded machine
        environment={"STANDIN_LIVE_AFTER": "6", "STANDIN_CLIENTS": "4"},
        network_mode="host", detach=True,
    )
    wait_log(container, "[OK] Starting Psiphon Conduit (Max Clients: 9, Bandwidth: 2 Mbps)")
    text = wait_metrics(port)
    assert metric(text, "conduit_max_clients") == 9
    assert metric(text, "conduit_max_common_clients") is None
    assert metric(text, "conduit_bandwidth_limit_bytes_per_second") == 312500
    # never written at start: only when the client counts change
    with pytest.raises(Exception):
        read_from_container(container, f"{DATA}/stats.json")
    _, body = wait_for(lambda: read_from_container(container, f"{DATA}/stats.json"), timeout=30,
                       message="stats.json")
    stats = json.loads(body)
    assert list(stats) == ["announcing", "connectingClients", "connectedClients", "totalBytesUp", "totalBytesDown",
                           "uptimeSeconds", "idleSeconds", "isLive", "timestamp"]
    assert stats["isLive"] is True and stats["connectedClients"] == 4
    assert stats["timestamp"].endswith("Z") and "T" in stats["timestamp"]
    out = logs(container)
    assert re.search(r" \[STATS\] Connecting: 0 \| Connected: 4 \| Up: 0 B \| Down: 0 B \| Uptime: \d+s\n", out)  # live after 6 s, or later when slow
    assert " [INFO] Inproxy activity: announcing=1 connecting=0 connected=4" in out


def test_community_build(docker_engine, standin_image_community):
    client = docker_engine.client
    assert client.containers.run(standin_image_community, ["--version"], remove=True) == b"conduit version cc08a09\n"
    assert binaries(client, standin_image_community) == ["conduit"]
    port = free_port()
    container = client.containers.run(
        standin_image_community,
        ["start", "-d", DATA, "-s", "--geo", "--metrics-addr", f"127.0.0.1:{port}"],
        environment={"STANDIN_REGIONS": "IR=3:100:200,DE=1:5:6"}, network_mode="host", detach=True,
    )
    text = wait_metrics(port, lambda t: metric(t, "conduit_is_live") == 1)
    assert metric(text, "conduit_max_clients") == 50 and metric(text, "conduit_announcing") is None
    assert metric(text, "conduit_idle_seconds") is not None
    _, body = wait_for(lambda: read_from_container(container, f"{DATA}/stats.json"), timeout=30,
                       message="stats.json")
    stats = json.loads(body)
    assert "announcing" not in stats
    assert stats["geo"] == [
        {"code": "IR", "country": "IR", "count": 3, "count_total": 3, "bytes_up": 100, "bytes_down": 200},
        {"code": "DE", "country": "DE", "count": 1, "count_total": 1, "bytes_up": 5, "bytes_down": 6},
    ]
    out = logs(container)
    assert out.startswith("[GEO] Tracking enabled\nPrometheus metrics available at")
    assert "\nStarting Psiphon Conduit (Max Clients: 50, Bandwidth: 40 Mbps)\n" in out
    assert "[OK] Connected to Psiphon network" in out


def test_tcp_listener_through_published_port(docker_engine, standin_image, docker_cleanup, published_ports):
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

    out = wait_log(container, "Connected: 0 |")
    stats = [line.split(" ", 2)[2] for line in out.splitlines() if " [STATS] " in line]
    assert stats[0].startswith("[STATS] Announcing: 1 | Connecting: 0 | Connected: ")
    assert stats[-1].startswith("[STATS] Announcing: 1 | Connecting: 0 | Connected: 0 | Up: ")
    assert stats[-1].endswith(" | Regions: none")


def test_region_gauges(docker_engine, standin_image):
    port = free_port()
    container = docker_engine.client.containers.run(
        standin_image,
        ["start", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"],
        environment={"STANDIN_REGIONS": "IR=3:1000:2000,CN=2:10:20"},
        network_mode="host", detach=True,
    )
    text = wait_metrics(port, lambda t: metric(t, "conduit_is_live") == 1)
    assert metric(text, "conduit_region_connected_clients", scope="common", region="IR") == 3
    assert metric(text, "conduit_region_connected_clients", scope="common", region="CN") == 2
    assert metric(text, "conduit_region_connecting_clients", scope="common", region="IR") == 0
    assert metric(text, "conduit_region_bytes_uploaded", scope="common", region="IR") == 1000
    assert metric(text, "conduit_region_bytes_downloaded", scope="common", region="CN") == 20
    assert metric(text, "conduit_connected_clients") == 5
    assert metric(text, "conduit_bytes_uploaded") == 1010
    assert metric(text, "conduit_bytes_downloaded") == 2020
    out = wait_log(container, "[STATS]")
    # the uptime is 0s unless the machine is slow to print the first line
    assert re.search(re.escape("[STATS] Announcing: 1 | Connecting: 0 | Connected: 5 | Up: 1010 B | Down: 2.0 KB | Uptime: ")
                     + r"\d+s" + re.escape(" | Regions: common[IR(conn:3|traffic:2.9 KB), CN(conn:2|traffic:30 B)]"), out)


def docker_time(text: str) -> float:
    """Seconds since the epoch of a Docker timestamp (RFC 3339, nanoseconds cut to microseconds)."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp() + float("0." + (fraction or "0"))


def test_failure_knobs(docker_engine, standin_image):
    client = docker_engine.client
    _, code, out = run_to_exit(client, standin_image, ["start", "-d", DATA],
                               environment={"STANDIN_EXIT_AFTER": "0"})
    assert code == 3

    port = free_port()
    container = client.containers.run(
        standin_image, ["start", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"],
        environment={"STANDIN_EXIT_AFTER": "1", "STANDIN_NO_METRICS": "1", "STANDIN_UPGRADE_REQUIRED": "1"},
        network_mode="host", detach=True,
    )
    wait_log(container, "Prometheus metrics available")
    with pytest.raises(Exception):
        scrape(port, timeout=0.5)
    assert container.wait(timeout=30)["StatusCode"] == 3
    container.reload()
    ran = docker_time(container.attrs["State"]["FinishedAt"]) - docker_time(container.attrs["State"]["StartedAt"])
    assert 0.9 < ran < 10, ran  # by Docker's own clock: it ran the 1 s STANDIN_EXIT_AFTER asks for, then exited
    assert " WARNING: A newer version of Conduit is required. Please upgrade.\n" in logs(container)


def test_metrics_port_in_use(docker_engine, standin_image):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _, code, out = run_to_exit(docker_engine.client, standin_image,
                                   ["start", "-d", DATA, "--metrics-addr", f"127.0.0.1:{port}"], network_mode="host")
    assert code == 1
    assert (f"Error: conduit service error: failed to start metrics server: failed to bind to 127.0.0.1:{port}: "
            f"listen tcp 127.0.0.1:{port}: bind: address already in use") in out


def test_conduit_monitor(docker_engine, standin_image):
    client = docker_engine.client
    _, code, out = run_to_exit(
        client, standin_image, ["--traffic-limit", "50", "--traffic-period", "30", "--", "start", "-m", "5"],
        entrypoint=["conduit-monitor"])
    assert code == 1
    assert "[ERROR] Configuration error: traffic-limit must be at least 100 GB" in out

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
    assert "[INFO] No previous state found, starting fresh traffic period" in out
    assert "[INFO] Starting Conduit in NORMAL mode" in out
    assert "Starting Psiphon Conduit (Max Common Clients: 9, Max Personal Clients: 0, Bandwidth: unlimited)" in out
    _, key = read_from_container(container, f"{DATA}/conduit_key.json")
    assert b"privateKeyBase64" in key
    _, state = read_from_container(container, f"{DATA}/traffic_state.json")
    assert list(json.loads(state)) == ["periodStartTime", "bytesUsed", "isThrottled"]
    container.stop(timeout=10)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0
    assert "[INFO] Received signal, shutting down..." in logs(container)


@pytest.mark.parametrize("version, throttle_flag, metric_name", [
    ("2.0.0", "--max-common-clients", "conduit_max_common_clients"),
    ("1.5.0", "--max-clients", "conduit_max_clients"),
])
def test_conduit_monitor_throttles_at_80_percent(docker_engine, standin_image_factory, version, throttle_flag,
                                                 metric_name):
    """main.go:464-501 + 316-323: at 80 % of the cap (GiB) the child is restarted with 10 clients, 10 Mbps."""
    image = standin_image_factory(version)
    port = free_port()
    container = docker_engine.client.containers.run(
        image,
        ["--traffic-limit", "100", "--traffic-period", "30", "--data-dir", DATA,
         "--metrics-addr", f"127.0.0.1:{port}", "--", "-m", "200", "-b", "50"],
        entrypoint=["conduit-monitor"], network_mode="host", detach=True,
        environment={"STANDIN_TRAFFIC_BYTES": str(int(100 * 2**30 * 0.8) + 1)},
    )
    text = wait_metrics(port, lambda t: metric(t, metric_name) == 10, timeout=40)
    assert metric(text, "conduit_bandwidth_limit_bytes_per_second") == 10 * 125000
    out = logs(container)
    assert "[THROTTLE] Threshold reached (80%). Throttling..." in out
    assert "[INFO] Restarting Conduit to apply new settings..." in out
    assert "[INFO] Starting Conduit in THROTTLED mode" in out
    _, state = read_from_container(container, f"{DATA}/traffic_state.json")
    assert json.loads(state)["isThrottled"] is True
    if throttle_flag == "--max-clients":
        assert "Max Clients: 10, Bandwidth: 10 Mbps" in out


def test_conduit_monitor_restarts_a_failing_child(docker_engine, standin_image):
    """main.go:346-352: a child that exits is started again every 5 s; the container keeps running."""
    container = docker_engine.client.containers.run(
        standin_image, ["--traffic-limit", "100", "--traffic-period", "30", "--", "--bogus"],
        entrypoint=["conduit-monitor"], detach=True,
    )
    wait_for(lambda: logs(container).count("[ERROR] Conduit exited with error: exit status 1") >= 2, timeout=15,
             message="two failed starts")
    container.reload()
    assert container.status == "running" and container.attrs["RestartCount"] == 0
