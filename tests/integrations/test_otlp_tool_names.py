"""A tool span received over OTLP is a step named after its tool, in every dialect.

Spans name the operation ("execute_tool get_order", traceloop's "cancel_order.tool");
the tool's own name is an attribute. Whatever reads tool names (the synthesiser's
read/write verbs and call counts, the chat view, judges' material) must see the tool's.
"""

import json

import pytest
from django.urls import reverse

from evals.datasets import LabelledExample
from evals.judging.templates import example_data
from evals.synthesis.runtime import view
from tests.integrations.otlp_helpers import Recorder, api_token, protobuf_body
from traces.models import Conversation, Trace

pytestmark = pytest.mark.django_db

# One tool span of each dialect: its name and attributes, for a tool called `tool`.
DIALECTS = {
    "semconv": lambda tool: (
        f"execute_tool {tool}",
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
    ),
    "openinference": lambda tool: (
        "FunctionTool.call",
        {"openinference.span.kind": "TOOL", "tool.name": tool},
    ),
    "traceloop": lambda tool: (
        f"{tool}.tool",
        {"traceloop.span.kind": "tool", "traceloop.entity.name": tool},
    ),
    # No attribute naming the tool: the span name, less the operation.
    "span name only": lambda tool: (
        f"execute_tool {tool}",
        {"gen_ai.operation.name": "execute_tool"},
    ),
}


def _support_turn(recorder: Recorder, dialect: str, *, conversation: str = "conv-7") -> int:
    """The user asks to cancel order 7; the model looks it up, then cancels it."""
    tracer = recorder.tracer
    with tracer.start_as_current_span("invoke_agent support") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.conversation.id", conversation)
        question = [{"role": "user", "parts": [{"type": "text", "content": "Cancel order 7"}]}]
        agent.set_attribute("gen_ai.input.messages", json.dumps(question))
        for n, tool, result in (
            (1, "get_order", {"order": 7, "status": "open"}),
            (2, "cancel_order", {"order": 7, "status": "cancelled"}),
        ):
            with tracer.start_as_current_span("chat gpt-5") as chat:
                chat.set_attribute("gen_ai.operation.name", "chat")
                call = {"type": "tool_call", "id": f"call_{n}", "name": tool}
                call["arguments"] = {"order": 7}
                chat.set_attribute(
                    "gen_ai.output.messages",
                    json.dumps([{"role": "assistant", "parts": [call]}]),
                )
            name, attrs = DIALECTS[dialect](tool)
            with tracer.start_as_current_span(name) as span:
                for key, value in attrs.items():
                    span.set_attribute(key, value)
                span.set_attribute("gen_ai.tool.call.id", f"call_{n}")
                span.set_attribute("gen_ai.tool.call.arguments", '{"order": 7}')
                span.set_attribute("gen_ai.tool.call.result", json.dumps(result))
        answer = [{"role": "assistant", "parts": [{"type": "text", "content": "Cancelled."}]}]
        agent.set_attribute("gen_ai.output.messages", json.dumps(answer))
    return agent.get_span_context().trace_id


@pytest.fixture
def token(workspace):
    return api_token(workspace)


def _send(client, token, recorder: Recorder) -> None:
    body = protobuf_body(recorder.take())
    response = client.post(
        "/v1/traces",
        body,
        content_type="application/x-protobuf",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_tool_step_is_named_after_its_tool(client, workspace, token, dialect):
    recorder = Recorder()
    trace_id = _support_turn(recorder, dialect)

    _send(client, token, recorder)

    data = Trace.objects.for_workspace(workspace).get(external_id=f"{trace_id:032x}").data
    tools = [s for s in data["steps"] if s["type"] == "tool"]
    assert [s["name"] for s in tools] == ["get_order", "cancel_order"]
    # What the tool was called with and returned is mapped as before.
    assert (tools[1]["input"], tools[1]["output"]) == (
        {"order": 7},
        {"order": 7, "status": "cancelled"},
    )
    # The synthesiser reads the tool's verb: one read, then one write, each counted once
    # (the call the model asked for and the step that ran it are the same call).
    facts = view(data)
    assert facts["tools"] == ["get_order", "cancel_order"]
    assert (facts["numbers"]["read_calls"], facts["numbers"]["write_calls"]) == (1.0, 1.0)
    assert (facts["flags"]["read_called"], facts["flags"]["write_called"]) == (
        "get_order",
        "cancel_order",
    )
    assert facts["flags"]["write_before_read"] == ""
    # A judge reading the tools' results reads them under the tools' names.
    material = example_data([LabelledExample(trace=data, label="positive")], "tool_results")
    assert "Tool cancel_order: " in material[0]["text"]
    assert "execute_tool" not in material[0]["text"]


@pytest.mark.parametrize("dialect", ["semconv", "traceloop"])
def test_a_conversation_received_over_otlp_shows_its_tools_in_the_chat(
    client, login, workspace, owner, token, dialect
):
    recorder = Recorder()
    _support_turn(recorder, dialect)
    _support_turn(recorder, dialect)
    _send(client, token, recorder)
    conversation = Conversation.objects.for_workspace(workspace).get()
    assert conversation.turn_count == 2

    url = reverse(
        "traces:conversation_detail", kwargs={"slug": workspace.slug, "pk": conversation.pk}
    )
    html = login(owner).get(url).content.decode()

    assert '<span class="type tool">cancel_order</span>' in html
    assert '<span class="type tool">get_order</span>' in html
    assert "execute_tool" not in html and "cancel_order.tool" not in html


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_trace_stored_before_reads_as_if_received_today_after_the_migration(
    client, workspace, token, dialect, monkeypatch
):
    """traces 0024: a trace stored before tool steps were named after their tool (each
    named after its span) is rewritten as the receiver writes it now, columns included."""
    import copy
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    from traces.ingest import trace_columns

    recorder = Recorder()
    trace_id = _support_turn(recorder, dialect)
    _send(client, token, recorder)
    rows = Trace.objects.for_workspace(workspace).filter(external_id=f"{trace_id:032x}")
    today = rows.values_list("data", "name", "search_text", "content_hash").get()
    before = copy.deepcopy(today[0])
    for step in before["steps"]:  # as stored before: each tool step named after its span
        if span_name := step["metadata"]["otel"].pop("span_name", None):
            step["name"] = span_name
    assert [s["name"] for s in before["steps"] if s["type"] == "tool"] != [
        "get_order",
        "cancel_order",
    ]
    columns = trace_columns(before)
    rows.update(data=before, search_text=columns["search_text"], content_hash="before")

    migration = importlib.import_module("traces.migrations.0024_otlp_tool_step_names")
    monkeypatch.setattr(migration, "BATCH", 1)
    migration.forwards(apps, SimpleNamespace(connection=connection))

    # The search text is made from the stored payload, whose keys are sorted: the same
    # words as ingest's, maybe in another key order.
    today = (*today[:2], trace_columns(today[0])["search_text"], today[3])
    assert rows.values_list("data", "name", "search_text", "content_hash").get() == today
    assert "execute_tool" not in today[2] and "get_order" in today[2]
    migration.forwards(apps, SimpleNamespace(connection=connection))  # a rerun: nothing more
    assert rows.values_list("data", "name", "search_text", "content_hash").get() == today
