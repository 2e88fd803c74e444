"""reconcile's stops before any change: problems, nothing to do, not confirmed (the door holds the
plan made under the lock and decides; nothing calls back into it). The rest runs against a host in
tests/integration (test_apply, test_watch, test_adopt_v1, test_destroy)."""

from __future__ import annotations

from types import SimpleNamespace

from conduit.engine.reconcile import Request, reconcile, reconciling
from conduit.engine.planning import Observed
from conduit.plan.planner import Plan, Step
from conduit.state.stores import open_state


def _request(tmp_path, plan: Plan, **kw) -> Request:
    host = SimpleNamespace(state_dir=tmp_path, root=tmp_path)
    doc = SimpleNamespace(metadata=SimpleNamespace(name="c"))
    return Request(doc, "text", None, host, None, "test", lambda line: None, planner=lambda _i, doc, h: (plan, Observed()), **kw)


def _plan(problems=(), changes=True) -> Plan:
    step = Step("containers", "container", "conduit-1", "create" if changes else "no-op", "not on the host", [], {})
    return Plan("c", [step], "fp", problems=list(problems))


def test_problems_stop_before_confirmation(tmp_path):
    with reconciling(_request(tmp_path, _plan(["port 443 is in use"]))) as pending:
        outcome = pending.decide()
    assert (outcome.status, outcome.problems, outcome.exit_code) == ("blocked", ["port 443 is in use"], 1)
    assert open_state(tmp_path).history.generations() == []


def test_nothing_to_do_and_not_confirmed_record_no_generation(tmp_path):
    assert reconcile(_request(tmp_path, _plan(changes=False))).status == "no-op"
    with reconciling(_request(tmp_path, _plan())) as pending:
        assert pending.decide() is None  # changes and no problems: the door asks
        declined = pending.declined()
    assert declined.status == "declined" and declined.plan.changes
    assert open_state(tmp_path).history.generations() == []


def _new_identity_plan() -> Plan:
    step = Step("containers", "container", "conduit-1", "replace", "differs from the spec", [], {}, batch=1, new_identity=True)
    return Plan("c", [step], "fp")


def test_a_new_identity_is_refused_without_the_hosts_consent(tmp_path):
    with reconciling(_request(tmp_path, _new_identity_plan())) as pending:
        outcome = pending.decide()
    assert outcome.status == "blocked"
    (problem,) = outcome.problems
    assert problem.startswith("NEW IDENTITY: conduit-1 would start on another volume") and "--allow-new-identity" in problem
    assert open_state(tmp_path).history.generations() == []


def test_with_consent_it_goes_on_to_confirmation(tmp_path):
    with reconciling(_request(tmp_path, _new_identity_plan(), allow_new_identity=True)) as pending:
        assert pending.decide() is None
