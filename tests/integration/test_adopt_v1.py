"""A bash-manager host moves to the declarative tool and back out, keys intact byte for byte."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conduit.features.v1import import secret_files
from conduit.spec.policy import HostPolicy
from harness import free_port_block, wait_for
from tests.helpers import CONDUIT, cli_env, default_policy_with_standin, removed_afterwards

pytestmark = pytest.mark.integration


class Host:
    def __init__(self, engine, tmp: Path, prefix: str):
        self.engine, self.tmp, self.prefix = engine, tmp, prefix
        self.state = tmp / "state"
        self.spec = tmp / "cluster.yaml"
        self.policy = default_policy_with_standin()  # what a real host gets, plus the stand-in images

    def run(self, *args: str) -> subprocess.CompletedProcess:
        argv = [*CONDUIT, "--docker-host", self.engine.host, "--state-dir", str(self.state), "--root", str(self.tmp), *args]
        env = cli_env() | {"CONDUIT_POLICY": self.policy}
        return subprocess.run(argv, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, env=env)

    def volumes(self) -> list[str]:
        return [self.prefix + "-data", self.prefix + "-data-2"]

    def keys(self) -> dict[str, bytes]:
        out = {}
        for name in self.volumes():
            mountpoint = Path(self.engine.client.api.inspect_volume(name)["Mountpoint"])
            out[name] = (mountpoint / "conduit_key.json").read_bytes()
        return out


@pytest.fixture
def v1_host(tmp_path, docker_engine, standin_image_v1, docker_cleanup):
    """Containers and volumes named as the v1 manager named them, started as it started them."""
    host = Host(docker_engine, tmp_path, docker_cleanup.name("v1"))
    client = docker_engine.client
    for index, name, volume in ((1, host.prefix, host.volumes()[0]), (2, f"{host.prefix}-2", host.volumes()[1])):
        client.volumes.create(volume)
        _seed_key(host, volume)
        client.containers.run(
            standin_image_v1, ["start", "--max-clients", "100", "--bandwidth", "5", "-d", "/home/conduit/data"],
            name=name, network_mode="host", volumes={volume: {"bind": "/home/conduit/data", "mode": "rw"}},
            restart_policy={"Name": "unless-stopped"}, detach=True,
        )  # fmt: skip
    wait_for(lambda: all(_has_key(host, v) for v in host.volumes()), timeout=30, message="the v1 nodes' keys")
    (tmp_path / "settings.conf").write_text(
        "MAX_CLIENTS=100\nBANDWIDTH=5\nCONTAINER_COUNT=2\nTELEGRAM_BOT_TOKEN='1:secret'\nTELEGRAM_CHAT_ID=42\nNEW_KEY=x\n"
    )
    # The cluster is named for the prefix: its Telegram files in the default secrets directory are its own.
    with removed_afterwards(*secret_files(host.prefix, Path(HostPolicy().secrets.file_dirs[0]))):
        yield host


def _seed_key(host: Host, volume: str) -> None:
    """A key as the real node makes it: an Ed25519 seed and its public half (crypto.go:74-103).

    The stand-in keeps a key it finds (and makes the same kind itself, tests/standin/ed25519.c).
    """
    import base64
    import os

    from conduit.facts.keyfile import ed25519_public

    seed = os.urandom(32)
    encoded = base64.b64encode(seed + ed25519_public(seed)).decode().rstrip("=")
    path = Path(host.engine.client.api.inspect_volume(volume)["Mountpoint"]) / "conduit_key.json"
    path.write_text(json.dumps({"mnemonic": "seeded by the test", "privateKeyBase64": encoded}, indent=2))
    os.chmod(path, 0o600)
    os.chown(path, 1000, 1000)
    os.chown(path.parent, 1000, 1000)


def write_v1_spec(host: Host) -> None:
    """A spec naming the v1 host's two nodes, with nothing else to manage."""
    spec = {
        "containers": {"count": 2, "naming": {"scheme": "v1", "prefix": host.prefix, "volume_prefix": f"{host.prefix}-data"}},
        "sysctl": {"enabled": False},
        "tracker": {"enabled": False},
    }
    doc = {"apiVersion": "conduit.psiphon.ca/v1alpha1", "kind": "ConduitCluster", "metadata": {"name": host.prefix}, "spec": spec}
    host.spec.write_text(yaml.safe_dump(doc))


def _has_key(host: Host, volume: str) -> bool:
    mountpoint = Path(host.engine.client.api.inspect_volume(volume)["Mountpoint"])
    return (mountpoint / "conduit_key.json").exists()


def test_import_apply_and_destroy_keep_every_key(v1_host):
    host = v1_host
    keys = host.keys()
    result = host.run("import-v1", "--settings", str(host.tmp / "settings.conf"), "--prefix", host.prefix,
                      "--metrics-port-base", str(free_port_block(2)), "-o", str(host.spec))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unknown setting NEW_KEY" in result.stderr
    doc = yaml.safe_load(host.spec.read_text())
    assert doc["spec"]["containers"]["naming"]["scheme"] == "v1"
    assert "1:secret" not in host.spec.read_text()
    doc["spec"]["sysctl"] = {"enabled": False}
    doc["spec"]["tracker"] = {"enabled": False}
    doc["spec"]["health"] = {"gate_timeout_seconds": 10, "settle_seconds": 1}
    host.spec.write_text(yaml.safe_dump(doc, sort_keys=False))

    plan = json.loads(host.run("plan", "--json", str(host.spec)).stdout)
    changes = [(s["kind"], s["id"], s["action"]) for s in plan["steps"] if s["action"] != "no-op"]
    backup = ("keys", f"{host.prefix},{host.prefix}-2", "backup")  # their keys first: the adopts touch their volumes
    assert changes == [backup, ("container", host.prefix, "adopt"), ("container", f"{host.prefix}-2", "adopt")]

    applied = host.run("apply", "--auto-approve", str(host.spec))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "keys backed up to" in applied.stdout
    for name in (host.prefix, f"{host.prefix}-2"):
        container = host.engine.client.containers.get(name)
        assert container.labels["io.conduit.cluster"] == host.prefix and container.status == "running"
        assert container.attrs["Config"]["Cmd"][:5] == ["start", "-m", "100", "-b", "5"]
    assert host.keys() == keys
    assert host.run("plan", "--detailed-exitcode", str(host.spec)).returncode == 0
    # Now the nodes are the cluster's: importing them again would take them from it.
    again = host.run("import-v1", "--settings", str(host.tmp / "settings.conf"), "--prefix", host.prefix,
                     "-o", str(host.tmp / "again.yaml"))  # fmt: skip
    assert again.returncode == 1 and again.stderr.count("\n") == 1, again.stderr
    assert f"belongs to cluster {host.prefix} (managed by conduit), not to a bash manager" in again.stderr
    assert not (host.tmp / "again.yaml").exists()

    destroyed = host.run("destroy", "--auto-approve", str(host.spec))
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not [c for c in host.engine.client.containers.list(all=True) if c.name.startswith(host.prefix)]
    assert host.keys() == keys


def test_key_backup_and_restore(v1_host):
    host = v1_host
    write_v1_spec(host)
    keys = host.keys()
    backup = host.tmp / "backup"
    assert host.run("keys", "backup", str(host.spec), str(backup)).returncode == 0
    files = sorted(p.name for p in backup.iterdir())
    assert files == ["SHA256SUMS", f"{host.prefix}-data-2.conduit_key.json", f"{host.prefix}-data.conduit_key.json"]
    assert all((backup / f).stat().st_mode & 0o777 == 0o600 for f in files)

    # the same keys restore cleanly
    assert host.run("keys", "restore", str(host.spec), str(backup)).returncode == 0
    assert host.keys() == keys
    # a volume whose key differs is not overwritten without --force
    mountpoint = Path(host.engine.client.api.inspect_volume(host.volumes()[1])["Mountpoint"])
    (mountpoint / "conduit_key.json").write_text('{"mnemonic": "other", "privateKeyBase64": "b3RoZXI"}')
    refused = host.run("keys", "restore", str(host.spec), str(backup))
    assert refused.returncode == 1 and "holds a different key" in refused.stderr
    assert host.keys()[host.volumes()[1]] != keys[host.volumes()[1]]
    assert host.run("keys", "restore", "--force", str(host.spec), str(backup)).returncode == 0
    assert host.keys() == keys
    # a key the node would not keep (it would make a new one) is refused, naming the file
    bad = host.tmp / "bad-backup"
    bad.mkdir()
    content = b'{"mnemonic": "a b c", "privateKeyBase64": "QUJD"}'
    (bad / f"{host.prefix}-data.conduit_key.json").write_bytes(content)
    import hashlib

    (bad / "SHA256SUMS").write_text(f"{hashlib.sha256(content).hexdigest()}  {host.prefix}-data.conduit_key.json\n")
    malformed = host.run("keys", "restore", "--force", str(host.spec), str(bad))
    assert malformed.returncode == 1 and malformed.stderr.count("\n") == 1
    assert f"{bad}/{host.prefix}-data.conduit_key.json: not a valid Conduit key" in malformed.stderr
    assert host.keys() == keys
    # a corrupted backup is refused by its checksum
    (backup / f"{host.prefix}-data.conduit_key.json").write_text("{}")
    assert "does not match its checksum" in host.run("keys", "restore", str(host.spec), str(backup)).stderr


def test_claim_shows_the_code_only_when_confirmed(v1_host):
    host = v1_host
    write_v1_spec(host)
    refused = host.run("claim", str(host.spec), "2")
    assert refused.returncode == 1 and "reveals the private key" in refused.stderr and "claim=" not in refused.stdout
    png = host.tmp / "claim.png"
    shown = host.run("claim", "--yes", "--png", str(png), str(host.spec), "2")
    assert shown.returncode == 0, shown.stderr
    assert f"network.ryve.app://(app)/conduits?claim=" in shown.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_mode & 0o777 == 0o600


def test_purge_needs_the_cluster_name(v1_host):
    host = v1_host
    write_v1_spec(host)
    wrong = host.run("destroy", "--purge-data", "--confirm-name", "nope", str(host.spec))
    assert wrong.returncode == 1 and host.keys()
    purged = host.run("destroy", "--purge-data", "--confirm-name", host.prefix, str(host.spec))
    assert purged.returncode == 0, purged.stdout + purged.stderr
    names = {v.name for v in host.engine.client.volumes.list()}
    assert not names & set(host.volumes())
    backups = list((host.state / "key-backups").glob("*/SHA256SUMS"))
    assert backups, "a last copy of the keys is kept in the state directory"


def test_an_adoption_that_fails_its_gate_rolls_back_to_the_v1_nodes(v1_host):
    """The first apply adopts; the new nodes die; the bash manager's nodes come back, no traceback."""
    host = v1_host
    write_v1_spec(host)
    doc = yaml.safe_load(host.spec.read_text())
    doc["spec"]["containers"]["image"] = host.engine.client.containers.get(host.prefix).attrs["Config"]["Image"]
    doc["spec"]["containers"]["env"] = {"STANDIN_EXIT_AFTER": "0"}
    doc["spec"]["conduit"] = {"max_clients": 100, "bandwidth_mbps": 5, "metrics_port_base": free_port_block(2)}
    doc["spec"]["health"] = {"gate_timeout_seconds": 5, "settle_seconds": 1}
    host.spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    keys = host.keys()

    applied = host.run("apply", "--auto-approve", str(host.spec))
    assert applied.returncode == 3, applied.stdout + applied.stderr
    assert "Traceback" not in applied.stderr and "KeyError" not in applied.stdout + applied.stderr
    assert "did not finish" not in applied.stdout, applied.stdout
    for name in (host.prefix, f"{host.prefix}-2"):
        container = host.engine.client.containers.get(name)
        assert container.status == "running" and "io.conduit.cluster" not in container.labels
        assert container.attrs["Config"]["Cmd"][:3] == ["start", "--max-clients", "100"]
    assert host.keys() == keys


def test_without_a_settings_file_there_is_nothing_to_import(v1_host):
    host = v1_host
    refused = host.run("import-v1", "--settings", str(host.tmp / "missing.conf"), "--prefix", host.prefix, "-o", str(host.spec))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(f"error: {host.tmp}/missing.conf not found") and "run conduit init" in refused.stderr
    assert not host.spec.exists()


def test_an_image_known_only_by_its_id_is_refused_until_pinned(v1_host, standin_image_v1):
    """The second node runs an image with no name; its own limits differ from the first's."""
    host = v1_host
    client = host.engine.client
    second = f"{host.prefix}-2"
    client.containers.get(second).remove(force=True)
    unnamed = client.containers.create(standin_image_v1, ["true"]).commit()  # an image with no repository:tag
    pinned = f"conduit-standin:pinned-{host.prefix}"
    try:
        client.containers.run(
            unnamed.id, ["start", "--max-clients", "60", "--bandwidth", "5", "-d", "/home/conduit/data"],
            name=second, network_mode="host", volumes={host.volumes()[1]: {"bind": "/home/conduit/data", "mode": "rw"}},
            restart_policy={"Name": "unless-stopped"}, detach=True,
        )  # fmt: skip
        (host.tmp / "settings.conf").write_text("CONTAINER_COUNT=2\n")
        argv = ("import-v1", "--settings", str(host.tmp / "settings.conf"), "--prefix", host.prefix, "-o", str(host.spec))
        refused = host.run(*argv)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"{second} runs image {unnamed.id[:19]} which has no repository:tag; pin an image" in refused.stderr
        assert not host.spec.exists()

        unnamed.tag(pinned)
        result = host.run(*argv)
        assert result.returncode == 0, result.stderr
        spec = yaml.safe_load(host.spec.read_text())["spec"]
        assert spec["containers"]["image"] == client.containers.get(host.prefix).attrs["Config"]["Image"]
        # No MAX_CLIENTS in the settings: the nodes' own command lines say what they run with.
        assert spec["conduit"]["max_clients"] == 100 and spec["conduit"]["bandwidth_mbps"] == 5
        assert spec["containers"]["overrides"] == {2: {"max_clients": 60}}
    finally:
        client.containers.get(second).remove(force=True)
        client.images.remove(unnamed.id, force=True)
