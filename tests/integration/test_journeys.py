"""A volunteer's first week, command by command: the `conduit` CLI as a subprocess on the private
Docker engine, under the default host policy plus the stand-in images. Each journey asserts what
the person would check (exit codes, the lines they would look for, the host's real state) and
leaves its transcript in the test artifacts (journeys/<name>.txt) to be read as a new user would.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

from conduit.state.store import State
from harness import free_port_block, wait_for
from tests.integration.test_adopt_samnet import community_image, samnet_host  # noqa: F401 - fixtures
from tests.journey import Journey, host_policy

pytestmark = pytest.mark.integration


@pytest.fixture
def journey(request, tmp_path, docker_engine, docker_cleanup):
    """journey(policy=None, name=None) -> a Journey in tmp_path; its transcript is saved at the end, pass or fail."""
    from conduit.engine.execute import stop_pidfile

    made: list[Journey] = []

    def make(policy: str | None = None, name: str | None = None, cwd: Path | None = None) -> Journey:
        made.append(Journey(name or request.node.name.removeprefix("test_"), cwd or tmp_path, docker_engine, policy or host_policy()))
        return made[-1]

    yield make
    for j in made:
        j.save()
        stop_pidfile(j.state / "tracker.pid")  # a tracker must not outlive its journey


def edit(path: Path, change) -> dict:
    """Load the YAML, let `change` edit the document, write it back (comments are lost; the person's editor would keep them)."""
    doc = yaml.safe_load(path.read_text())
    change(doc["spec"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return doc


def running(engine, prefix: str) -> dict[str, str]:
    return {c.name: c.status for c in engine.client.containers.list(all=True) if re.fullmatch(rf"{re.escape(prefix)}-\d+", c.name)}


def keys(engine, volume_prefix: str) -> dict[str, bytes]:
    out = {}
    for volume in engine.client.volumes.list():
        if volume.name.startswith(f"{volume_prefix}-"):
            out[volume.name] = (Path(volume.attrs["Mountpoint"]) / "conduit_key.json").read_bytes()
    return out


def get(url: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return 0, None


# ---------------------------------------------------------------------------- 1. a fresh VPS


def test_fresh_vps(journey, docker_engine, standin_image):
    j = journey()
    init = j.run("init", "-o", "cluster.yaml")
    assert init.returncode == 0, init.stderr
    assert "cluster.yaml" in init.stdout + init.stderr
    written = (j.cwd / "cluster.yaml").read_text()
    resources = yaml.safe_load(written)["spec"]["containers"].get("resources") or {}
    j.check(not {"cpus", "memory"} & set(resources), f"init freezes per-node sizes: {resources}")
    prefix, port_base = "fresh", free_port_block(8)

    def first_week(spec: dict) -> None:
        spec["containers"]["count"] = 2  # two keys to grow reputation on, not the one init starts with
        spec["conduit"]["max_clients"] = 50  # a small VPS shared with other work
        spec["containers"]["image"] = standin_image  # the stand-in: no registry is reachable here
        spec["containers"]["naming"]["prefix"] = prefix  # the engine is shared with other tests; init's "conduit" could collide
        spec["conduit"]["metrics_port_base"] = port_base  # 9090 may be taken on this machine
        spec["health"] = {"gate_timeout_seconds": 30, "settle_seconds": 1}  # the stand-in starts in half a second
        spec["containers"]["resources"] = {"ulimit_nofile": 16384}  # TEMP
        spec["tracker"]["interface"] = "lo"  # the harness host's NIC name is unknown; the nodes' region metrics feed it anyway

    j.note("edit cluster.yaml: count 2, max_clients 50, the stand-in image, prefix 'fresh', a free metrics port block")
    edit(j.cwd / "cluster.yaml", first_week)

    validate = j.run("validate", "cluster.yaml")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    plan = j.run("plan", "cluster.yaml")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"{prefix}-1" in plan.stdout and f"{prefix}-2" in plan.stdout
    assert running(docker_engine, prefix) == {}  # a plan changes nothing

    apply = j.run("apply", "--auto-approve", "cluster.yaml")
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert running(docker_engine, prefix) == {f"{prefix}-1": "running", f"{prefix}-2": "running"}
    assert [(g.id, g.outcome) for g in State(j.state).generations()] == [(1, "succeeded")]
    assert set(keys(docker_engine, "conduit-data")) == {"conduit-data-1", "conduit-data-2"}  # init names the volumes conduit-data-N whatever the prefix

    status = j.run("status", "cluster.yaml")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{prefix}-1" in status.stdout and f"{prefix}-2" in status.stdout

    token = j.run("tokens", "create", "phone", "--role", "viewer")
    assert token.returncode == 0, token.stderr
    secret = token.stdout.strip()
    assert secret and "only this once" in token.stderr

    port = free_port_block(1)
    serve = j.start("serve", "--port", str(port), "cluster.yaml")
    url = f"http://127.0.0.1:{port}"
    nodes = wait_for(lambda: (lambda r: r[1] if r[0] == 200 and len(r[1]) == 2 else None)(get(f"{url}/api/v1/nodes", secret)),
                     timeout=60, message="the agent answering with two nodes")  # fmt: skip
    assert sorted((n["name"], n["state"], n["max_clients"]) for n in nodes) == [(f"{prefix}-1", "running", 50), (f"{prefix}-2", "running", 50)]
    assert get(f"{url}/api/v1/nodes", "not-a-token")[0] == 0  # refused (401) without a good token
    j.stop(serve)
    j.check(url in serve.stdout() + serve.stderr(), "serve does not say where it listens")

    claim = j.run("claim", "--yes", "cluster.yaml")
    assert claim.returncode == 0, claim.stdout + claim.stderr
    assert len(claim.stdout.splitlines()) > 10 and "network.ryve.app://" in claim.stdout  # the QR code and its link
    j.verdict()


# ------------------------------------------------------------ 2. adopting a bash-manager install


def test_adopt_a_bash_manager_install_with_telegram(journey, samnet_host):
    from tests.telegram_stub import TelegramStub

    stub = TelegramStub()
    # The one thing beyond the defaults: the Bot API stand-in listens on the loopback, not api.telegram.org.
    j = journey(host_policy(telegram_api_urls=["https://api.telegram.org", "http://127.0.0.1:*"]))
    j.note("a host as SamNet conduit-manager v1.2 left it: containers conduit, conduit-2; /opt/conduit/settings.conf copied here")
    keys_before = samnet_host.keys()
    base = free_port_block(2)
    try:
        imported = j.run("import-v1", "--settings", "settings.conf", "--metrics-port-base", str(base), "-o", "cluster.yaml")
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert "conduit plan cluster.yaml" in imported.stdout  # the next step
        text = (j.cwd / "cluster.yaml").read_text()
        assert "AAFakeToken" not in text  # the bot token went to a secret file, not into the spec
        telegram = yaml.safe_load(text)["spec"]["alerts"]["telegram"]
        secret_files = [telegram["bot_token"]["file"], telegram["chat_id"]["file"]]
        j.check(all(f.startswith("/etc/conduit/secrets/") for f in secret_files), f"import-v1 put the Telegram secrets outside the default policy's /etc/conduit/secrets: {secret_files}")

        def review(spec: dict) -> None:
            spec["alerts"]["telegram"]["api_url"] = stub.url  # the Bot API stand-in
            spec["health"] = {"gate_timeout_seconds": 60, "settle_seconds": 1}  # the stand-in starts in half a second

        j.note(f"edit cluster.yaml: alerts.telegram.api_url {stub.url}; health.settle_seconds 1")
        edit(j.cwd / "cluster.yaml", review)

        plan = j.run("plan", "cluster.yaml")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "conduit" in plan.stdout and "adopt" in plan.stdout.lower()
        applied = j.run("apply", "--auto-approve", "cluster.yaml")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "Traceback" not in applied.stderr
        for name in ("conduit", "conduit-2"):
            container = samnet_host.client.containers.get(name)
            assert container.status == "running" and container.labels["io.conduit.cluster"] == "conduit"
        assert samnet_host.keys() == keys_before  # the same identities, byte for byte
        again = j.run("plan", "--detailed-exitcode", "cluster.yaml")
        assert again.returncode == 0, again.stdout + again.stderr

        alert = j.run("alerts", "test", "cluster.yaml")
        assert alert.returncode == 0, alert.stdout + alert.stderr
    finally:
        stub.close()
    ((path, body),) = stub.requests
    assert path == "/bot1234567890:AAFakeTokenForTests-abcdefghijklmno/sendMessage" and body["chat_id"] == "123456789"
    assert "AAFakeToken" not in "\n".join(j.lines)  # never shown to the person
    j.verdict()
