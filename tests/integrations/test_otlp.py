"""POST /v1/traces: OTLP/HTTP from the real OpenTelemetry SDK exporter, and everything else."""

import gzip
import json
import zlib
from datetime import timedelta

import pytest
from django.utils import timezone
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from evals.execution import continuous
from evals.models import Eval, EvalExecution
from integrations.models import Integration
from tests.integrations.otlp_helpers import (
    Recorder,
    api_token,
    older_genai_trace,
    openinference_trace,
    protobuf_body,
    semconv_agent_trace,
)
from tests.traces.factories import EvalSetFactory
from traces.models import EvalSet, Trace

URL = "/v1/traces"
PROTOBUF = "application/x-protobuf"


def _post(client, body: bytes, token: str | None, *, content_type=PROTOBUF, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(URL, body, content_type=content_type, **headers)


def _response(response) -> ExportTraceServiceResponse:
    assert response["Content-Type"] == PROTOBUF
    return ExportTraceServiceResponse.FromString(response.content)


def _trace(workspace, trace_id: int) -> Trace:
    return Trace.objects.for_workspace(workspace).get(external_id=f"{trace_id:032x}")


def _otel_json(spans) -> dict:
    """The OTLP JSON encoding of SDK spans: protobuf JSON with hex ids, as the spec says."""
    payload = json_format.MessageToDict(ExportTraceServiceRequest.FromString(protobuf_body(spans)))
    for resource in payload["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = json_format.base64.b64decode(span[key]).hex()
    return payload


# --- the real exporter, over HTTP -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_sdk_exporter_delivers_a_trace_to_the_live_server(live_server, workspace, compression):
    recorder = Recorder()
    trace_id = semconv_agent_trace(recorder)
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {api_token(workspace)}"},
        compression=compression,
        timeout=10,
    )

    assert exporter.export(recorder.take()) == SpanExportResult.SUCCESS

    trace = _trace(workspace, trace_id)
    source = Integration.objects.for_workspace(workspace).get(kind=Integration.Kind.OTLP)
    assert (trace.source, trace.integration, trace.step_count) == ("otlp", source, 4)
    assert source.last_synced_at is not None and source.status == Integration.Status.OK
    data = trace.data
    assert data["name"] == "invoke_agent support"
    assert data["session_id"] == "conv-42"
    assert data["output"] == [{"role": "assistant", "content": "Your refund is on its way."}]
    agent, chat, tool, answer = data["steps"]
    assert (agent["type"], chat["type"], tool["type"], answer["type"]) == (
        "agent",
        "llm",
        "tool",
        "llm",
    )
    assert agent["parent_id"] is None and {chat["parent_id"], tool["parent_id"]} == {agent["id"]}
    assert chat["model"] == "gpt-5-2026-01-01"
    assert chat["usage"] == {"input": 120, "output": 30}
    assert chat["input"][0] == {"role": "system", "content": "You are a support agent."}
    assert chat["output"][0]["tool_calls"][0]["function"] == {
        "name": "lookup_order",
        "arguments": '{"order": 7}',
    }
    assert (tool["name"], tool["input"], tool["output"]) == (
        "lookup_order",
        {"order": 7},
        {"status": "refunded"},
    )
    assert data["metadata"]["service"] == "support-bot"
    assert data["metadata"]["provider"] == "openai"


@pytest.mark.django_db(transaction=True)
def test_sdk_exporter_sees_an_invalid_token_as_a_failed_export(live_server, workspace):
    recorder = Recorder()
    semconv_agent_trace(recorder)
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": "Bearer iof_nottherightthing"},
        timeout=5,
    )

    assert exporter.export(recorder.take()) == SpanExportResult.FAILURE
    assert not Trace.objects.exists()


# --- the three dialects -----------------------------------------------------------------------


@pytest.fixture
def token(workspace):
    return api_token(workspace)


def test_older_genai_attributes(client, workspace, token):
    recorder = Recorder()
    trace_id = older_genai_trace(recorder)

    response = _post(client, protobuf_body(recorder.take()), token)

    assert response.status_code == 200
    assert not _response(response).HasField("partial_success")
    data = _trace(workspace, trace_id).data
    assert (data["input"], data["output"]) == ({"question": "Where is order 7?"}, "It shipped.")
    workflow, chat = data["steps"]
    assert (workflow["type"], chat["type"]) == ("chain", "llm")
    assert chat["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is order 7?"},
    ]
    assert chat["output"] == [
        {"role": "assistant", "content": "It shipped.", "finish_reason": "stop"}
    ]
    assert chat["usage"] == {"input": 20, "output": 4}
    assert (chat["model"], chat["metadata"]["provider"]) == ("gpt-4o", "OpenAI")


def test_openinference_attributes(client, workspace, token):
    recorder = Recorder()
    trace_id = openinference_trace(recorder)

    response = _post(client, protobuf_body(recorder.take()), token)

    assert response.status_code == 200
    trace = _trace(workspace, trace_id)
    data = trace.data
    assert (data["input"], data["output"]) == ("Cancel my order", {"answer": "Cancelled."})
    assert (data["session_id"], data["user_id"], data["tags"]) == (
        "sess-9",
        "user-3",
        ["prod", "support"],
    )
    assert data["metadata"]["user_metadata"] == {"tenant": "acme"}
    agent, llm, tool = data["steps"]
    assert (agent["type"], llm["type"], tool["type"]) == ("agent", "llm", "tool")
    assert llm["input"] == [{"role": "user", "content": "Cancel my order"}]
    assert llm["output"][0]["tool_calls"][0]["function"]["name"] == "cancel_order"
    assert (llm["model"], llm["usage"]) == ("claude-sonnet", {"input": 11, "output": 5})
    assert tool["input"] == {"order": 7}
    assert tool["error"] == "order already shipped"
    assert trace.has_error and trace.tool_call_count == 1


# --- encodings --------------------------------------------------------------------------------


def test_json_variant_with_hex_ids(client, workspace, token):
    recorder = Recorder()
    trace_id = semconv_agent_trace(recorder)
    payload = _otel_json(recorder.take())

    response = _post(client, json.dumps(payload).encode(), token, content_type="application/json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {}
    assert _trace(workspace, trace_id).step_count == 4


def test_gzip_protobuf(client, workspace, token):
    recorder = Recorder()
    trace_id = older_genai_trace(recorder)

    response = _post(
        client, gzip.compress(protobuf_body(recorder.take())), token, HTTP_CONTENT_ENCODING="gzip"
    )

    assert response.status_code == 200
    assert _trace(workspace, trace_id).step_count == 2


def test_gzip_json(client, workspace, token):
    recorder = Recorder()
    trace_id = openinference_trace(recorder)
    body = gzip.compress(json.dumps(_otel_json(recorder.take())).encode())

    response = _post(
        client, body, token, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )

    assert response.status_code == 200
    assert _trace(workspace, trace_id).step_count == 3


# --- traces over several requests -------------------------------------------------------------


def test_a_trace_split_over_two_requests_is_merged_whatever_the_order(client, workspace, token):
    recorder = Recorder()
    trace_id = semconv_agent_trace(recorder)
    spans = recorder.take()  # children end first; the root (agent) ends last
    children, root = spans[:-1], spans[-1:]

    first = _post(client, protobuf_body(children[:2]), token)
    partial = _trace(workspace, trace_id)
    second = _post(client, protobuf_body([*children[2:], *root]), token)

    assert first.status_code == second.status_code == 200
    assert partial.step_count == 2 and partial.data["metadata"]["complete"] is False
    whole = _trace(workspace, trace_id)
    assert whole.pk == partial.pk and whole.step_count == 4
    assert whole.data["metadata"]["complete"] is True
    assert whole.data["name"] == "invoke_agent support"
    assert [s["parent_id"] is None for s in whole.data["steps"]] == [True, False, False, False]

    # The same spans, all at once and in another order, give the same trace; a resend
    # changes nothing.
    digest = whole.content_hash
    _post(client, protobuf_body(list(reversed(spans))), token)
    assert _trace(workspace, trace_id).content_hash == digest
    assert Trace.objects.count() == 1


def test_several_traces_in_one_request(client, workspace, token):
    recorder = Recorder()
    ids = [semconv_agent_trace(recorder), older_genai_trace(recorder)]

    response = _post(client, protobuf_body(recorder.take()), token)

    assert response.status_code == 200
    assert {t.external_id for t in Trace.objects.all()} == {f"{i:032x}" for i in ids}


# --- continuous evaluation --------------------------------------------------------------------

REFUND_CODE = """def eval_fn(trace):
    text = str(trace.get("output") or "")
    if "refund" in text:
        return True, "mentions the refund"
    return False, "no refund in the answer"
"""


def test_continuous_evaluation_judges_a_received_trace(
    client, workspace, token, monkeypatch, django_capture_on_commit_callbacks
):
    from evals import tasks

    eval_set = EvalSetFactory(workspace=workspace, source_kind=EvalSet.SourceKind.FILTER)
    active = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code=REFUND_CODE,
        provider="offline",
        status=Eval.Status.ACTIVE,
        agreement=0.9,
        activated_at=timezone.now(),
    )
    queued = []
    monkeypatch.setattr(
        tasks.run_automatic_evals_task, "apply_async", lambda args, **_: queued.append(args)
    )
    recorder = Recorder()
    good = semconv_agent_trace(recorder)
    bad = semconv_agent_trace(recorder, answer="I cannot help with that.")

    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, protobuf_body(recorder.take()), token)

    assert response.status_code == 200
    ids = sorted(Trace.objects.values_list("id", flat=True))
    assert [(w, sorted(t)) for w, t in queued] == [(workspace.pk, ids)]
    runs = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)
    continuous.execute_automatic_run(run_id=runs[0].pk)
    verdicts = {
        e.trace.external_id: e.passed
        for e in EvalExecution.objects.filter(eval=active).select_related("trace")
    }
    assert verdicts == {f"{good:032x}": True, f"{bad:032x}": False}


# --- refusals ---------------------------------------------------------------------------------


def _status(response) -> status_pb2.Status:
    if response["Content-Type"] == "application/json":
        return json_format.Parse(response.content, status_pb2.Status())
    return status_pb2.Status.FromString(response.content)


def test_no_token_is_401(client, workspace):
    response = _post(client, b"", None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "API token" in _status(response).message


def test_bad_token_is_401(client, workspace):
    response = _post(client, b"", "iof_abcdefabcdefnope")
    assert response.status_code == 401


def test_revoked_token_is_401(client, workspace, token):
    from workspaces.models import ApiToken

    ApiToken.objects.update(revoked_at=timezone.now())
    assert _post(client, b"", token).status_code == 401


def test_viewer_token_is_403(client, workspace):
    response = _post(client, b"", api_token(workspace, role="viewer"))
    assert response.status_code == 403
    assert not Integration.objects.exists()


def test_disabled_source_is_403(client, workspace, token):
    Integration.objects.create(
        workspace=workspace, kind=Integration.Kind.OTLP, name="OTel", host="", enabled=False
    )
    recorder = Recorder()
    older_genai_trace(recorder)
    response = _post(client, protobuf_body(recorder.take()), token)
    assert response.status_code == 403
    assert not Trace.objects.exists()


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", ""])
def test_wrong_content_type_is_415(client, workspace, token, content_type):
    response = _post(client, b"{}", token, content_type=content_type)
    assert response.status_code == 415


def test_unknown_content_encoding_is_415(client, workspace, token):
    response = _post(client, b"x", token, HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("body", "content_type", "encoding"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF, None),
        (b"\x0a\x05\x0a\x03\x0a\x01", PROTOBUF, None),  # truncated nested message
        (b"not json", "application/json", None),
        (b"[]", "application/json", None),
        (b'{"resourceSpans": "nope"}', "application/json", None),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            None,
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            "application/json",
            None,
        ),
        (b'{"a": "\\u0000"}', "application/json", None),
        (b"[" * 5000 + b"]" * 5000, "application/json", None),
        (b"not gzip", PROTOBUF, "gzip"),
        (gzip.compress(b"abc")[:-4], PROTOBUF, "gzip"),
    ],
)
def test_undecodable_bodies_are_400(client, workspace, token, body, content_type, encoding):
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = _post(client, body, token, content_type=content_type, **headers)
    assert response.status_code == 400, response.content
    assert _status(response).message
    assert not Trace.objects.exists()


def test_every_member_of_a_gzip_body_is_read(client, workspace, token):
    """Only the first member was inflated: the spans of the others were dropped unsaid."""
    recorder = Recorder()
    first, second = semconv_agent_trace(recorder), semconv_agent_trace(recorder)
    spans = recorder.take()
    half = len(spans) // 2
    body = gzip.compress(protobuf_body(spans[:half])) + gzip.compress(protobuf_body(spans[half:]))

    response = _post(client, body, token, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200
    assert not _response(response).HasField("partial_success")
    assert {_trace(workspace, first).step_count, _trace(workspace, second).step_count} == {half}


@pytest.mark.parametrize(
    ("encoding", "compress", "message"),
    [
        ("gzip", gzip.compress, "The body is not valid gzip."),
        ("deflate", zlib.compress, "The body has data after its deflate end."),
    ],
)
def test_data_after_the_end_of_a_compressed_body_is_400(
    client, workspace, token, encoding, compress, message
):
    """It was dropped, and the spans before it stored as if the body were whole."""
    recorder = Recorder()
    semconv_agent_trace(recorder)
    body = compress(protobuf_body(recorder.take())) + b"trailing garbage"

    response = _post(client, body, token, HTTP_CONTENT_ENCODING=encoding)

    assert response.status_code == 400
    assert _status(response).message == message
    assert not Trace.objects.exists()


def test_gzip_json_of_more_values_than_a_plain_body_holds_is_413(client, workspace, token):
    """Inflated JSON was parsed whatever it held: 32 MiB of ``{},`` is a gigabyte of objects."""
    from integrations.otlp import decode

    values = decode.MAX_BODY_BYTES // 2
    body = gzip.compress(b'{"resourceSpans": [' + b"{}," * values + b"{}]}")

    response = _post(client, body, token, content_type="application/json",
                     HTTP_CONTENT_ENCODING="gzip")  # fmt: skip

    assert response.status_code == 413
    assert "more JSON values" in response.json()["message"]


def test_a_gzip_bomb_is_413(client, workspace, token):
    bomb = gzip.compress(b"\0" * (40 * 1024 * 1024))
    response = _post(client, bomb, token, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413


def test_a_body_over_the_limit_is_413(client, workspace, token, monkeypatch):
    from integrations.otlp import decode

    monkeypatch.setattr(decode, "MAX_BODY_BYTES", 1000)
    recorder = Recorder()
    semconv_agent_trace(recorder)
    response = _post(client, protobuf_body(recorder.take()), token)
    assert response.status_code == 413


def test_get_is_405(client, workspace, token):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405


def test_an_empty_request_is_200(client, workspace, token):
    # The test client drops Content-Type with an empty body; exporters send it.
    response = _post(client, b"", token, CONTENT_TYPE=PROTOBUF)
    assert response.status_code == 200
    assert not _response(response).HasField("partial_success")


def test_spans_without_ids_are_rejected_alone(client, workspace, token):
    recorder = Recorder()
    trace_id = older_genai_trace(recorder)
    message = ExportTraceServiceRequest.FromString(protobuf_body(recorder.take()))
    broken = message.resource_spans[0].scope_spans[0].spans.add()
    broken.name = "no ids"
    broken.start_time_unix_nano = 1

    response = _post(client, message.SerializeToString(), token)

    assert response.status_code == 200
    partial = _response(response).partial_success
    assert partial.rejected_spans == 1
    assert "trace_id" in partial.error_message
    assert _trace(workspace, trace_id).step_count == 2
    source = Integration.objects.get(kind=Integration.Kind.OTLP)
    assert source.status == Integration.Status.ERROR
    assert "UTC: 1 of 3 spans rejected" in source.last_error

    # A good request after it: the status is OK again, the last problem stays in view.
    recorder = Recorder()
    older_genai_trace(recorder)
    assert _post(client, protobuf_body(recorder.take()), token).status_code == 200
    source.refresh_from_db()
    assert source.status == Integration.Status.OK
    assert "1 of 3 spans rejected" in source.last_error


def test_last_received_moves_at_most_once_a_minute_while_all_is_well(client, workspace, token):
    def post_trace():
        recorder = Recorder()
        older_genai_trace(recorder)
        assert _post(client, protobuf_body(recorder.take()), token).status_code == 200
        return Integration.objects.get(kind=Integration.Kind.OTLP)

    first = post_trace().last_synced_at
    assert post_trace().last_synced_at == first
    a_while_ago = timezone.now() - timedelta(minutes=2)
    Integration.objects.filter(kind=Integration.Kind.OTLP).update(last_synced_at=a_while_ago)
    assert post_trace().last_synced_at > first


def test_a_trace_that_cannot_be_stored_rejects_its_spans(client, workspace, token):
    recorder = Recorder()
    with recorder.tracer.start_as_current_span("nul") as span:
        span.set_attribute("input.value", "a\x00b")
    good = older_genai_trace(recorder)

    response = _post(client, protobuf_body(recorder.take()), token)

    assert response.status_code == 200
    partial = _response(response).partial_success
    assert partial.rejected_spans == 1
    assert "NUL" in partial.error_message
    assert [t.external_id for t in Trace.objects.all()] == [f"{good:032x}"]


def test_json_partial_success_is_protobuf_json(client, workspace, token):
    payload = {
        "resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "", "spanId": "", "name": "x"}]}]}]
    }
    response = _post(client, json.dumps(payload).encode(), token, content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["partialSuccess"]["rejectedSpans"] == "1"


def test_traces_go_to_the_token_workspace_only(client, workspace, other_workspace, token):
    recorder = Recorder()
    older_genai_trace(recorder)
    _post(client, protobuf_body(recorder.take()), token)
    assert Trace.objects.for_workspace(other_workspace).count() == 0
    assert Trace.objects.for_workspace(workspace).count() == 1


def test_garbage_and_mangled_bodies_never_get_a_5xx(client, workspace, token):
    """Random bytes, and real requests with bytes flipped, are a 200 or a 400, never a 500."""
    import random

    recorder = Recorder()
    semconv_agent_trace(recorder)
    openinference_trace(recorder)
    real = protobuf_body(recorder.take())
    rng = random.Random(15)
    bodies = [rng.randbytes(rng.randint(1, 300)) for _ in range(40)]
    for _ in range(60):
        mangled = bytearray(real)
        for _ in range(rng.randint(1, 8)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        bodies.append(bytes(mangled))
    statuses = {_post(client, body, token).status_code for body in bodies}
    assert statuses <= {200, 400}, statuses


@pytest.mark.parametrize(
    "span",
    [
        {"attributes": "x"},
        {"attributes": [{"key": "a", "value": {"arrayValue": {"values": "x"}}}]},
        {"traceId": "ab" * 16, "spanId": "cd" * 8, "startTimeUnixNano": "-1"},
        {"traceId": "ab" * 16, "spanId": "cd" * 8, "startTimeUnixNano": "99999999999999999999"},
        {"status": {"code": "STATUS_CODE_NOPE"}},
        {"events": [{"attributes": [{"key": 1}]}]},
    ],
)
def test_mistyped_json_fields_are_400_or_rejected_spans(client, workspace, token, span):
    payload = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    response = _post(client, json.dumps(payload).encode(), token, content_type="application/json")
    assert response.status_code in (200, 400), response.content


@pytest.mark.parametrize("field", ["start_time_unix_nano", "end_time_unix_nano"])
def test_the_largest_timestamp_is_stored(client, workspace, token, field):
    """uint64 nanoseconds end in the year 2554: within what a datetime holds."""
    recorder = Recorder()
    trace_id = older_genai_trace(recorder)
    message = ExportTraceServiceRequest.FromString(protobuf_body(recorder.take()))
    setattr(message.resource_spans[0].scope_spans[0].spans[0], field, 2**64 - 1)

    response = _post(client, message.SerializeToString(), token)

    assert response.status_code == 200
    assert not _response(response).HasField("partial_success")
    assert _trace(workspace, trace_id).step_count == 2


@pytest.mark.django_db(transaction=True)
def test_two_requests_starting_one_trace_at_once_lose_no_span(workspace, monkeypatch):
    """Both read before either writes, unless the first holds the trace until it commits."""
    import threading
    import time

    from django.db import connection

    from integrations.otlp import receiver

    slow_build = receiver.build_trace

    def build_trace(trace_id, steps):
        time.sleep(0.3)  # widen the window between reading and writing
        return slow_build(trace_id, steps)

    monkeypatch.setattr(receiver, "build_trace", build_trace)
    source = receiver.get_or_create_otlp_source(workspace=workspace)
    recorder = Recorder()
    trace_id = semconv_agent_trace(recorder)
    spans = recorder.take()
    halves = [spans[:2], spans[2:]]
    errors = []

    def send(half):
        try:
            message = ExportTraceServiceRequest.FromString(protobuf_body(half))
            receiver.receive_spans(integration=source, request=message)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert _trace(workspace, trace_id).step_count == 4


def test_spans_past_the_trace_limit_are_rejected_and_counted_per_request(
    client, workspace, token, monkeypatch
):
    from integrations.otlp import receiver

    monkeypatch.setattr(receiver, "MAX_SPANS_PER_TRACE", 3)
    recorder = Recorder()
    trace_id = semconv_agent_trace(recorder)
    spans = recorder.take()

    first = _response(_post(client, protobuf_body(spans[:2]), token))
    second = _response(_post(client, protobuf_body(spans[2:]), token))

    assert not first.HasField("partial_success")
    assert second.partial_success.rejected_spans == 2  # this request's spans, not the stored
    assert "more than 3 spans" in second.partial_success.error_message
    assert _trace(workspace, trace_id).step_count == 2


def test_a_chunked_body_without_length_is_411(client, workspace, token):
    response = _post(client, b"", token, CONTENT_TYPE=PROTOBUF, HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 411


def test_a_span_attribute_that_is_not_json_rejects_its_trace_only(client, workspace, token):
    recorder = Recorder()
    semconv_agent_trace(recorder)
    payload = _otel_json(recorder.take())
    span = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"].append({"key": "x.score", "value": {"doubleValue": "NaN"}})

    response = _post(client, json.dumps(payload).encode(), token, content_type="application/json")

    assert response.status_code == 200
    assert (
        'attributes["x.score"]: NaN is not a JSON number'
        in response.json()["partialSuccess"]["errorMessage"]
    )
    assert not Trace.objects.filter(workspace=workspace).exists()


@pytest.mark.parametrize("where", ["token count", "tool call index"])
def test_a_number_attribute_that_is_no_number_is_left_out(client, workspace, token, where):
    """A superscript two is a digit to ``str.isdigit`` but not to ``int``: a 500."""
    odd = "\u00b2"
    recorder = Recorder()
    with recorder.tracer.start_as_current_span("openai.chat") as chat:
        chat.set_attribute("llm.request.type", "chat")
        chat.set_attribute("gen_ai.completion.0.role", "assistant")
        if where == "tool call index":
            chat.set_attribute(f"gen_ai.completion.0.tool_calls.{odd}.name", "lookup")
        chat.set_attribute("gen_ai.usage.prompt_tokens", odd if where == "token count" else "2")
        chat.set_attribute("gen_ai.usage.completion_tokens", "4")
    trace_id = chat.get_span_context().trace_id

    response = _post(client, protobuf_body(recorder.take()), token)

    assert response.status_code == 200
    assert not _response(response).HasField("partial_success")
    (step,) = _trace(workspace, trace_id).data["steps"]
    assert step["type"] == "llm"
