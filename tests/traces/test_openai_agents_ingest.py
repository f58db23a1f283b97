"""The OpenAI Agents SDK receiver, end to end over HTTP against the live test server.

The payloads are what ``openai-agents`` 0.24.0's ``BackendSpanExporter`` posts, built the
way its ``Trace.export()``/``SpanImpl.export()``/``*SpanData.export()`` build them
(agents/tracing/traces.py, spans.py, span_data.py), with its headers (processors.py):
``Authorization: Bearer <key>``, ``Content-Type: application/json``, ``OpenAI-Beta:
traces=v1``. ``test_openai_agents_exporter`` runs the exporter itself.
"""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import iofold.pipeline
from traces.models import Trace
from workspaces.models import Membership
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/api/v1/openai/traces/ingest"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()  # as the SDK's time_iso()


def trace_item(trace_id, *, group_id="thread-42", name="Support agent"):
    return {
        "object": "trace",
        "id": trace_id,
        "workflow_name": name,
        "group_id": group_id,
        "metadata": {"customer": "acme"},
    }


def span_item(trace_id, span_id, parent_id, data, *, start, end, error=None):
    return {
        "object": "trace.span",
        "id": span_id,
        "trace_id": trace_id,
        "parent_id": parent_id,
        "started_at": at(start),
        "ended_at": at(end),
        "span_data": data,
        "error": error,
    }


def spans(trace_id):
    """One agent run: agent, guardrail, generation, function, response, handoff, custom."""
    agent = "span_" + uuid.uuid4().hex[:24]
    return [
        span_item(
            trace_id,
            agent,
            None,
            {
                "type": "agent",
                "name": "Triage",
                "handoffs": ["Billing"],
                "tools": ["lookup_order"],
                "output_type": "str",
            },
            start=0,
            end=3,
        ),
        span_item(
            trace_id,
            "span_guard00000000000000000",
            agent,
            {"type": "guardrail", "name": "no_pii", "triggered": False},
            start=0.1,
            end=0.2,
        ),
        span_item(
            trace_id,
            "span_gen000000000000000000",
            agent,
            {
                "type": "generation",
                "input": [{"role": "user", "content": "Where is order 7?"}],
                "output": [{"role": "assistant", "content": "It ships tomorrow."}],
                "model": "gpt-4o",
                "model_config": {"temperature": 0.2},
                "usage": {"input_tokens": 30, "output_tokens": 8},
            },
            start=0.5,
            end=1.5,
        ),
        span_item(
            trace_id,
            "span_fn0000000000000000000",
            agent,
            {
                "type": "function",
                "name": "lookup_order",
                "input": '{"order": 7}',
                "output": "{'status': 'packed'}",
                "mcp_data": None,
            },
            start=1.6,
            end=1.7,
            error={"message": "Error running tool", "data": {"error": "timeout"}},
        ),
        span_item(
            trace_id,
            "span_resp000000000000000000",
            agent,
            {"type": "response", "response_id": "resp_1", "usage": None},
            start=1.8,
            end=2.5,
        ),
        span_item(
            trace_id,
            "span_hand000000000000000000",
            agent,
            {"type": "handoff", "from_agent": "Triage", "to_agent": "Billing"},
            start=2.6,
            end=2.6,
        ),
        span_item(
            trace_id,
            "span_cust000000000000000000",
            agent,
            {"type": "custom", "name": "task", "data": {"sdk_span_type": "task"}},
            start=2.7,
            end=2.9,
        ),
    ]


@pytest.fixture
def token(workspace, owner):
    _, raw = issue_token(
        workspace=workspace, name="agents", created_by=owner, role=Membership.Role.MEMBER
    )
    return raw


@pytest.fixture
def evaluated(monkeypatch):
    calls = []
    monkeypatch.setattr(
        iofold.pipeline, "evaluate_new_traces", lambda ws, ids: calls.append((ws, list(ids)))
    )
    return calls


def export(live_server, key, data):
    """Post as the BackendSpanExporter does."""
    return httpx.post(
        live_server.url + PATH,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "OpenAI-Beta": "traces=v1",
        },
        json={"data": data},
        timeout=30,
    )


def test_a_trace_split_over_posts_is_merged_once_and_evaluated(
    live_server, workspace, token, evaluated
):
    trace_id = "trace_" + uuid.uuid4().hex
    items = spans(trace_id)

    # The exporter sends the trace when it starts, then its spans in batches as they end.
    first = export(live_server, token, [trace_item(trace_id)])
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 1
    second = export(live_server, token, items[1:4])
    third = export(live_server, token, [*items[4:], items[0]])
    assert (second.status_code, third.status_code) == (200, 200)
    assert (second.json()["updated"], third.json()["updated"]) == (1, 1)

    row = Trace.objects.get(workspace=workspace, external_id=trace_id)
    assert row.source == Trace.Source.OPENAI
    data = row.data
    assert data["name"] == "Support agent"
    assert data["session_id"] == "thread-42"
    assert data["metadata"]["group_id"] == "thread-42"
    assert data["metadata"]["customer"] == "acme"
    assert data["timestamp"] == "2026-11-30T12:00:00.000Z"
    assert data["latency_ms"] == 3000.0
    by_kind = {s["metadata"]["span_type"]: s for s in data["steps"]}
    assert {k: v["type"] for k, v in by_kind.items()} == {
        "agent": "agent",
        "guardrail": "event",
        "generation": "llm",
        "function": "tool",
        "response": "llm",
        "handoff": "event",
        "custom": "span",
    }
    agent_id = items[0]["id"]
    # Spans that arrived before their parent are linked once it arrives.
    assert all(s["parent_id"] == agent_id for k, s in by_kind.items() if k != "agent")
    assert by_kind["generation"]["usage"] == {"input": 30, "output": 8}
    assert by_kind["generation"]["model"] == "gpt-4o"
    assert by_kind["function"]["input"] == {"order": 7}
    assert by_kind["function"]["error"] == "Error running tool: {'error': 'timeout'}"
    assert by_kind["handoff"]["name"] == "handoff to Billing"
    assert data["input"] == [{"role": "user", "content": "Where is order 7?"}]
    assert data["output"] == [{"role": "assistant", "content": "It ships tomorrow."}]
    assert evaluated and all(ids == [row.pk] for _, ids in evaluated)

    # The exporter retries: a resent batch changes nothing and is not evaluated again.
    calls = len(evaluated)
    again = export(live_server, token, [trace_item(trace_id), *items])
    assert again.json()["unchanged"] == 1 and again.json()["updated"] == 0
    assert Trace.objects.filter(external_id=trace_id).count() == 1
    assert len(evaluated) == calls


def test_bad_bodies_and_keys_get_4xx(live_server, workspace, token, evaluated):
    url = live_server.url + PATH
    bearer = {"Authorization": f"Bearer {token}"}
    assert export(live_server, "sk-openai-key", []).status_code == 401
    assert export(live_server, "iof_" + "x" * 40, []).status_code == 401
    assert httpx.post(url, json={"data": []}).status_code in (401, 403)
    for body in (b"not json", b"[]", b'{"data": 3}', b'{"nodata": []}', b"\xff\xfe"):
        response = httpx.post(
            url, content=body, headers={**bearer, "Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (body, response.status_code)
    bad_items = [
        7,
        {"object": "trace"},
        {"object": "trace.span", "id": "s", "trace_id": "t", "span_data": "x"},
        {"object": "trace.span", "id": "s", "trace_id": "t", "span_data": {}, "started_at": "no"},
        {"object": "thing", "id": "x"},
        {
            "object": "trace.span",
            "id": "s",
            "trace_id": "t",
            "span_data": {},
            "started_at": "9999-12-31T23:59:59-14:00",
        },
    ]
    response = export(live_server, token, bad_items)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["index"] for e in errors] == [0, 1, 2, 3, 4, 5]
    assert "started_at is outside the years 1 to 9999 in UTC" in errors[5]["error"]
    mixed = export(live_server, token, [*bad_items[:1], trace_item("trace_ok")])
    assert mixed.status_code == 200 and mixed.json()["created"] == 1
    too_many = export(live_server, token, [trace_item(f"trace_{i}") for i in range(1001)])
    assert too_many.status_code == 413
    assert Trace.objects.filter(workspace=workspace).count() == 1


def test_a_viewer_token_cannot_post(live_server, workspace, viewer, evaluated):
    _, raw = issue_token(
        workspace=workspace, name="ro", created_by=viewer, role=Membership.Role.VIEWER
    )
    assert export(live_server, raw, [trace_item("trace_x")]).status_code == 403
