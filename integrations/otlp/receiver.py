"""``POST /v1/traces``: an OTLP/HTTP trace receiver, authenticated with an iofold API token.

The token names the workspace; its traces go to the workspace's OpenTelemetry source (an
integration of kind OTLP, created on the first request if there is none), so every
exporter of a workspace feeds one source with one trace namespace. A per-integration
secret was the alternative: it would let two OTLP sources coexist, but it would be a
second kind of credential to issue, rotate and revoke beside the API tokens a team
already manages, with their roles (viewers refused) and their "last used".

Spans are grouped into traces by trace id. A trace often arrives over several requests
(the SDK's batch processor exports spans as they end), so each request merges its spans
into the stored trace's steps by span id and rebuilds the trace: receiving a span twice
changes nothing, and the trace is the same whatever order its spans came in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from rest_framework import exceptions as drf_exceptions

from integrations import receivers
from integrations.models import Integration
from integrations.otlp import decode
from integrations.otlp.normalise import SpanRejected, attributes, build_trace, span_to_step
from integrations.store import UpsertResult
from iofold.exceptions import RateLimited
from iofold.lib.bodies import LengthRequired, require_content_length
from iofold.lib.transactions import run_in_transaction
from iofold.pipeline import admit_traces, ingest_traces, stored_traces
from workspaces.access import check_role
from workspaces.authentication import WorkspaceTokenAuthentication

logger = logging.getLogger(__name__)

# The few distinct reasons kept for the response and the source's "last error".
MAX_REASONS = 3
# A trace is rewritten whole each time spans join it, and judged whole by evals: beyond
# this many spans its new spans are refused rather than making every request slower.
MAX_SPANS_PER_TRACE = 5000


@dataclass
class ReceiveResult:
    """What one export request did."""

    spans: int = 0
    rejected: int = 0
    traces_created: int = 0
    traces_updated: int = 0
    traces_unchanged: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, count: int, reason: str) -> None:
        self.rejected += count
        if reason not in self.reasons and len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    @property
    def error_message(self) -> str:
        return "; ".join(self.reasons)


# --- services ------------------------------------------------------------------------------


def get_or_create_otlp_source(*, workspace) -> Integration:
    """Return the workspace's OpenTelemetry source, creating it on first use."""
    return receivers.get_or_create_receiver(workspace=workspace, kind=Integration.Kind.OTLP)


def receive_spans(*, integration: Integration, request: ExportTraceServiceRequest) -> ReceiveResult:
    """Store the spans of one export request as steps of their traces, merged by trace id."""
    receivers.check_enabled(integration)
    result = ReceiveResult()
    by_trace: dict[str, dict[str, dict[str, Any]]] = {}
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                result.spans += 1
                try:
                    step = span_to_step(span, resource=resource, scope=scope)
                except SpanRejected as exc:
                    result.reject(1, str(exc))
                    continue
                by_trace.setdefault(span.trace_id.hex(), {})[step["id"]] = step
    if by_trace:
        # Run again should PostgreSQL end it to break a deadlock: an exporter does not send
        # again a batch answered with a 500, so its spans would be lost.
        rejected, upserted = run_in_transaction(
            lambda: _store(integration, by_trace), what=f"otlp receive integration={integration.pk}"
        )
        for count, reason in rejected:
            result.reject(count, reason)
        result.traces_created = upserted.created
        result.traces_updated = upserted.updated
        result.traces_unchanged = upserted.unchanged + upserted.duplicates
    _record(integration, result)
    return result


def _store(integration: Integration, by_trace: dict) -> tuple[list[tuple[int, str]], UpsertResult]:
    """Merge the received spans into their stored traces and store them; return the spans
    refused (how many, why) and what the upsert did. Changes nothing it is given, so it can
    run again in a new transaction."""
    stored = stored_traces(
        workspace=integration.workspace,
        source="otlp",
        integration=integration,
        external_ids=list(by_trace),
    )
    rejected: list[tuple[int, str]] = []
    received = {trace_id: len(steps) for trace_id, steps in by_trace.items()}
    traces = []
    for trace_id, spans in by_trace.items():
        data = stored.get(trace_id) or {}
        earlier = {s["id"]: s for s in data.get("steps") or [] if isinstance(s, dict)}
        steps = {**earlier, **spans}
        if len(steps) > MAX_SPANS_PER_TRACE:
            limit = f"trace {trace_id} would have more than {MAX_SPANS_PER_TRACE} spans"
            rejected.append((received[trace_id], limit))
            continue
        traces.append(build_trace(trace_id, list(steps.values())))
    upserted = ingest_traces(
        workspace=integration.workspace,
        source="otlp",
        integration=integration,
        traces=traces,
        stored=stored,
    )
    for index, reason in upserted.errors:
        trace_id = traces[index]["id"]
        rejected.append((received[trace_id], f"trace {trace_id}: {reason}"))
    return rejected, upserted


def _record(integration: Integration, result: ReceiveResult) -> None:
    receivers.record_receipt(
        integration, received=result.spans, rejected=result.rejected, problem=result.error_message
    )


# --- view ----------------------------------------------------------------------------------


def _respond(message, *, status: int, as_json: bool) -> HttpResponse:
    if as_json:
        body = json_format.MessageToJson(message, indent=None)
        return HttpResponse(body, status=status, content_type=decode.JSON)
    return HttpResponse(message.SerializeToString(), status=status, content_type=decode.PROTOBUF)


def _refuse(message: str, *, status: int, as_json: bool, headers=None) -> HttpResponse:
    response = _respond(
        status_pb2.Status(code=_GRPC_CODES.get(status, 2), message=message),
        status=status,
        as_json=as_json,
    )
    for key, value in (headers or {}).items():
        response[key] = value
    return response


# google.rpc.Code for each HTTP status the receiver answers with.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 405: 12, 411: 3, 413: 8, 415: 3, 429: 8, 503: 14}


def _authenticate(request: HttpRequest):
    """Return the workspace of the request's API token; raise 401 or 403 as ``PermissionDenied``."""
    try:
        authenticated = WorkspaceTokenAuthentication().authenticate(request)
    except drf_exceptions.AuthenticationFailed as exc:
        raise _Unauthenticated(str(exc.detail)) from None
    if authenticated is None:
        raise _Unauthenticated("Send Authorization: Bearer <an iofold API token>.")
    token = authenticated[1]
    check_role(token.granted_role, write=True)
    return token.workspace


class _Unauthenticated(Exception):
    pass


@login_not_required
@csrf_exempt
def receive(request: HttpRequest) -> HttpResponse:
    """Accept an OTLP/HTTP trace export (protobuf or JSON, optionally gzip)."""
    media = decode.media_type(request.content_type)
    as_json = media == decode.JSON
    if request.method != "POST":
        response = _refuse("Send POST.", status=405, as_json=as_json)
        response["Allow"] = "POST"
        return response
    try:
        workspace = _authenticate(request)
    except _Unauthenticated as exc:
        headers = {"WWW-Authenticate": "Bearer"}
        return _refuse(str(exc), status=401, as_json=as_json, headers=headers)
    except PermissionDenied as exc:
        return _refuse(str(exc), status=403, as_json=as_json)
    if media is None:
        return _refuse(
            f"Content-Type must be {decode.PROTOBUF} or {decode.JSON}.", status=415, as_json=True
        )
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > decode.MAX_BODY_BYTES:
        return _refuse(_too_large(), status=413, as_json=as_json)
    try:
        require_content_length(request)
    except LengthRequired as exc:
        return _refuse(str(exc.detail), status=exc.status_code, as_json=as_json)
    # Read past Django's DATA_UPLOAD_MAX_MEMORY_SIZE, which is sized for forms, not batches.
    body = request.read(decode.MAX_BODY_BYTES + 1)
    if len(body) > decode.MAX_BODY_BYTES:
        return _refuse(_too_large(), status=413, as_json=as_json)
    try:
        message = decode.parse(
            decode.decompress(body, request.headers.get("Content-Encoding")), media=media
        )
    except decode.OtlpRequestError as exc:
        return _refuse(exc.message, status=exc.status, as_json=as_json)
    try:
        admit_traces(workspace=workspace, count=_trace_count(message))
    except RateLimited as exc:
        # 429 with Retry-After is one of the statuses an OTLP exporter retries.
        headers = {"Retry-After": str(exc.retry_after)}
        return _refuse(exc.message, status=429, as_json=as_json, headers=headers)
    try:
        integration = get_or_create_otlp_source(workspace=workspace)
        result = receive_spans(integration=integration, request=message)
    except receivers.ReceiverDisabled as exc:
        return _refuse(f"{exc} Enable it to receive traces.", status=403, as_json=as_json)
    except OperationalError:
        # A locked or unreachable database: 503 is one of the statuses an exporter retries.
        logger.exception("otlp receive failed workspace=%s", workspace.pk)
        return _refuse(
            "Try again shortly.", status=503, as_json=as_json, headers={"Retry-After": "5"}
        )
    logger.info(
        "otlp received workspace=%s spans=%d rejected=%d created=%d updated=%d",
        workspace.pk,
        result.spans,
        result.rejected,
        result.traces_created,
        result.traces_updated,
    )
    response = ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(
                rejected_spans=result.rejected, error_message=result.error_message
            )
        )
    return _respond(response, status=200, as_json=as_json)


def _trace_count(message: ExportTraceServiceRequest) -> int:
    """The distinct traces an export request touches (what the ingest budget counts)."""
    return len(
        {
            span.trace_id
            for resource_spans in message.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        }
    )


def _too_large() -> str:
    return (
        f"The body is larger than {decode.MAX_BODY_BYTES >> 20} MiB; export smaller batches "
        "(BatchSpanProcessor max_export_batch_size)."
    )
