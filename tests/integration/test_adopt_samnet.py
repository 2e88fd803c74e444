"""A host exactly as SamNet conduit-manager v1.2 leaves it is imported and applied, keys intact.

The host is rebuilt from recorded data (tests/fixtures/samnet-v1.2, see its README): the
settings.conf its save_settings writes and the `docker run` argv its run_conduit_container
runs, replayed here through the Docker API against the private engine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml

from conduit.features.v1import import secret_files
from conduit.spec.policy import HostPolicy
from harness import free_port_block, wait_for
from tests.helpers import default_policy_with_standin, removed_afterwards

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "samnet-v1.2"
SOURCE_ROOT = Path(__file__).resolve().parents[2]
NAMES = ("conduit", "conduit-2")
VOLUMES = ("conduit-data", "conduit-data-2")


@pytest.fixture
def community_image(docker_engine, standin_image_community) -> str:
    """The ssmirr community build's stand-in (1.x flags, --geo, no conduit-monitor), under the name v1.2 pulls."""
    tag = standin_image_community
    recorded = json.loads((FIXTURES / "containers.json").read_text())["image"]
    repository, _, label = recorded.rpartition(":")
    docker_engine.client.images.get(tag).tag(repository, label)
    return recorded


class Host:
    def __init__(self, engine, tmp: Path, cluster: str, policy: str):
        self.engine, self.tmp, self.cluster, self.policy = engine, tmp, cluster, policy
        self.client = engine.client
        self.state = tmp / "state"
        self.spec = tmp / "cluster.yaml"
        self.settings = tmp / "settings.conf"

    def argv(self, *args: str) -> list[str]:
        """This tree's CLI (python -m conduit), not whatever `conduit` is on PATH."""
        return [sys.executable, "-m", "conduit", "--docker-host", self.engine.host,
                "--state-dir", str(self.state), "--root", str(self.tmp), *args]  # fmt: skip

    def env(self) -> dict[str, str]:
        """The default host policy plus the stand-in images."""
        return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")])),
                    CONDUIT_POLICY=self.policy)  # fmt: skip

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, env=self.env())

    def mountpoint(self, volume: str) -> Path:
        return Path(self.client.api.inspect_volume(volume)["Mountpoint"])

    def keys(self) -> dict[str, bytes]:
        return {v: (self.mountpoint(v) / "conduit_key.json").read_bytes() for v in VOLUMES}


# ------------------------------------------------------------- replaying the recorded docker CLI

_VALUED = {"--name", "--restart", "--log-opt", "-v", "--network", "--cpus", "--memory"}


def _split_run(argv: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    """`docker run` argv → ({flag: [values]}, image, command); only the flags v1.2 uses."""
    assert argv[:2] == ["docker", "run"], argv
    flags: dict[str, list[str]] = {}
    rest = argv[2:]
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in ("-d", "--rm"):
            flags[flag] = []
        elif flag in _VALUED:
            flags.setdefault(flag, []).append(rest.pop(0))
        else:
            raise AssertionError(f"the recorded docker run uses {flag}, which this replay does not know")
    return flags, rest[0], rest[1:]


def _memory_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1].lower() in units else int(text)


def replay(host: Host, argv: list[str]) -> None:
    """What the docker CLI would have asked the engine for."""
    client = host.client
    if argv[:3] == ["docker", "volume", "create"]:
        client.volumes.create(argv[3])
        return
    flags, image, command = _split_run(argv)
    if image == "alpine":
        # fix_volume_permissions: chown the volume to the conduit user; no alpine image offline.
        assert "--rm" in flags and command == ["sh", "-c", "chown -R 1000:1000 /home/conduit/data"], argv
        volume = flags["-v"][0].split(":")[0]
        root = host.mountpoint(volume)
        for path in [root, *root.rglob("*")]:
            os.chown(path, 1000, 1000, follow_symlinks=False)
        return
    volumes = {}
    for spec in flags["-v"]:
        source, target = spec.split(":")
        volumes[source] = {"bind": target, "mode": "rw"}
    log_opts = dict(opt.split("=", 1) for opt in flags.get("--log-opt", []))
    client.containers.run(
        image, command, detach="-d" in flags, name=flags["--name"][0],
        restart_policy={"Name": flags["--restart"][0]},
        log_config=docker.types.LogConfig(type="json-file", config=log_opts),
        volumes=volumes, network_mode=flags["--network"][0],
        nano_cpus=int(float(flags["--cpus"][0]) * 1e9) if "--cpus" in flags else None,
        mem_limit=_memory_bytes(flags["--memory"][0]) if "--memory" in flags else None,
    )  # fmt: skip


@pytest.fixture
def telegram(telegram_stub):
    return telegram_stub


@pytest.fixture
def samnet_host(tmp_path, docker_engine, community_image, docker_cleanup, telegram):
    """conduit and conduit-2 on conduit-data and conduit-data-2, as v1.2's start_conduit made them.

    The cluster gets a name of its own, so its Telegram files in the default secrets directory
    are its own; they are removed afterwards."""
    cluster = docker_cleanup.name("samnet")
    # The bot API stand-in listens on the loopback: the only thing the policy adds beside the images.
    host = Host(docker_engine, tmp_path, cluster, default_policy_with_standin(telegram_api_urls=[*HostPolicy().telegram_api_urls, telegram.url]))
    for name in NAMES:
        docker_cleanup.track("container", name)
    for volume in VOLUMES:
        docker_cleanup.track("volume", volume)
    recorded = json.loads((FIXTURES / "containers.json").read_text())
    for node in recorded["containers"]:
        for argv in node["prepare"]:
            replay(host, argv)
        replay(host, node["run"])
    wait_for(lambda: all((host.mountpoint(v) / "conduit_key.json").exists() for v in VOLUMES), timeout=30, message="the v1.2 nodes' keys")
    shutil.copyfile(FIXTURES / "settings.conf", host.settings)
    with removed_afterwards(*secret_files(cluster, Path(HostPolicy().secrets.file_dirs[0]))):
        yield host


def _import(host: Host, base: int) -> dict:
    result = host.run("import-v1", "--settings", str(host.settings), "--name", host.cluster,
                      "--metrics-port-base", str(base), "-o", str(host.spec))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unknown setting" not in result.stderr, result.stderr
    doc = yaml.safe_load(host.spec.read_text())
    assert "AAFakeToken" not in host.spec.read_text()
    return doc


def _trim(host: Host, doc: dict, gate_timeout: int) -> None:
    """Nothing but the containers to manage here: no sysctl writes, no tracker service."""
    doc["spec"]["sysctl"] = {"enabled": False}
    doc["spec"]["tracker"] = {"enabled": False}
    doc["spec"]["health"] = {"gate_timeout_seconds": gate_timeout, "settle_seconds": 1}
    host.spec.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_the_recorded_host_is_what_v1_2_runs(samnet_host):
    host = samnet_host
    first, second = (host.client.containers.get(n) for n in NAMES)
    assert first.attrs["Config"]["Cmd"] == ["start", "--max-clients", "200", "--bandwidth", "5", "--stats-file"]
    assert second.attrs["Config"]["Cmd"] == ["start", "--max-clients", "150", "--bandwidth", "5", "--stats-file"]
    assert second.attrs["HostConfig"]["NanoCpus"] == 500_000_000 and second.attrs["HostConfig"]["Memory"] == 256 << 20
    assert first.attrs["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "15m", "max-file": "3"}}
    assert all(c.status == "running" and c.attrs["HostConfig"]["NetworkMode"] == "host" for c in (first, second))
    assert all(host.mountpoint(v).stat().st_uid == 1000 for v in VOLUMES)


def test_import_and_apply_a_samnet_v1_2_host(samnet_host):
    host = samnet_host
    keys = host.keys()
    base = free_port_block(2)
    doc = _import(host, base)
    spec = doc["spec"]
    # The containers' own command says which CLI they speak: --max-clients/--stats-file is 1.x.
    assert spec["conduit"]["cli_version"] == "1.x"
    assert spec["conduit"]["max_clients"] == 200 and spec["conduit"]["bandwidth_mbps"] == 5
    assert spec["containers"]["image"] == "ghcr.io/ssmirr/conduit/conduit:latest"
    assert spec["containers"]["naming"] == {"scheme": "v1", "prefix": "conduit", "volume_prefix": "conduit-data"}
    assert spec["containers"]["overrides"] == {2: {"max_clients": 150, "cpus": 0.5, "memory": "256MiB"}}
    assert "data_cap" not in spec["conduit"] and spec["budget"] == {"monthly_gb": 50, "action": "stop"}  # the host-wide monthly cap
    # The bot's token and chat id went where the default host policy allows secret files, privately.
    token, chat = secret_files(host.cluster, Path("/etc/conduit/secrets"))
    assert spec["alerts"]["telegram"]["bot_token"] == {"file": str(token)}
    assert spec["alerts"]["telegram"]["chat_id"] == {"file": str(chat)}
    assert token.read_text() == "1234567890:AAFakeTokenForTests-abcdefghijklmno\n" and chat.read_text() == "123456789\n"
    assert {p.stat().st_mode & 0o777 for p in (token, chat)} == {0o600} and token.parent.stat().st_mode & 0o777 == 0o700
    _trim(host, doc, gate_timeout=60)

    plan = host.run("plan", "--json", str(host.spec))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    changes = [(s["kind"], s["id"], s["action"]) for s in json.loads(plan.stdout)["steps"] if s["action"] != "no-op"]
    assert changes == [("keys", "conduit,conduit-2", "backup"), ("container", "conduit", "adopt"), ("container", "conduit-2", "adopt")]

    applied = host.run("apply", "--auto-approve", str(host.spec))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Traceback" not in applied.stderr
    for index, name in enumerate(NAMES, 1):
        c = host.client.containers.get(name)
        assert c.status == "running" and c.labels["io.conduit.cluster"] == host.cluster
        cmd = c.attrs["Config"]["Cmd"]
        assert "--metrics-addr" in cmd and cmd[cmd.index("--metrics-addr") + 1] == f"127.0.0.1:{base + index - 1}"
        assert "--stats-file" in cmd and "--max-common-clients" not in cmd
        assert c.attrs["HostConfig"]["NetworkMode"] == "host"
        assert [m["Name"] for m in c.attrs["Mounts"]] == [VOLUMES[index - 1]]
    second = host.client.containers.get("conduit-2").attrs
    assert second["HostConfig"]["NanoCpus"] == 500_000_000 and second["HostConfig"]["Memory"] == 256 << 20
    assert host.keys() == keys
    again = host.run("plan", "--detailed-exitcode", str(host.spec))
    assert again.returncode == 0, again.stdout + again.stderr


def _apply_confirmed_after(host: Host, meanwhile) -> tuple[int, str]:
    """`conduit apply` on a terminal: once it asks for confirmation, `meanwhile()` runs, then the
    answer is yes. Returns the exit code and everything it printed."""
    import pty
    import time

    master, slave = pty.openpty()
    process = subprocess.Popen(host.argv("apply", str(host.spec)), stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=host.env())
    os.close(slave)
    said = b""
    deadline = time.monotonic() + 120
    try:
        while b"Apply these changes?" not in said and time.monotonic() < deadline:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            said += chunk
        assert b"Apply these changes?" in said, said.decode(errors="replace")
        meanwhile()
        os.write(master, b"y\n")
        rest, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return process.returncode, (said + rest).decode(errors="replace")


@pytest.mark.parametrize("blocked", [1, 2], ids=["first-node-fails", "second-node-fails"])
def test_a_failed_adoption_rolls_back_without_a_traceback(samnet_host, blocked):
    host = samnet_host
    keys = host.keys()
    base = free_port_block(2)
    doc = _import(host, base)
    _trim(host, doc, gate_timeout=8)
    v1_ids = {n: host.client.containers.get(n).id for n in NAMES}
    # Something takes the node's metrics port after the plan was shown (plan would refuse a port held
    # already): the new container cannot pass its gate. The operator confirms on a terminal meanwhile.
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        returncode, out = _apply_confirmed_after(host, lambda: (squatter.bind(("127.0.0.1", base + blocked - 1)), squatter.listen(1)))
    finally:
        squatter.close()
    assert "Traceback" not in out and "KeyError" not in out, out
    assert returncode == 3, out
    assert "rolling back" in out
    # Every node is back as v1.2 made it, the one adopted before the failure too: same container, running.
    for name in NAMES:
        c = host.client.containers.get(name)
        assert c.id == v1_ids[name] and c.status == "running", name
        assert c.attrs["Config"]["Cmd"][:2] == ["start", "--max-clients"] and "io.conduit.cluster" not in c.labels
    assert not [c.name for c in host.client.containers.list(all=True) if c.name.startswith("conduit") and c.name not in NAMES]
    assert host.keys() == keys


def test_the_adopted_alerts_reach_the_bot(samnet_host, telegram):
    host = samnet_host
    doc = _import(host, free_port_block(2))
    doc["spec"]["alerts"]["telegram"]["api_url"] = telegram.url  # the stand-in instead of api.telegram.org
    host.spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    sent = host.run("alerts", "test", str(host.spec))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "AAFakeToken" not in sent.stdout + sent.stderr
    ((path, body),) = telegram.requests
    assert path == "/bot1234567890:AAFakeTokenForTests-abcdefghijklmno/sendMessage" and body["chat_id"] == "123456789"
