"""The agent's OpenAPI document, exercised by schemathesis in-process against the ASGI app.

Writes run against the same fakes as tests/unit/test_serve.py (a recorded reconcile and a
recorded restart) and plans are made offline, so nothing here reaches a real host.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis not installed (./install.sh --test)")
from hypothesis import HealthCheck, settings  # noqa: E402

import conduit.serve.agent as agent_module  # noqa: E402
from tests.helpers import offline_plan as plan_offline  # noqa: E402
from tests.helpers import EXAMPLE  # noqa: E402
from tests.unit.test_serve import Setup  # noqa: E402

# The event stream runs until its client leaves; tests/unit/test_serve.py covers it.
STREAMING = "/api/v1/events"
BOUNDED = settings(max_examples=8, deadline=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))  # fmt: skip


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_module, "plan_on_host", lambda _intent, doc, _host: (plan_offline(doc), None))
    s = Setup(tmp_path, rate=1e9)
    s.agent.check_planner = lambda _intent, doc, _host: (plan_offline(doc), None)
    s.agent.key_reader = lambda _volume, _node: None  # no key yet: refused, 409
    gen = s.state.history.begin(EXAMPLE.read_text(), "h", str(EXAMPLE), (None, None), "edge-1")
    s.state.history.finish(gen, "succeeded")
    return s


def _schema(served):
    loaded = schemathesis.openapi.from_asgi("/openapi.json", served.client.app)
    loaded.config.phases.coverage.enabled = False  # its unexpected-method cases are not operations of the document
    return loaded


@pytest.fixture
def api(served):
    return _schema(served)


schema = schemathesis.pytest.from_fixture("api").exclude(path=STREAMING)
write_schema = schema.include(method="POST")


@schema.parametrize()
@BOUNDED
def test_no_operation_answers_5xx_to_an_operator(case, served):
    answer = case.call(headers=served.auth("olu"))
    assert answer.status_code < 500, f"{case.method} {case.formatted_path}: {answer.status_code} {answer.text}"


@write_schema.parametrize()
@BOUNDED
def test_every_write_is_refused_without_an_operator_and_audited(case, served):
    for who, status in ((None, 401), ("ann", 403)):
        headers = dict(case.headers or {})
        headers.pop("Authorization", None)
        headers.update(served.auth(who))
        answer = case.call(headers=headers)
        assert answer.status_code == status, f"{case.method} {case.formatted_path} as {who}: {answer.status_code}"
        path = unquote(urlsplit(answer.request.url).path)
        newest = served.state.audit.recent(1)[0]
        assert newest["event"] == "api.refused" and newest["detail"]["status"] == status
        assert newest["user"] == (who or "anonymous") and newest["detail"]["path"] == path


headers_schema = schemathesis.pytest.from_fixture("api")
events_schema = headers_schema.include(path=STREAMING)


@headers_schema.exclude(path=STREAMING).parametrize()
@BOUNDED
def test_no_operation_answers_5xx_to_the_headers_a_stranger_sends(case, served):
    """Authorization, X-Forwarded-For and the rest as generated: refused or answered, never a 5xx."""
    answer = case.call()
    assert answer.status_code < 500, f"{case.method} {case.formatted_path} {case.headers}: {answer.status_code} {answer.text}"
    assert answer.status_code != 200 or served.auth("olu")["Authorization"] == (case.headers or {}).get("authorization")


@events_schema.parametrize()
@settings(BOUNDED, max_examples=25)
def test_the_event_stream_answers_any_last_event_id_with_a_4xx_or_its_events(case, served):
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"} | served.auth("ann")
    case.query = {**(case.query or {}), "limit": 0}  # the stream ends after its first event
    answer = case.call(headers=headers)
    assert answer.status_code in (200, 400, 422), f"{case.headers}: {answer.status_code} {answer.text}"
    sent = headers.get("last-event-id")
    if answer.status_code == 200 and sent is not None:
        assert sent.strip().isascii() and sent.strip().isdigit()
