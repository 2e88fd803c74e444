"""Alerts from the nodes' own signals: the newer-version warning, a conduit dead under its monitor."""

from __future__ import annotations

from pathlib import Path

import docker.errors
from harness import free_port_block

from conduit.features import watch
from conduit.spec.load import load_text
from conduit.features.nodealerts import node_problems
from conduit.drivers.observe import HostAccess
from tests.helpers import SMALL_VPS, dump, minimal

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


def free_port() -> int:
    """Of two free ports, the first: nothing answers on either (harness.free_port_block: no other
    test and no outgoing connection takes them meanwhile)."""
    return free_port_block(2)


def spec(port: int):
    doc = minimal(containers={"count": 2}, conduit={"max_clients": 40, "bandwidth_mbps": 2, "metrics_port_base": port},
                  sysctl={"enabled": False}, tracker={"enabled": False})  # fmt: skip
    return load_text(dump(doc), "cluster.yaml", SMALL_VPS)


class Api:
    def __init__(self, containers: dict[str, tuple[dict, str]]):
        self.containers = containers

    def inspect_container(self, name):
        if name not in self.containers:
            raise docker.errors.NotFound(name)
        return self.containers[name][0]

    def _url(self, path, name):
        return name

    def _get(self, name, params, stream):
        assert params["timestamps"] == 1 and params["since"] == 1767347998  # from the previous run's end
        return Answer(self.containers[name][1].encode())

    def _raise_for_status(self, response):
        pass


class Answer:
    """The SDK's streamed answer: read in pieces, then closed."""

    def __init__(self, body: bytes):
        self.body = body

    def iter_content(self, size):
        yield self.body

    def close(self):
        pass


class Client:
    def __init__(self, containers):
        self.api = Api(containers)


def info(entrypoint: list[str], command: list[str], started: str = "2026-01-02T10:00:00Z") -> dict:
    """A node restarted 2 s after its previous run finished."""
    state = {"Status": "running", "Running": True, "StartedAt": started, "FinishedAt": "2026-01-02T09:59:58Z"}
    return {"State": state, "RestartCount": 0,
            "Config": {"Entrypoint": entrypoint, "Cmd": command}, "Mounts": []}  # fmt: skip


def test_upgrade_warning_and_a_dead_monitored_node(tmp_path):
    port = free_port()
    doc = spec(port - 1)  # node 1 on `port`, node 2 on port + 1: nothing answers on either
    monitor = ["--traffic-limit", "100", "--traffic-period", "7", "--metrics-addr", f"127.0.0.1:{port}", "--", "-m", "40"]
    client = Client({
        "conduit-1": (info(["conduit-monitor"], monitor), (LOGS / "monitor-2.0.0-crashloop.log").read_text()),
        "conduit-2": (info(["conduit"], ["start", "-m", "40", "--metrics-addr", f"127.0.0.1:{port + 1}"]), (LOGS / "official-2.0.0-upgrade.log").read_text()),
    })  # fmt: skip
    now = 1767348000.0 + 60  # 2026-01-02T10:01:00Z: both started a minute ago
    problems = node_problems(doc, client, now=now)
    assert set(problems) == {"dead:conduit-1", "upgrade:conduit-2"}
    assert "runs conduit-monitor but no conduit" in problems["dead:conduit-1"]
    assert "requires a newer version of Conduit" in problems["upgrade:conduit-2"]
    assert set(node_problems(doc, client, now=1767348000.0 + 5)) == {"upgrade:conduit-2"}  # still in its grace period


def test_each_alert_is_sent_once_until_it_clears(tmp_path, monkeypatch):
    sent = []
    found = [{"upgrade:n": "node n: upgrade"}, {"upgrade:n": "node n: upgrade"}, {}, {"upgrade:n": "node n: upgrade"}]
    monkeypatch.setattr(watch, "notify", lambda doc, text: sent.append(text))
    monkeypatch.setattr(watch, "node_problems", lambda doc, client: found.pop(0))
    watcher = watch.Watcher(HostAccess(tmp_path, tmp_path / "state", "unix:///nowhere"), lambda: SMALL_VPS)
    monkeypatch.setattr(watcher.host, "docker", lambda: None)
    plan = type("Plan", (), {"changes": [], "update": None, "warnings": []})()
    for _ in range(4):
        watcher._health_alerts(None, plan)
    assert sent == ["watch: node n: upgrade", "watch: node n: upgrade"]  # again only after it had cleared


def test_a_node_asking_for_a_newer_version_makes_the_next_reconcile_ask_the_registry_at_once(tmp_path, monkeypatch):
    found = [{}, {"upgrade:n": "node n: upgrade"}, {"upgrade:n": "node n: upgrade"}]
    monkeypatch.setattr(watch, "notify", lambda doc, text: None)
    monkeypatch.setattr(watch, "node_problems", lambda doc, client: found.pop(0))
    watcher = watch.Watcher(HostAccess(tmp_path, tmp_path / "state", "unix:///nowhere"), lambda: SMALL_VPS)
    monkeypatch.setattr(watcher.host, "docker", lambda: None)
    asked = []
    plan = type("Plan", (), {"changes": [], "update": None, "warnings": []})()

    asked.append(watcher._updates().registry)  # a watch that starts asks at once
    watcher._health_alerts(None, plan)
    assert watcher._next(300) == 300
    asked.append(watcher._updates().registry)  # then as spec.updates.check_every_minutes says
    watcher._health_alerts(None, plan)  # a node logged the upgrade warning
    assert watcher._next(300) == 0
    asked.append(watcher._updates().registry)
    watcher._health_alerts(None, plan)  # the same warning again: no second check at once
    assert watcher._next(300) == 300
    asked.append(watcher._updates().registry)
    assert asked == ["now", "due", "now", "due"]


def test_a_new_image_not_taken_is_alerted_once(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(watch, "notify", lambda doc, text: sent.append(text))
    monkeypatch.setattr(watch, "node_problems", lambda doc, client: {})
    watcher = watch.Watcher(HostAccess(tmp_path, tmp_path / "state", "unix:///nowhere"), lambda: SMALL_VPS)
    monkeypatch.setattr(watcher.host, "docker", lambda: None)
    update = {"image": "r/c:stable", "new_id": "sha256:b", "new_digest": "sha256:bbbb", "new_version": "official 2.0.1",
              "taken": False, "why_not": "updates.policy is report: `conduit update` takes it"}
    plan = type("Plan", (), {"changes": [], "update": update, "warnings": []})()
    watcher._health_alerts(None, plan)
    watcher._health_alerts(None, plan)
    assert sent == ["watch: a new image is behind r/c:stable: sha256:bbbb (official 2.0.1); "
                    "not taken: updates.policy is report: `conduit update` takes it"]


def test_a_yanked_tag_or_a_lower_version_kept_out_is_alerted_once_per_watch(tmp_path, monkeypatch):
    from conduit.engine.updates import STAYS, YANKED

    sent = []
    monkeypatch.setattr(watch, "notify", lambda doc, text: sent.append(text))
    monkeypatch.setattr(watch, "node_problems", lambda doc, client: {})
    watcher = watch.Watcher(HostAccess(tmp_path, tmp_path / "state", "unix:///nowhere"), lambda: SMALL_VPS)
    monkeypatch.setattr(watcher.host, "docker", lambda: None)
    yanked = f"updates: r/c:2.0.1 that the nodes run {YANKED}, and r/c:2.0.0 is below it; {STAYS}"
    plans = [[yanked, "cannot ask r/c which CLI it speaks"], [], [yanked]]
    for warnings in plans:
        watcher._health_alerts(None, type("Plan", (), {"changes": [], "update": None, "warnings": warnings})())
    assert sent == [f"watch: {yanked}"]  # a quiet reconcile in between (the registry not asked) does not repeat it
