"""An engine that stops answering at any call: one line, the right exit code, a recorded outcome,
the stopped node put back when the engine answers again in time, and an alert."""

from __future__ import annotations

from types import SimpleNamespace

import docker.errors
import pytest
import requests.exceptions
from click.testing import CliRunner

import conduit.cli.apply as cli_apply
import conduit.engine.apply as apply_module
import conduit.execute.executor as executor_module
from conduit.cli.root import main
from conduit.drivers.docker import CountingClient
from conduit.errors import DockerError
from conduit.execute import nodehealth
from conduit.execute.executor import HANDLERS, Executor, StepFailed
from conduit.engine.planning import target_of
from conduit.plan.kinds import Kind
from conduit.execute.gates import containers_gate
from conduit.engine.reconcile import Request, reconcile
from conduit.engine.intent import Destroy
from conduit.engine.planning import Observed
from conduit.plan.planner import Plan, Step
from conduit.plan.schedule import key_backup
from conduit.render.container import container_props
from conduit.spec.load import load_text
from conduit.spec.resolve import nodes
from conduit.state.stores import open_state
from tests.helpers import SMALL_VPS, dump, minimal

SOCKET = "unix:///nonexistent/conduit-test/docker.sock"


def lost() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))")


# Kept: a real dockerd is lost here only at a moment seen from outside (test_apply's stop_daemon), never at a chosen call.
class FakeApi:
    """The part of the Docker API a replace uses, over a dict of containers. The engine stops
    at the `stop_at` call (method, n-th time) and, when `back_after` is set, answers again after
    that many pings."""

    def __init__(self, stop_at: tuple[str, int] | None = None, back_after: int | None = None):
        self.containers = {"conduit-1": {"id": "old", "running": True}}
        self.stop_at = stop_at
        self.back_after = back_after
        self.down = False
        self.seen: dict[str, int] = {}

    def _call(self, method: str) -> None:
        self.seen[method] = self.seen.get(method, 0) + 1
        if self.stop_at == (method, self.seen[method]):
            self.down = True
        if self.down:
            raise lost()

    def _find(self, name_or_id: str) -> str:
        for name, c in self.containers.items():
            if name_or_id in (name, c["id"]):
                return name
        raise docker.errors.NotFound(f"No such container: {name_or_id}")

    def ping(self):
        if self.down and self.back_after is not None:
            self.back_after -= 1
            self.down = self.back_after > 0
        self._call("ping")
        return True

    def inspect_container(self, name):
        self._call("inspect_container")
        c = self.containers[self._find(name)]
        return {"Id": c["id"], "State": {"Running": c["running"], "Status": "running" if c["running"] else "exited"},
                "RestartCount": 0, "Config": {"Cmd": ["--metrics-addr", "127.0.0.1:1"]}}

    def stop(self, name, timeout=None):
        self._call("stop")
        self.containers[self._find(name)]["running"] = False

    def remove_container(self, name, v=False, force=False):
        self._call("remove_container")
        del self.containers[self._find(name)]

    def rename(self, name, new):
        self._call("rename")
        self.containers[new] = self.containers.pop(self._find(name))

    def start(self, name):
        self._call("start")
        self.containers[self._find(name)]["running"] = True

    def volumes(self, filters=None):
        self._call("volumes")
        return {"Volumes": [{"Name": "conduit-data-1"}]}

    def inspect_image(self, image):
        self._call("inspect_image")
        return {"Id": "sha256:0"}

    def pull(self, repository, tag=None):
        self._call("pull")

    def create_container_from_config(self, config, name=None):
        self._call("create_container")
        self.containers[name] = {"id": f"new-{name}", "running": False}
        return {"Id": f"new-{name}"}


def client(api: FakeApi):
    return SimpleNamespace(api=api, base_url=SOCKET, calls=0, kept=None, side_by_side=10)


SPEC = dump(minimal(
    host={"vcpus": 2, "memory": "4GiB"},
    containers={"count": 1, "naming": {"prefix": "conduit", "volume_prefix": "conduit-data"}},
    sysctl={"enabled": False},
    health={"gate_timeout_seconds": 1, "settle_seconds": 0},
    rollout={"max_unavailable": 1, "drain_seconds": 0},
))


@pytest.fixture
def doc():
    return load_text(SPEC, "cluster.yaml", SMALL_VPS)


def replace_plan(doc) -> Plan:
    node = nodes(doc)[0]
    step = Step("containers", "container", node.name, "replace", "differs from the spec", [], container_props(doc, node), batch=1)
    return Plan("test", [step], "fp", target=target_of(doc))


# ------------------------------------------------------------------ every Docker call: one DockerError


def executor(doc, api: FakeApi, tmp_path) -> Executor:
    return Executor(target_of(doc), tmp_path, tmp_path, client(api))


@pytest.mark.parametrize("action", ["remove_container", "drop_previous", "restore_previous", "_image", "start_new", "inspect"])
def test_an_engine_that_does_not_answer_is_one_engine_error(doc, tmp_path, action):
    ex = Executor(target_of(doc), tmp_path, tmp_path, CountingClient(SOCKET))  # conduit's own client, and no dockerd behind the socket
    pull = Step("containers", "image", "example/conduit:1", "pull", "not on this host", desired={"image": "example/conduit:1"})
    args = {"_image": pull, "start_new": replace_plan(doc).changes[0]}.get(action, "conduit-1")
    with pytest.raises(DockerError) as caught:
        getattr(ex, action)(args)
    assert "\n" not in str(caught.value) and SOCKET in str(caught.value)


def test_a_step_the_engine_does_not_answer_fails_in_one_line(doc, tmp_path):
    api = FakeApi(stop_at=("start", 1))
    with pytest.raises(StepFailed) as caught:
        executor(doc, api, tmp_path).run(replace_plan(doc).changes[0])
    assert "\n" not in str(caught.value) and "Docker daemon" in str(caught.value)


def test_the_containers_gate_raises_engine_error_not_connection_error(doc, tmp_path):
    with pytest.raises(DockerError):
        nodehealth.inspect(CountingClient(SOCKET), "conduit-1")
    with pytest.raises(DockerError):
        containers_gate(Executor(target_of(doc), tmp_path, tmp_path, CountingClient(SOCKET)), ["conduit-1"], 0.2, 0)


def test_a_restore_cut_short_by_the_engine_finishes_when_run_again(doc, tmp_path):
    """The engine went away after the old node was renamed back, before it was started."""
    api = FakeApi()
    api.containers["conduit-1"]["running"] = False
    assert executor(doc, api, tmp_path).restore_previous("conduit-1") is True
    assert api.containers == {"conduit-1": {"id": "old", "running": True}}


# ------------------------------------------------------------------ reconcile: outcome recorded, node restored


def request(doc, tmp_path, api: FakeApi) -> Request:
    host = SimpleNamespace(state_dir=tmp_path, root=tmp_path, docker=lambda: client(api))
    plan = replace_plan(doc)
    return Request(doc, SPEC, None, host, SMALL_VPS, "test", lambda line: None, planner=lambda _i, d, h: (plan, Observed()))


@pytest.fixture
def no_probe(monkeypatch):
    """The image facts are the spec's own; the rollback plans against the fake engine."""

    def observed(intent, doc, host):
        host.docker().api.volumes()  # raises while the engine is down
        return Plan("test", [], "fp"), Observed()

    monkeypatch.setattr(apply_module, "plan_on_host", observed)


def test_engine_lost_for_good_mid_replace_is_failed_not_applying(doc, tmp_path, no_probe):
    api = FakeApi(stop_at=("start", 1))
    outcome = reconcile(request(doc, tmp_path, api))
    assert (outcome.status, outcome.exit_code) == ("failed", 4)
    assert outcome.rollback_failed and "conduit-1 not restored for the same reason" in outcome.failure
    assert "\n" not in outcome.failure
    (gen,) = open_state(tmp_path).history.generations()
    assert gen.outcome == "failed" and "did not finish" in gen.reason
    assert open_state(tmp_path).history.interrupted() == []


def test_engine_back_within_the_gate_timeout_restores_the_stopped_node(doc, tmp_path, no_probe):
    api = FakeApi(stop_at=("start", 1), back_after=2)
    outcome = reconcile(request(doc, tmp_path, api))
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 3)
    assert api.containers == {"conduit-1": {"id": "old", "running": True}}
    assert [g.outcome for g in open_state(tmp_path).history.generations()] == ["rolled_back"]


def test_engine_lost_in_the_gate_is_rolled_back_or_failed_never_applying(doc, tmp_path, no_probe):
    api = FakeApi(stop_at=("inspect_container", 3), back_after=1)
    outcome = reconcile(request(doc, tmp_path, api))
    assert outcome.status == "rolled_back" and "Docker daemon" in outcome.failure
    assert api.containers == {"conduit-1": {"id": "old", "running": True}}
    assert open_state(tmp_path).history.interrupted() == []


def test_an_unexpected_fault_mid_apply_is_recorded_and_rolled_back(doc, tmp_path, no_probe, monkeypatch):
    def broken(self, step):
        raise KeyError("surprise")

    monkeypatch.setitem(HANDLERS, Kind.CONTAINER, broken)
    outcome = reconcile(request(doc, tmp_path, FakeApi()))
    assert outcome.status == "rolled_back" and outcome.failure == "KeyError: 'surprise'"
    assert [g.outcome for g in open_state(tmp_path).history.generations()] == ["rolled_back"]


def test_engine_lost_during_the_key_backup_changes_nothing(doc, tmp_path, no_probe, monkeypatch):
    def backup(*args):
        raise DockerError("cannot reach the Docker daemon")

    monkeypatch.setattr(executor_module, "backup", backup)
    api = FakeApi()
    req = request(doc, tmp_path, api)
    plan = replace_plan(doc)
    plan.steps = key_backup(plan.steps, []) + plan.steps  # as the schedule writes it: the keys first
    req.planner = lambda _i, d, h: (plan, Observed())
    outcome = reconcile(req)
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert "Docker daemon" in outcome.failure
    assert api.containers == {"conduit-1": {"id": "old", "running": True}}
    # Only the backup was tried: no generation, as for a pull that failed (the audit log keeps why).
    assert open_state(tmp_path).history.generations() == []


# ------------------------------------------------------------------ the CLI: one line, exit code, alert


@pytest.fixture
def cli_with(monkeypatch, tmp_path, doc):
    """`conduit apply` whose reconcile runs against a fake engine; returns the alerts sent."""
    sent = []
    monkeypatch.setattr(cli_apply, "notify", lambda spec, text: sent.append(text))
    real = cli_apply.reconciling

    def with_fake(api):
        def run(req):
            fake = request(doc, tmp_path / "state", api)
            req.host, req.planner = fake.host, fake.planner
            return real(req)

        monkeypatch.setattr(cli_apply, "reconciling", run)
        spec = tmp_path / "cluster.yaml"
        spec.write_text(SPEC)
        (tmp_path / "state").mkdir(exist_ok=True)
        return CliRunner().invoke(main, ["--state-dir", str(tmp_path / "state"), "apply", "--auto-approve", str(spec)])

    return with_fake, sent


def test_apply_that_cannot_roll_back_exits_4_with_one_line_and_an_alert(cli_with, tmp_path, no_probe):
    run, sent = cli_with
    result = run(FakeApi(stop_at=("start", 1)))
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # besides the structured events
    assert len(errors) == 1
    assert "generation 1 failed" in errors[0] and "conduit status" in errors[0] and "conduit history" in errors[0]
    assert len(sent) == 1 and "generation 1 failed and was not rolled back" in sent[0]
    assert [g.outcome for g in open_state(tmp_path / "state").history.generations()] == ["failed"]


def test_apply_rolled_back_after_the_engine_came_back_exits_3_and_alerts(cli_with, no_probe):
    run, sent = cli_with
    result = run(FakeApi(stop_at=("start", 1), back_after=2))
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and len(sent) == 1


# ------------------------------------------------------------------ destroy: part way is exit 4


def removal(doc, tmp_path, api: FakeApi) -> Request:
    host = SimpleNamespace(state_dir=tmp_path, root=tmp_path, docker=lambda: client(api))
    steps = [Step("containers", "container", name, "delete", "no longer in the spec", [], None) for name in ("conduit-1", "conduit-2")]
    return Request(doc, SPEC, None, host, SMALL_VPS, "test", lambda line: None,
                   planner=lambda _i, d, h: (Plan("test", steps, "fp"), Observed()), intent=Destroy())


@pytest.mark.parametrize(("stop_at", "code", "left"), [(("stop", 1), 1, {"conduit-1", "conduit-2"}), (("stop", 2), 4, {"conduit-2"})])
def test_a_destroy_the_engine_leaves_part_way_is_exit_4_and_one_that_changed_nothing_exit_1(doc, tmp_path, stop_at, code, left):
    api = FakeApi(stop_at=stop_at)
    api.containers["conduit-2"] = {"id": "two", "running": True}
    outcome = reconcile(removal(doc, tmp_path, api))
    assert outcome.status == "failed" and outcome.exit_code == code
    assert set(api.containers) == left
    assert open_state(tmp_path).history.generations()[-1].outcome == "failed"


def test_a_docker_that_answers_and_refuses_the_restore_is_not_asked_in_a_busy_loop(monkeypatch):
    tries = []

    def refused(name):
        tries.append(name)
        raise DockerError("Docker refused: port is already allocated")

    monkeypatch.setattr(apply_module, "docker_answers", lambda client: True)
    applier = SimpleNamespace(ex=SimpleNamespace(restore_previous=refused, docker=lambda: None))
    deadline = apply_module.time.monotonic() + 1.2
    with pytest.raises(DockerError):
        apply_module.Applier.restore_waiting(applier, "conduit-1", deadline)
    assert 2 <= len(tries) <= 4  # one try each RETRY_SECONDS (0.5 s) until the deadline, not hundreds
