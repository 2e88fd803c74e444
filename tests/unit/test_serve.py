"""conduit serve: who may call what, the rates, the bind refusal, events, metrics and git."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conduit.cli.root import main
from conduit.drivers.observe import HostAccess
from conduit.engine.reconcile import Reconciled
from conduit.serve.agent import Agent, SpecFile
from conduit.serve.app import create_app
from conduit.serve.auth import Limiter, digest, new_token
from conduit.serve.live import Hub, Observer
from conduit.state.stores import open_state
from conduit.views.status import render_prometheus
from tests.helpers import EXAMPLE, SMALL_VPS
from tests.unit.test_status_render import row


def observation(connected: int = 1, state: str = "running") -> dict:
    rows = [row("conduit-1", connected=connected), row("conduit-2", state=state, up=state == "running")]
    return {
        "cluster": "edge-1", "containers": rows,
        "totals": {"containers": 2, "running": sum(r["state"] == "running" for r in rows), "up": sum(bool(r["up"]) for r in rows),
                   "connected": connected + 1, "connecting": 0, "bytes_up": 20,
                   "bytes_down": 40, "lifetime_bytes_up": 2 << 30, "lifetime_bytes_down": 6 << 30},
        "front": None, "front_capacity": None, "countries": [{"region": "IR", "clients": 2, "bytes_up": 1, "bytes_down": 2}],
        "generation": None, "watch": None, "drift": [], "pending": 0,
    }  # fmt: skip


class FakeHost:
    """What the observer sees: an observation the test changes by hand."""

    def __init__(self):
        self.data = observation()

    def __call__(self) -> dict:
        return self.data


class Setup:
    def __init__(self, tmp: Path, spec: Path = EXAMPLE, git_follow: bool = False, rate: float = 1000):
        self.state_dir = tmp / "state"
        self.state = open_state(self.state_dir)
        self.tokens = {}
        for name, role in (("ann", "viewer"), ("olu", "operator")):
            self.tokens[name] = new_token()
            self.state.tokens.add(name, role, digest(self.tokens[name]))
        self.fake = FakeHost()
        self.hub = Hub()
        self.observer = Observer(self.fake, self.hub, interval=0.05)
        self.observer.refresh()
        self.requests = []
        self.restarted = []
        self.outcome = Reconciled("no-op")
        host = HostAccess(root=tmp / "root", state_dir=self.state_dir, docker_host=None)
        self.agent = Agent(SpecFile(spec, lambda: SMALL_VPS), host, self.observer, self.hub, git_follow=git_follow,
                           by_address=Limiter(rate, rate), by_token=Limiter(rate, rate), refusal_rows=Limiter(rate, rate),
                           reconcile=self._reconcile, restarter=self.restarted.append)  # fmt: skip
        self.client = TestClient(create_app(self.agent))

    def _reconcile(self, request) -> Reconciled:
        self.requests.append(request)
        request.report("step: one line")
        return self.outcome

    def auth(self, name: str | None) -> dict:
        return {"Authorization": f"Bearer {self.tokens[name]}"} if name else {}


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


def test_a_token_is_kept_only_as_its_digest(setup):
    with setup.state.db.connect() as db:
        stored = [r[0] for r in db.execute("SELECT digest FROM api_tokens")]
    assert setup.tokens["ann"] not in stored and digest(setup.tokens["ann"]) in stored


WRITES = ("/api/v1/apply", "/api/v1/rollback/1", "/api/v1/nodes/conduit-1/restart")


def test_each_write_needs_an_operator_and_every_one_is_audited(setup):
    gen = setup.state.history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "edge-1")
    setup.state.history.finish(gen, "succeeded")
    for path in WRITES:
        assert setup.client.post(path).status_code == 401
        wrong = setup.client.post(path, headers={"Authorization": "Bearer cdt_not-a-token"})
        assert wrong.status_code == 401
        assert setup.client.post(path, headers=setup.auth("ann")).status_code == 403
        answer = setup.client.post(path, headers=setup.auth("olu"))
        assert answer.status_code == 200, answer.text
    assert len(setup.requests) == 2 and setup.restarted == ["conduit-1"]
    assert setup.requests[0].spec_text == EXAMPLE.read_text() and setup.requests[0].wait is False
    rows = setup.state.audit.recent(100)
    refused = [(r["user"], r["detail"]["path"], r["detail"]["status"]) for r in rows if r["event"] == "api.refused"]
    for path in WRITES:
        assert refused.count(("anonymous", path, 401)) == 2 and ("ann", path, 403) in refused
    done = {(r["user"], r["event"]) for r in rows if r["event"] in ("api.apply", "api.rollback", "api.restart")}
    assert done == {("olu", "api.apply"), ("olu", "api.rollback"), ("olu", "api.restart")}
    text = json.dumps(rows)
    assert all(token not in text for token in setup.tokens.values())


def test_the_new_writes_and_a_nodes_log_need_an_operator_and_each_refusal_is_audited(setup):
    asks = [("POST", "/api/v1/nodes/conduit-1/stop"), ("POST", "/api/v1/nodes/conduit-1/start"), ("POST", "/api/v1/update"),
            ("POST", "/api/v1/nodes/conduit-1/claim"), ("GET", "/api/v1/nodes/conduit-1/logs")]  # fmt: skip
    for method, path in asks:
        answer = setup.client.request(method, path, headers=setup.auth("ann"))
        assert answer.status_code == 403 and answer.json()["detail"] == "token ann is a viewer; this needs an operator", path
    refused = [(r["user"], r["detail"]["path"]) for r in setup.state.audit.recent(100) if r["event"] == "api.refused"]
    assert sorted(refused) == sorted(("ann", path) for _, path in asks)
    assert setup.requests == [] and not (setup.state_dir / "holds.json").exists()


def test_an_update_refused_by_the_spec_is_audited_once_with_why(setup, tmp_path):
    spec = tmp_path / "off.yaml"
    spec.write_text(EXAMPLE.read_text().replace("policy: report", 'policy: "off"'))
    off = Setup(tmp_path / "off", spec)
    assert off.agent.spec.current().spec.updates.policy == "off"
    answer = off.client.post("/api/v1/update", headers=off.auth("olu"))
    assert answer.status_code == 409 and answer.json()["detail"].startswith("spec.updates.policy is off")
    (row,) = [r for r in off.state.audit.recent(10) if r["event"] == "api.update"]
    assert row["user"] == "olu" and row["detail"]["status"] == 409 and off.requests == []
    taken = setup.client.post("/api/v1/update", headers=setup.auth("olu"))  # the example follows its registry: one reconcile
    assert taken.status_code == 200 and len(setup.requests) == 1
    assert [r["detail"]["status"] for r in setup.state.audit.recent(10) if r["event"] == "api.update"] == ["no-op"]


def test_a_query_out_of_range_is_refused_with_its_detail_while_pydantic_v1_stays_hidden(setup, monkeypatch):
    """The agent hides pydantic.v1 (routes()); FastAPI's checks for v1 models then find none, and its
    answer to a bad query still says what is wrong."""
    monkeypatch.setitem(sys.modules, "pydantic.v1", None)
    answer = setup.client.get("/api/v1/audit?limit=-5", headers=setup.auth("olu"))
    assert answer.status_code == 422
    assert [(e["loc"], e["type"]) for e in answer.json()["detail"]] == [(["query", "limit"], "greater_than_equal")]
    assert sys.modules["pydantic.v1"] is None


def test_reads_need_a_token_of_either_role(setup):
    assert setup.client.get("/api/v1/nodes").status_code == 401
    for who in ("ann", "olu"):
        nodes = setup.client.get("/api/v1/nodes", headers=setup.auth(who)).json()
        assert [n["name"] for n in nodes] == ["conduit-1", "conduit-2"] and nodes[0]["status"] == "announced"
    summary = setup.client.get("/api/v1/summary", headers=setup.auth("ann")).json()
    assert summary["totals"]["connected"] == 2 and summary["cluster"] == "edge-1"
    assert setup.client.get("/api/v1/countries", headers=setup.auth("ann")).json()[0]["region"] == "IR"
    assert "/api/v1/apply" in setup.client.get("/openapi.json").json()["paths"]


def test_a_write_that_fails_is_audited_with_why(setup):
    answer = setup.client.post("/api/v1/apply", json={"plan": {"steps": []}}, headers=setup.auth("olu"))
    assert answer.status_code == 400 and "not a saved plan" in answer.json()["detail"]
    assert setup.client.post("/api/v1/nodes/stranger/restart", headers=setup.auth("olu")).status_code == 404
    rows = [(r["event"], r["detail"].get("status")) for r in setup.state.audit.recent(10)]
    assert ("api.apply", 400) in rows and ("api.restart", 404) in rows


def test_rates_per_token_and_per_address(tmp_path):
    s = Setup(tmp_path, rate=1000)
    s.agent.by_token = Limiter(0.001, 3)
    codes = [s.client.get("/api/v1/nodes", headers=s.auth("ann")).status_code for _ in range(6)]
    assert codes == [200, 200, 200, 429, 429, 429]
    assert s.client.get("/api/v1/nodes", headers=s.auth("olu")).status_code == 200  # another token has its own bucket
    s.agent.by_address = Limiter(0.001, 1)
    codes = [s.client.get("/api/v1/nodes", headers=s.auth("olu")).status_code for _ in range(3)]
    assert codes == [200, 429, 429]
    refusals = [r for r in s.state.audit.recent(100) if r["detail"].get("status") == 429]
    assert len(refusals) == 2  # one row for each run of refusals, not one per request


def test_a_revoked_token_is_refused(tmp_path):
    s = Setup(tmp_path)
    assert s.state.tokens.revoke("ann")
    assert s.client.get("/api/v1/nodes", headers=s.auth("ann")).status_code == 401


def test_metrics_are_the_figures_of_status_prometheus(setup):
    answer = setup.client.get("/metrics", headers=setup.auth("ann"))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert answer.text == render_prometheus(setup.observer.latest())


def test_an_event_follows_a_change_in_the_observation(setup):
    def change():
        setup.fake.data = observation(connected=7, state="exited")
        setup.observer.refresh()

    got = {"text": ""}

    def read():  # ends after the one event (limit=1); a change that is never pushed leaves it reading keep-alives
        with setup.client.stream("GET", "/api/v1/events?limit=1", headers=setup.auth("ann")) as answer:
            got["status"], got["type"] = answer.status_code, answer.headers["content-type"]
            for chunk in answer.iter_text():
                if not got["text"] and "event: hello" in chunk:  # the stream is open: a change now is the next event
                    threading.Thread(target=change).start()
                got["text"] += chunk

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), f"no event followed the change: {got}"
    assert got["status"] == 200 and got["type"].startswith("text/event-stream")
    text = got["text"]
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[0].startswith("id: ") and "event: hello" in events[0]
    assert "event: nodes" in events[1]
    changed = json.loads(events[1].split("data: ", 1)[1])["changed"]
    assert {(c["name"], c["state"], c["connected"]) for c in changed} == {("conduit-1", "announced", 7), ("conduit-2", "exited", 1)}


def test_apply_steps_go_out_as_events(setup):
    seen = setup.hub.last
    setup.client.post("/api/v1/apply", headers=setup.auth("olu"))
    kinds = [(kind, data.get("line")) for _, kind, data in setup.hub.since(seen)]
    assert kinds == [("apply.start", None), ("apply", "step: one line"), ("apply.done", None)]


def test_serve_refuses_a_public_address_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["--state-dir", str(tmp_path), "serve", str(EXAMPLE), "--listen", "0.0.0.0"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--tls-cert" in result.stderr and "--behind-proxy" in result.stderr


def test_print_unit_runs_the_same_serve(tmp_path):
    result = CliRunner().invoke(main, ["--state-dir", str(tmp_path), "serve", str(EXAMPLE), "--port", "9000", "--print-unit"])
    assert result.exit_code == 0
    assert f"serve {EXAMPLE} --listen 127.0.0.1 --port 9000" in result.stdout and "WantedBy=multi-user.target" in result.stdout
    assert "--watch" not in result.stdout
    watching = CliRunner().invoke(main, ["--state-dir", str(tmp_path), "serve", str(EXAMPLE), "--watch", "--watch-interval", "60", "--print-unit"])
    assert watching.exit_code == 0 and " --watch --watch-interval 60.0" in watching.stdout
    refused = CliRunner().invoke(main, ["--state-dir", str(tmp_path), "serve", str(EXAMPLE), "--watch", "--watch-interval", "0"])
    assert refused.exit_code == 2 and "--watch-interval" in refused.stderr


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True, capture_output=True)


def test_a_host_that_follows_git_refuses_to_diverge(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    spec = repo / "cluster.yaml"
    committed = EXAMPLE.read_text()
    spec.write_text(committed)
    _git(repo, "init", "-q")
    _git(repo, "add", "cluster.yaml")
    _git(repo, "commit", "-qm", "spec")
    spec.write_text(committed.replace("edge-1", "edge-1  # edited by hand"))
    s = Setup(tmp_path, spec=spec, git_follow=True)
    gen = s.state.history.begin(committed.replace("edge-1", "edge-2"), "h", str(spec), (None, None), "edge-1")
    s.state.history.finish(gen, "succeeded")

    synced = s.client.post("/api/v1/apply", headers=s.auth("olu"))
    assert synced.status_code == 200 and s.requests[-1].spec_text == committed  # a sync applies what git holds
    back = s.client.post(f"/api/v1/rollback/{gen}", headers=s.auth("olu"))
    assert back.status_code == 409 and "follows git" in back.json()["detail"]
    assert len(s.requests) == 1
    assert any(r["event"] == "api.rollback" and r["detail"]["status"] == 409 for r in s.state.audit.recent(10))

    # The committed spec again: a watch of the file would undo it only while the file differs from the commit.
    same = s.state.history.begin(committed, "h", str(spec), (None, None), "edge-1")
    s.state.history.finish(same, "succeeded")
    edited = s.client.post(f"/api/v1/rollback/{same}", headers=s.auth("olu"))
    assert edited.status_code == 200 and edited.json()["warnings"][0].startswith(f"the spec file {spec} (and its watch, if one runs) will undo")
    spec.write_text(committed)
    clean = s.client.post(f"/api/v1/rollback/{same}", headers=s.auth("olu"))
    assert clean.status_code == 200 and clean.json()["warnings"] == []


def test_a_rollback_on_a_host_that_follows_a_repository_says_its_next_heal_undoes_it(setup):
    setup.agent.repository = "https://git.example.org/fleet.git"
    gen = setup.state.history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "edge-1")
    setup.state.history.finish(gen, "succeeded")
    back = setup.client.post(f"/api/v1/rollback/{gen}", headers=setup.auth("olu"))
    assert back.status_code == 200
    assert back.json()["warnings"] == [
        "this host follows https://git.example.org/fleet.git, whose spec its watch applies again at the next interval, undoing this "
        f"rollback; to keep it, commit generation {gen}'s spec there (`conduit history --spec {gen}` prints it)"
    ]


def test_a_huge_committed_spec_is_refused_from_gits_header_not_read(tmp_path):
    """Whoever may push writes the committed spec: 64 MiB of comment (a few KiB once git packed
    it) is refused in one line on each write request, and never held in the agent's memory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    spec = repo / "cluster.yaml"
    spec.write_text(EXAMPLE.read_text())
    _git(repo, "init", "-q")
    _git(repo, "add", "cluster.yaml")
    _git(repo, "commit", "-qm", "spec")
    with open(spec, "ab") as f:
        for _ in range(64):
            f.write(b"#" * (1 << 20))
    _git(repo, "commit", "-qam", "huge")
    s = Setup(tmp_path, spec=spec, git_follow=True)
    tracemalloc.start()
    try:
        answer = s.client.post("/api/v1/apply", headers=s.auth("olu"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 409 and answer.json()["detail"].endswith("file is larger than 1024 KiB; not a spec")
    assert peak < 16 << 20, f"{peak} bytes held at once"
    assert s.requests == []


def test_a_spec_linked_out_of_its_repository_is_not_read_for_an_operator(tmp_path):
    """An operator's token is not root: the agent reads the spec as the CLI does, and a spec in a
    work tree that is a link to a root-only file does not come back, line by line, in the refusal."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$j9T$notforanyone:19000:0:99999:7:::\n")
    (repo / "cluster.yaml").symlink_to(secret)
    s = Setup(tmp_path, spec=repo / "cluster.yaml")
    answer = s.client.post("/api/v1/apply", headers=s.auth("olu"))
    assert answer.status_code == 409, answer.text
    assert "notforanyone" not in answer.text and answer.json()["detail"].endswith("; a spec must live inside it")
    assert s.requests == []


def test_the_dashboard_is_one_page_and_its_own_script(setup):
    page = setup.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="viewport"' in page.text and '<script src="/static/app.js">' in page.text
    script = setup.client.get("/static/app.js")
    assert script.status_code == 200 and "sessionStorage" in script.text
    assert "innerHTML" not in script.text and "document.cookie" not in script.text  # values go in as text; no cookies
    assert "@media (max-width" in setup.client.get("/static/app.css").text  # laid out for a phone too


def test_serve_stops_in_one_line_when_the_state_cannot_be_written(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["--state-dir", str(blocker / "state"), "serve", str(EXAMPLE), "--port", "1"])
    assert result.exit_code == 1 and result.stderr.startswith("error: state directory") and "Traceback" not in result.output


def test_a_body_is_read_only_after_the_token_and_only_up_to_the_limit(setup):
    from conduit.serve.guard import MAX_BODY

    big = b"{" + b" " * MAX_BODY + b"}"
    taken = []

    def chunks():
        for start in range(0, len(big), 1 << 16):
            taken.append(start)
            yield big[start : start + (1 << 16)]

    assert setup.client.post("/api/v1/apply", content=big).status_code == 401
    assert setup.client.post("/api/v1/apply", content=big, headers=setup.auth("ann")).status_code == 403
    assert setup.client.post("/api/v1/apply", content=big, headers=setup.auth("olu")).status_code == 413
    streamed = setup.client.post("/api/v1/apply", content=chunks(), headers=setup.auth("olu"))
    assert streamed.status_code == 413 and "over" in streamed.json()["detail"]
    assert setup.requests == []  # nothing was applied
    statuses = [r["detail"]["status"] for r in setup.state.audit.recent(10) if r["event"] == "api.refused"]
    assert statuses == [413, 413, 403, 401]


def test_refusals_from_one_address_write_a_bounded_number_of_rows(tmp_path):
    s = Setup(tmp_path)
    s.agent.refusal_rows = Limiter(0.0001, 10)
    codes = [s.client.get("/api/v1/nodes", headers={"Authorization": f"Bearer cdt_guess{i}", "X-Forwarded-For": f"10.0.0.{i % 250}"}).status_code
             for i in range(300)]  # fmt: skip
    assert codes == [401] * 300
    rows = [r for r in s.state.audit.recent(1000) if r["event"] == "api.refused"]
    assert len(rows) == 11 and "not written for now" in rows[0]["detail"]["reason"]
    assert {r["detail"]["client"] for r in rows} == {"testclient"}  # the connection's address, never the header's


def _saved_plan(spec_text: str, file: str) -> dict:
    """What `conduit plan FILE --out` writes (a plan of a host, sealed with its digest)."""
    from tests.helpers import offline_plan as plan_offline
    from conduit.plan.saved import dumps, plan_data, spec_fields
    from conduit.spec.load import load_text

    return json.loads(dumps(plan_data(plan_offline(load_text(spec_text, file, SMALL_VPS)), spec_fields(file, spec_text, False))))


def test_an_operator_may_apply_a_saved_plan_of_the_served_spec_and_of_no_other(setup, tmp_path):
    other = EXAMPLE.read_text().replace("edge-1", "edge-9")
    refused = setup.client.post("/api/v1/apply", json={"plan": _saved_plan(other, str(tmp_path / "other.yaml"))}, headers=setup.auth("olu"))
    assert refused.status_code == 403 and "another spec" in refused.json()["detail"]
    assert setup.requests == []
    row = setup.state.audit.recent(1)[0]
    assert (row["event"], row["user"], row["detail"]["status"]) == ("api.apply", "olu", 403)
    same = setup.client.post("/api/v1/apply", json={"plan": _saved_plan(EXAMPLE.read_text(), str(EXAMPLE))}, headers=setup.auth("olu"))
    assert same.status_code == 200 and setup.requests[0].spec_text == EXAMPLE.read_text()


def test_the_agent_rolls_back_as_the_cli_does_to_the_image_the_generation_ran(setup, monkeypatch):
    from conduit.cli import apply as cli_apply
    from conduit.engine.intent import Rollback
    from conduit.state.images import NodeImage

    gen = setup.state.history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "edge-1")
    setup.state.history.finish(gen, "succeeded")
    pinned = "sha256:" + "ab" * 32
    setup.state.images.record_nodes(gen, {"conduit-1": NodeImage("ghcr.io/psiphon-inc/conduit/cli:latest", pinned, None, "2.0.0")})
    back = setup.client.post(f"/api/v1/rollback/{gen}", headers=setup.auth("olu"))
    assert back.status_code == 200
    by_agent = setup.requests[-1]
    # Both say what will undo it: the spec file, at the next apply or the watch's next reconcile.
    undone = f"the spec file {EXAMPLE} (and its watch, if one runs) will undo this rollback at the next apply"
    (warning,) = back.json()["warnings"]
    assert warning.startswith(undone) and f"`conduit history --spec {gen}`" in warning

    by_cli = []
    monkeypatch.setattr(cli_apply, "reconciled", lambda request, asking: by_cli.append(request) or Reconciled("no-op"))
    result = CliRunner().invoke(main, ["--state-dir", str(setup.state_dir), "rollback", str(gen), "--auto-approve"])
    assert result.exit_code == 0, result.output
    assert f"warning: {warning}" in result.output
    assert by_agent.intent == by_cli[0].intent == Rollback(gen, pinned)
    assert (by_agent.spec_text, by_agent.spec_path) == (by_cli[0].spec_text, by_cli[0].spec_path)


def test_the_agent_rolls_back_only_to_a_generation_that_succeeded_as_the_cli_does(setup):
    """A rolled-back or destroyed generation's spec never ran whole on the host (a destroy records only a comment)."""
    for outcome, text in (("rolled_back", EXAMPLE.read_text()), ("destroyed", "# destroy of edge-1\n")):
        gen = setup.state.history.begin(text, "h", str(EXAMPLE), (None, None), "edge-1")
        setup.state.history.finish(gen, outcome)
        said = f"generation {gen} {outcome.replace('_', ' ')}: roll back to one that succeeded (`conduit history` lists them)"
        back = setup.client.post(f"/api/v1/rollback/{gen}", headers=setup.auth("olu"))
        assert (back.status_code, back.json()["detail"]) == (409, said)
        by_cli = CliRunner().invoke(main, ["--state-dir", str(setup.state_dir), "rollback", str(gen), "--auto-approve"])
        assert (by_cli.exit_code, by_cli.output) == (2, f"error: {said}\n")
    assert setup.requests == []


def test_a_rollback_without_n_goes_where_conduit_rollback_goes(setup, monkeypatch):
    """The bot and POST /rollback leave the choice to the agent, which makes it as the CLI does."""
    from conduit.bot.hosts import LocalHost, Unavailable
    from conduit.cli import apply as cli_apply

    def generation(outcome: str) -> int:
        gen = setup.state.history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "edge-1")
        setup.state.history.finish(gen, outcome)
        return gen

    first = generation("succeeded")
    alone = setup.client.post("/api/v1/rollback", headers=setup.auth("olu"))
    assert (alone.status_code, alone.json()["detail"]) == (404, "no good generation before the current one to roll back to; `conduit history` lists them")
    with pytest.raises(Unavailable, match="no good generation before the current one"):
        LocalHost("edge-1", setup.agent).rollback("olu")
    generation("succeeded"), generation("rolled_back")
    assert setup.client.post("/api/v1/rollback", headers=setup.auth("olu")).status_code == 200
    said = LocalHost("edge-1", setup.agent).rollback("olu").splitlines()
    assert said[0] == "rollback: no-op" and said[1].startswith(f"warning: the spec file {EXAMPLE} (and its watch, if one runs) will undo")
    by_cli = []
    monkeypatch.setattr(cli_apply, "reconciled", lambda request, asking: by_cli.append(request) or Reconciled("no-op"))
    assert CliRunner().invoke(main, ["--state-dir", str(setup.state_dir), "rollback", "--auto-approve"]).exit_code == 0
    assert [r.intent.generation for r in setup.requests[-2:]] == [first, first] and by_cli[0].intent.generation == first


def test_a_rollback_without_n_is_refused_while_the_agent_cannot_tell_its_cluster(tmp_path):
    """Another cluster's generations may share the state directory: with no spec loaded, the agent cannot choose."""
    broken = tmp_path / "cluster.yaml"
    broken.write_text("apiVersion: nope\n")
    s = Setup(tmp_path, spec=broken)
    gen = s.state.history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "other")
    s.state.history.finish(gen, "succeeded")
    back = s.client.post("/api/v1/rollback", headers=s.auth("olu"))
    assert (back.status_code, back.json()["detail"]) == (409, f"the agent has no spec loaded to tell its cluster by: fix {broken} "
                                                              "(`conduit validate` names what is wrong), then roll back")  # fmt: skip
    assert s.requests == []


def test_the_summary_carries_the_months_budget_to_the_dashboard(setup):
    assert setup.client.get("/api/v1/summary", headers=setup.auth("ann")).json()["budget"] is None  # no budget in the spec
    budget = {"used_gb": 101.5, "monthly_gb": 100, "percent": 101.5, "resets": "2026-04-05", "action": "throttle",
              "counting": True, "stopped": ["conduit-1", "conduit-2"]}  # fmt: skip
    setup.fake.data = observation() | {"budget": budget}
    setup.observer.refresh()
    summary = setup.client.get("/api/v1/summary", headers=setup.auth("ann")).json()
    assert summary["budget"] == budget | {"monthly_gb": 100.0}
    schema = setup.client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["Budget"]["required"]) == set(budget)


NOT_PULLED_TAKEN = {"image": "ghcr.io/psiphon-inc/conduit/cli:latest", "old_id": "sha256:aa11", "old_digest": "sha256:41bdc1cb5822aaaa",
                    "old_version": "2.0.0", "new_id": "ghcr.io/psiphon-inc/conduit/cli@sha256:9f3e77c0d4a1bbbb",
                    "new_digest": "sha256:9f3e77c0d4a1bbbb", "new_version": None, "pulled": False, "taken": True, "why_not": None}  # fmt: skip
PULLED_NOT_TAKEN = NOT_PULLED_TAKEN | {"new_id": "sha256:bb22", "new_version": "official 2.0.1", "pulled": True,
                                      "taken": False, "why_not": "updates.policy is manual"}  # fmt: skip


@pytest.mark.parametrize("update", [NOT_PULLED_TAKEN, PULLED_NOT_TAKEN], ids=["not-pulled-taken", "pulled-not-taken"])
def test_the_plans_image_update_is_said_in_the_words_conduit_plan_prints(setup, monkeypatch, update):
    """The dashboard shows the API's update_text as it is: the lines `conduit plan` prints for the
    same update, the new image's version in their words (known once pulled, when it is not)."""
    import conduit.serve.agent as agent_module
    from conduit.engine import planning
    from conduit.engine.settle import NOT_PULLED
    from tests.helpers import offline_plan

    unchanged = planning.plan

    def with_update(*args, **kwargs):
        plan = unchanged(*args, **kwargs)
        plan.update = dict(update)
        return plan

    monkeypatch.setattr(planning, "plan", with_update)  # the CLI's offline plan and the agent's below
    monkeypatch.setattr(agent_module, "plan_on_host", lambda _intent, doc, _host: (offline_plan(doc), None))
    view = setup.client.get("/api/v1/plan", headers=setup.auth("ann")).json()
    assert view["update"] == update  # the plan's own update, as it is

    printed = CliRunner().invoke(main, ["plan", "--offline", str(EXAMPLE)])
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Image update:"))
    assert view["update_text"].splitlines() == lines[first : first + 2]
    said = "9f3e77c0d4a1 (official 2.0.1)" if update["pulled"] else f"9f3e77c0d4a1 ({NOT_PULLED})"
    assert said in view["update_text"]
    assert ("  taken: " if update["taken"] else "  not taken: updates.policy is manual") in view["update_text"]


def test_a_plan_with_no_image_update_says_none(setup, monkeypatch):
    import conduit.serve.agent as agent_module
    from tests.helpers import offline_plan

    monkeypatch.setattr(agent_module, "plan_on_host", lambda _intent, doc, _host: (offline_plan(doc), None))
    view = setup.client.get("/api/v1/plan", headers=setup.auth("ann")).json()
    assert (view["update"], view["update_text"]) == (None, "")

def test_the_agent_reads_its_spec_as_named_and_sees_a_link_repointed_out_of_its_repository(tmp_path):
    """Resolved once at start, the agent would go on reading the file a link first led to: it would
    miss a commit that repoints the link, and never say the spec left its repository."""
    from conduit.serve.run import build

    repo, secret = tmp_path / "fleet", tmp_path / "shadow"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "hosts").mkdir()
    (repo / "hosts" / "a.yaml").write_text(EXAMPLE.read_text())
    (repo / "cluster.yaml").symlink_to("hosts/a.yaml")
    secret.write_text("root:$y$j9T$notforanyone:19000:0:99999:7:::\n")
    host = HostAccess(root=tmp_path / "root", state_dir=tmp_path / "state", docker_host=f"unix://{tmp_path}/no-docker.sock")
    agent = build(host, repo / "cluster.yaml", lambda: SMALL_VPS, 60, False, (Limiter(10, 10), Limiter(10, 10)))
    served = agent.spec.current()
    (repo / "cluster.yaml").unlink()
    (repo / "cluster.yaml").symlink_to(secret)
    assert agent.spec.current() is served  # a broken edit keeps the last good spec
    assert agent.spec.error == f"{repo / 'cluster.yaml'}:1:1: is a link to {secret}, outside {repo}; a spec must live inside it"


def test_the_generations_say_which_one_the_host_runs(tmp_path):
    """The dashboard marks what /generations says runs: the last that succeeded, none after a destroy."""
    setup = Setup(tmp_path)
    history = setup.state.history
    for outcome in ("succeeded", "rolled_back"):
        history.finish(history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "edge-1"), outcome)

    def runs() -> list[bool]:
        answer = setup.client.get("/api/v1/generations", headers=setup.auth("ann"))
        assert answer.status_code == 200, answer.text
        return [g["running"] for g in answer.json()]

    assert runs() == [True, False]
    history.finish(history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "edge-1"), "destroyed")
    assert runs() == [False, False, False]
