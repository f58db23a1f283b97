"""The stored trace of each attribute dialect, pinned whole: every field, the content hash.

The dialect tests in test_otlp.py check the fields a user looks at; this one keeps the
rest of the mapping (metadata, kept attributes, hints, defaults, the hash that decides
whether a resent trace is rewritten) from drifting when the mapping's internals change.
Spans come from the real SDK; their ids and times are renumbered so the output is stable.

After a deliberate change of the mapping, rewrite the expected file with
``IOFOLD_REWRITE_PINNED=1 pytest tests/integrations/test_otlp_mapping.py`` and review the diff.
"""

import json
import os
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.trace import Status, StatusCode

from integrations.models import Integration
from integrations.otlp.receiver import get_or_create_otlp_source, receive_spans
from tests.integrations.otlp_helpers import (
    Recorder,
    older_genai_trace,
    openinference_trace,
    protobuf_body,
    semconv_agent_trace,
)
from traces.models import Trace

pytestmark = pytest.mark.django_db

EXPECTED = Path(__file__).parent / "data" / "otlp_mapped_traces.json"
BASE_NANOS = 1_790_000_000_123_456_789


def _odd_values_trace(recorder: Recorder):
    """Spans no dialect quite fits: every attribute value type, errors, more attributes
    than are kept, tool calls and responses in semconv parts, tool calls in indexed prompts."""
    tracer = recorder.tracer
    with tracer.start_as_current_span("") as root:
        root.set_attribute("gen_ai.operation.name", "execute_tool")
        root.set_attribute("gen_ai.tool.name", "search")
        root.set_attribute("gen_ai.tool.call.arguments", "not json {")
        root.set_attribute("enduser.id", 42)
        root.set_attribute("flags", [True, False])
        root.set_attribute("ratios", [0.5, 1.25])
        root.set_attribute("counts", [1, 2, 3])
        root.set_attribute("ratio", 0.75)
        root.set_attribute("on", True)
        for n in range(70):
            root.set_attribute(f"zz.{n:02d}", n)
        with tracer.start_as_current_span("chat") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.usage.input_tokens", "12")
            chat.set_attribute("gen_ai.usage.output_tokens", 3.0)
            chat.set_attribute("gen_ai.system_instructions", "Plain instructions.")
            chat.set_attribute(
                "gen_ai.input.messages",
                json.dumps(
                    [
                        {"role": "user", "parts": [{"type": "text", "content": "Find it"}]},
                        {
                            "role": "user",
                            "parts": [
                                {"type": "tool_call_response", "id": "c1", "response": {"n": 1}},
                                {"type": "image", "uri": "x.png"},
                            ],
                        },
                        "not a message",
                    ]
                ),
            )
            chat.set_attribute(
                "gen_ai.output.messages",
                json.dumps(
                    [
                        {
                            "role": "assistant",
                            "name": "helper",
                            "parts": [
                                {"type": "tool_call", "id": "c2", "name": "f", "arguments": "{}"}
                            ],
                            "finish_reason": "tool_call",
                        }
                    ]
                ),
            )
            chat.set_status(Status(StatusCode.ERROR, "rate limited"))
        with tracer.start_as_current_span("openai.chat") as older:
            older.set_attribute("gen_ai.prompt.1.content", '{"q": 1}')
            older.set_attribute("gen_ai.prompt.0.role", "user")
            older.set_attribute("gen_ai.prompt.0.content", "hi")
            older.set_attribute("gen_ai.completion.0.role", "assistant")
            older.set_attribute("gen_ai.completion.0.tool_calls.1.name", "g")
            older.set_attribute("gen_ai.completion.0.tool_calls.0.name", "f")
            older.set_attribute("gen_ai.completion.0.tool_calls.0.arguments", '{"a": 1}')
            older.set_attribute("gen_ai.completion.0.tool_calls.0.id", "t0")
            older.set_attribute("gen_ai.completion.0.tool_call_id", "x")
            older.set_attribute("gen_ai.usage.completion_tokens", 9)
            older.set_attribute("llm.provider", "acme")
            older.set_attribute("metadata", "[1, 2]")
        with tracer.start_as_current_span("step") as plain:
            plain.set_attribute("traceloop.span.kind", "task")
            plain.set_attribute("traceloop.entity.input", "true")
            plain.set_attribute("output.value", "null")
            plain.set_attribute("openinference.span.kind", "reranker")
            plain.set_attribute("error.type", "Timeout")
            plain.set_status(Status(StatusCode.ERROR))
        with tracer.start_as_current_span("failing") as failing:
            failing.add_event("exception", {"exception.type": "KeyError"})
            failing.set_status(Status(StatusCode.ERROR))
    return root.get_span_context().trace_id


def _add_unsettable_values(request: ExportTraceServiceRequest) -> None:
    """Give the odd trace's first span the values the SDK cannot set: kvlist, bytes,
    an empty value, a repeated key (the last one counts)."""
    span = request.resource_spans[-1].scope_spans[0].spans[-1]
    nested = KeyValue(key="nested")
    inner = nested.value.kvlist_value.values.add(key="inner")
    inner.value.array_value.values.add().int_value = 7
    inner.value.array_value.values.add().bytes_value = b"\x01\xff"
    span.attributes.append(nested)
    span.attributes.append(KeyValue(key="empty"))
    span.attributes.add(key="on").value.string_value = "repeated"


def _renumbered(request: ExportTraceServiceRequest) -> None:
    """Give ids and times stable values, keeping their order."""
    ids: dict[bytes, bytes] = {}
    spans = [
        span
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    times = sorted({t for s in spans for t in (s.start_time_unix_nano, s.end_time_unix_nano)})
    rank = {t: n for n, t in enumerate(times)}

    def renamed(value: bytes, size: int) -> bytes:
        if not any(value):
            return value
        return ids.setdefault(value, (len(ids) + 1).to_bytes(size, "big"))

    for span in spans:
        span.trace_id = renamed(span.trace_id, 16)
        span.span_id = renamed(span.span_id, 8)
        span.parent_span_id = renamed(span.parent_span_id, 8)
        span.start_time_unix_nano = BASE_NANOS + rank[span.start_time_unix_nano] * 1_234_567
        span.end_time_unix_nano = BASE_NANOS + rank[span.end_time_unix_nano] * 1_234_567
        for event in span.events:
            event.time_unix_nano = BASE_NANOS


def _stored(workspace) -> list[dict]:
    fields = ["external_id", "name", "timestamp", "data", "search_text", "tags", "has_error"]
    fields += ["step_count", "tool_call_count", "latency_ms", "cost", "content_hash"]
    rows = Trace.objects.for_workspace(workspace).order_by("external_id")
    return [{**row, "timestamp": row["timestamp"].isoformat()} for row in rows.values(*fields)]


def test_each_dialect_maps_to_the_same_stored_trace(workspace):
    recorder = Recorder()
    for make in (semconv_agent_trace, older_genai_trace, openinference_trace, _odd_values_trace):
        make(recorder)
    request = ExportTraceServiceRequest.FromString(protobuf_body(recorder.take()))
    _add_unsettable_values(request)
    _renumbered(request)
    integration = get_or_create_otlp_source(workspace=workspace)

    result = receive_spans(integration=integration, request=request)

    assert (result.spans, result.rejected, result.traces_created) == (14, 0, 4)
    assert integration.kind == Integration.Kind.OTLP
    stored = _stored(workspace)
    if os.environ.get("IOFOLD_REWRITE_PINNED"):
        EXPECTED.write_text(json.dumps(stored, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    assert stored == json.loads(EXPECTED.read_text())


def test_a_trace_merged_over_two_requests_is_the_trace_received_whole(workspace):
    integration = get_or_create_otlp_source(workspace=workspace)
    recorder = Recorder()
    semconv_agent_trace(recorder)
    openinference_trace(recorder)
    spans = recorder.take()
    whole = ExportTraceServiceRequest.FromString(protobuf_body(spans))
    _renumbered(whole)
    spans_of = [s for r in whole.resource_spans for sc in r.scope_spans for s in sc.spans]
    first, second = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    first.CopyFrom(whole)
    second.CopyFrom(whole)
    del first.resource_spans[0].scope_spans[0].spans[len(spans_of) // 2 :]
    del second.resource_spans[0].scope_spans[0].spans[: len(spans_of) // 2]

    receive_spans(integration=integration, request=first)
    receive_spans(integration=integration, request=second)
    merged = _stored(workspace)
    Trace.objects.for_workspace(workspace).delete()
    receive_spans(integration=integration, request=whole)

    assert merged == _stored(workspace)


def test_a_request_reads_its_stored_traces_once_and_counts_what_it_did(workspace):
    integration = get_or_create_otlp_source(workspace=workspace)
    recorder = Recorder()
    semconv_agent_trace(recorder)
    spans = recorder.take()
    first = ExportTraceServiceRequest.FromString(protobuf_body(spans[:2]))
    rest = ExportTraceServiceRequest.FromString(protobuf_body(spans[2:]))
    whole = ExportTraceServiceRequest.FromString(protobuf_body(spans))

    created = receive_spans(integration=integration, request=first)
    with CaptureQueriesContext(connection) as queries:
        updated = receive_spans(integration=integration, request=rest)
    unchanged = receive_spans(integration=integration, request=whole)

    assert (created.traces_created, updated.traces_updated, unchanged.traces_unchanged) == (1, 1, 1)
    # The merge reads the stored trace under lock; the upsert does not look it up again.
    reads = [q["sql"] for q in queries if q["sql"].startswith('SELECT "traces_trace"')]
    assert len(reads) == 1, reads
