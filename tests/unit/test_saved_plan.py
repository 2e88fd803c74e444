"""A saved plan (`conduit plan --out`) is applied exactly as it was written or not at all: its
digest seals it, `apply --plan` refuses any edit with exit code 2 and one line, and what it runs
is the saved steps, once the host is seen to be as it was."""

from __future__ import annotations

import copy
import dataclasses

import hashlib
import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import conduit.engine.planning as planning
from conduit.cli.root import main
from conduit.errors import HostMoved, NotASavedPlan
import conduit.engine.observe as observe_module
from conduit.engine.intent import ApplySaved
from conduit.engine.planning import Observed
from conduit.engine.reconcile import Request, reconciling
from conduit.plan.planner import Plan, Step, plan_from_json
from conduit.plan.saved import digest_of, dumps, parse_saved, plan_data, read_saved, sealed, spec_fields
from conduit.spec.load import load_text
from tests.helpers import EXAMPLE, SMALL_VPS, offline_plan as plan_offline

TEXT = EXAMPLE.read_text()
PLAN = plan_offline(load_text(TEXT, str(EXAMPLE), SMALL_VPS))
# What `conduit plan --out` writes for the example against an empty host (not --offline).
DATA = plan_data(PLAN, spec_fields(str(EXAMPLE), TEXT, False))
SAVED = dumps(DATA) + "\n"


def canonical_sha256(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def edited(change) -> str:
    """The saved plan with `change` made to its data, its digest left as it was."""
    data = json.loads(SAVED)
    change(data)
    return dumps(data)


def resealed(change) -> str:
    """The saved plan with `change` made to its data and the digest made again."""
    data = json.loads(SAVED)
    change(data)
    return dumps(sealed(data))


@pytest.fixture
def apply_plan(tmp_path):
    """`conduit apply --plan` of a file with this text: the result, and whether the state dir appeared."""

    def run(text: str, *extra: str):
        file = tmp_path / "plan.json"
        file.write_text(text)
        result = CliRunner().invoke(main, ["--state-dir", str(tmp_path / "state"), "apply", "--plan", str(file), *extra], catch_exceptions=False)
        return result, (tmp_path / "state").exists()

    return run


def test_the_digest_is_the_sha256_of_the_rest_in_canonical_json():
    assert DATA["digest"] == canonical_sha256({k: v for k, v in DATA.items() if k != "digest"}) == digest_of(DATA)
    assert set(DATA) == set(PLAN.to_json()) | {"spec_file", "spec_sha256", "spec_text", "offline", "digest"}


def test_a_saved_plan_reads_back_as_the_same_plan():
    saved = parse_saved(SAVED, "plan.json")
    assert saved.plan == PLAN and saved.spec_text == TEXT and saved.spec_file == str(EXAMPLE.resolve())
    assert [s.batch for s in saved.plan.steps] == [s.batch for s in PLAN.steps]
    assert plan_from_json(PLAN.to_json()) == PLAN


def test_plan_out_writes_the_digest(tmp_path):
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(main, ["plan", "--offline", "--json", "--out", str(out), str(EXAMPLE)], catch_exceptions=False)
    data = json.loads(out.read_text())
    assert data == json.loads(result.output) and data["digest"] == digest_of(data)


def _spec_count_3_to_1(data):
    data["spec_text"] = data["spec_text"].replace("count: 8", "count: 1")


def _step_edited(data):
    data["steps"][-1]["action"] = "delete"


def _digest_edited(data):
    data["digest"] = "0" * 64


def _field_missing(data):
    del data["fingerprint"]


TAMPERED = {
    "spec_text edited": (edited(_spec_count_3_to_1), "digest does not match"),
    "spec_text edited, digest made again": (resealed(_spec_count_3_to_1), "spec_sha256 does not match"),
    "a step edited": (edited(_step_edited), "digest does not match"),
    "the digest edited": (edited(_digest_edited), "digest does not match"),
    "a field missing": (edited(_field_missing), "lacks fingerprint"),
    "no digest": (edited(lambda d: d.pop("digest")), "lacks digest"),
    "another format": (resealed(lambda d: d.update(format_version=1)), "format_version 1"),
    "a target that is not one": (resealed(lambda d: d.update(target={"cluster": "c"})), "target is not a plan's target"),
    "a step of no known kind": (resealed(lambda d: d["steps"][0].update(kind="disk")), "step 1: unknown"),
    "a step with a field more": (resealed(lambda d: d["steps"][0].update(extra=1)), "step 1: not an object"),
    "a summary that is not its steps": (resealed(lambda d: d["summary"].update(add=0)), "summary does not match"),
    "steps not a list": (resealed(lambda d: d.update(steps={})), "steps is not a list"),
    "a repeated key": (SAVED.replace('"cluster": ', '"cluster": "x", "cluster": ', 1), "appears twice"),
    "not JSON": ("not json\n", "not JSON"),
    "binary junk": (b"\xff\xfe{}".decode("latin-1"), "not JSON"),
    "a JSON list": (json.dumps([DATA]), "a JSON list, not an object"),
    "empty": ("", "not JSON"),
}


@pytest.mark.parametrize("name", TAMPERED)
def test_a_tampered_saved_plan_is_refused_with_exit_2_and_one_line(apply_plan, name):
    text, why = TAMPERED[name]
    result, state_made = apply_plan(text, "--auto-approve")
    assert result.exit_code == 2, result.output + result.stderr
    assert len(result.stderr.splitlines()) == 1 and "plan.json" in result.stderr and why in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not state_made


def test_a_file_that_is_not_text_is_refused(tmp_path):
    file = tmp_path / "plan.json"
    file.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(NotASavedPlan) as refused:
        read_saved(str(file))
    assert refused.value.code == 2 and "not UTF-8" in str(refused.value)


def test_an_offline_plan_is_refused_with_exit_1(apply_plan):
    result, state_made = apply_plan(dumps(plan_data(PLAN, spec_fields(str(EXAMPLE), TEXT, True))), "--auto-approve")
    assert result.exit_code == 1 and "is not a saved plan of this host (plan --out without --offline)" in result.stderr
    assert not state_made


# Text a mutation may write: JSON's own punctuation and whitespace, digits, letters, anything else.
MUTANTS = st.one_of(st.sampled_from(list(' \t\n\r{}[]:,"\\0123456789.-+eE')), st.characters(blacklist_categories=("Cs",)))


@given(st.data())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_one_character_change_is_refused_or_changes_nothing(data):
    """A character replaced, inserted or deleted anywhere: refused (exit code 2), or the file still
    says exactly what it said (whitespace outside strings, or a number spelled another way with
    the same value), and then it is the identical plan."""
    at = data.draw(st.integers(0, len(SAVED) - 1), "at")
    how = data.draw(st.sampled_from(["replace", "insert", "delete"]), "how")
    char = "" if how == "delete" else data.draw(MUTANTS, "char")
    text = SAVED[:at] + char + SAVED[at + (how != "insert") :]
    assume(text != SAVED)
    try:
        saved = parse_saved(text, "plan.json")
    except NotASavedPlan as exc:
        assert exc.code == 2 and len(str(exc).splitlines()) == 1 and str(exc).startswith("plan.json")
        return
    assert json.loads(text) == DATA
    assert saved.plan == PLAN and saved.spec_text == TEXT


def test_whitespace_between_tokens_changes_nothing():
    spaced = SAVED.replace('\n  "cluster"', '\n\t"cluster"', 1).replace(": ", ":  ", 3)
    assert spaced != SAVED and parse_saved(spaced, "plan.json").plan == PLAN


# ------------------------------------------------------------------ the saved steps, not a new plan


def _fresh(monkeypatch, fingerprint: str, problems=(), steps=None, target=None) -> None:
    """The host as it answers now: by default, its spec plans the saved plan's steps and target again."""
    fresh = Plan("c", copy.deepcopy(PLAN.steps if steps is None else steps), fingerprint, problems=list(problems), api_calls=7,
                 target=copy.deepcopy(PLAN.target if target is None else target))
    monkeypatch.setattr(planning, "_converge", lambda doc, seen: fresh)
    monkeypatch.setattr(observe_module, "observe", lambda doc, host, intent, listed=None, kept=None: Observed())


def _saved(plan: Plan = PLAN) -> Plan:
    return planning.plan(ApplySaved(plan), None, Observed())


def test_the_saved_plan_is_what_runs_with_the_host_as_observed_now(monkeypatch):
    _fresh(monkeypatch, PLAN.fingerprint, ["port 443 is in use"])
    plan = _saved()
    assert plan.steps == PLAN.steps and plan.fingerprint == PLAN.fingerprint
    assert plan.problems == ["port 443 is in use"] and plan.api_calls == 7  # a problem found now still stops it
    assert PLAN.problems == []


def test_a_host_that_moved_refuses_the_saved_plan(monkeypatch):
    _fresh(monkeypatch, "another")
    with pytest.raises(HostMoved, match="the host changed since this plan was saved; make a new plan"):
        _saved()


def test_steps_its_own_spec_does_not_plan_are_refused(monkeypatch):
    """A file whose digest was made again after an edit is whole, but says what its spec does not."""
    first = PLAN.steps[0]
    edited = [dataclasses.replace(first, action="delete" if first.action != "delete" else "create"), *PLAN.steps[1:]]
    _fresh(monkeypatch, PLAN.fingerprint, steps=edited)
    with pytest.raises(HostMoved, match="the saved plan's steps are not what its spec plans for this host"):
        _saved()


def test_a_target_its_own_spec_does_not_plan_is_refused(monkeypatch):
    """The steps run against the plan's target (labels, the nginx text, units): a re-sealed file that
    changed it is refused like one that changed a step."""
    assert PLAN.target is not None
    other = dataclasses.replace(PLAN.target, cluster="someone-else")
    _fresh(monkeypatch, PLAN.fingerprint, target=other)
    with pytest.raises(HostMoved, match="the saved plan's target is not what its spec plans for this host"):
        _saved()


def test_reconcile_holds_the_saved_plan_for_the_door_to_confirm(monkeypatch, tmp_path):
    step = Step("containers", "container", "conduit-1", "create", "not on the host", [], {})
    _fresh(monkeypatch, "fp", steps=[step])
    saved = Plan("c", [step], "fp", target=PLAN.target)
    doc, host = SimpleNamespace(metadata=SimpleNamespace(name="c")), SimpleNamespace(state_dir=tmp_path, root=tmp_path)
    request = Request(doc, "text", None, host, None, "test", lambda line: None, intent=ApplySaved(saved))
    with reconciling(request) as pending:
        assert pending.plan.steps == [step] and pending.decide() is None
        outcome = pending.declined()
    assert outcome.status == "declined"


def test_apply_plan_asks_before_it_changes_anything(apply_plan, monkeypatch):
    """Without --auto-approve and no terminal to ask on, apply --plan refuses, as apply does."""
    _fresh(monkeypatch, PLAN.fingerprint)
    monkeypatch.setattr("conduit.cli.apply.interrupted_warnings", lambda opts: [])
    result, _ = apply_plan(SAVED)
    assert result.exit_code == 1 and "refusing to change the host without confirmation: pass --auto-approve" in result.stderr
    assert "Plan: 32 to add" in result.output


def test_a_spec_file_and_a_saved_plan_together_are_refused(apply_plan, tmp_path):
    result, state_made = apply_plan(SAVED, "--auto-approve", str(EXAMPLE))
    assert result.exit_code == 2 and "give a FILE or --plan, not both" in result.stderr and not state_made
