"""``POST /api/v1/openai/traces/ingest``: the OpenAI Agents SDK's trace exporter, received.

A team points the SDK's ``BackendSpanExporter`` here (its ``endpoint``) with an iofold API
token as its key; the SDK's posts are merged into stored traces (``integrations.adapters.
openai_agents``) and handed to ``iofold.pipeline.ingest_traces``, so continuous evaluation
runs on them like on any other source.
"""

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import receivers
from integrations.adapters.openai_agents import PayloadError, merge_trace, read_payload
from integrations.models import Integration
from iofold.api import PayloadTooLarge
from iofold.lib.transactions import run_in_transaction
from iofold.pipeline import admit_traces, ingest_traces, stored_traces
from traces.agents_responses import queue_response_fill
from traces.models import Trace
from workspaces.access import WorkspaceScopedMixin

SOURCE = Trace.Source.OPENAI

AgentsIngestOut = inline_serializer(
    "AgentsIngestOut",
    {
        "accepted": serializers.IntegerField(),
        "traces": serializers.IntegerField(),
        "created": serializers.IntegerField(),
        "updated": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(),
        "errors": serializers.ListField(child=serializers.DictField()),
    },
)


class OpenAIAgentsIngestApi(WorkspaceScopedMixin, APIView):
    """Receive what the Agents SDK's ``BackendSpanExporter`` posts: ``{"data": [...]}``."""

    model = Trace
    # The exporter sends a bearer token (the project's default authentication, with the
    # session one, whose CSRF check keeps cookies of a browser from posting here).

    @extend_schema(
        operation_id="openai_agents_traces_ingest",
        request=OpenApiTypes.OBJECT,
        responses={
            200: AgentsIngestOut,
            400: AgentsIngestOut,
            413: OpenApiTypes.OBJECT,
            429: OpenApiTypes.OBJECT,
        },
        summary="Receive OpenAI Agents SDK traces and spans (the exporter's payload)",
    )
    def post(self, request):
        try:
            body = request.data
        except RequestDataTooBig:
            raise PayloadTooLarge(
                "The request body is too large; export smaller batches."
            ) from None
        try:
            batch = read_payload(body)
        except PayloadError as exc:
            if "at most" in str(exc):
                raise PayloadTooLarge(str(exc)) from None
            return Response(
                {"detail": str(exc), "errors": [{"index": None, "error": str(exc)}]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        integration = receivers.get_or_create_receiver(
            workspace=request.workspace, kind=Integration.Kind.OPENAI_AGENTS
        )
        try:
            receivers.check_enabled(integration)
        except receivers.ReceiverDisabled as exc:
            raise PermissionDenied(f"{exc} Enable it to receive traces.") from None
        out = {"accepted": batch.accepted, "traces": 0, "created": 0, "updated": 0, "unchanged": 0}
        if not batch.trace_ids:
            _record(integration, batch, failed_items=0, errors=batch.errors)
            code = status.HTTP_400_BAD_REQUEST if batch.errors else status.HTTP_200_OK
            return Response({**out, "errors": batch.errors}, status=code)
        admit_traces(workspace=request.workspace, count=len(batch.trace_ids))

        # Run again should PostgreSQL end it to break a deadlock, rather than a 500.
        traces, result = run_in_transaction(
            lambda: _merge_and_store(request.workspace, integration, batch),
            what=f"agents receive workspace={request.workspace.pk}",
        )
        errors = batch.errors + [
            {"trace_id": traces[index]["id"], "error": error} for index, error in result.errors
        ]
        out.update(
            traces=len(traces),
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged + result.duplicates,
        )
        failed_items = sum(_items_of(batch, traces[index]["id"]) for index, _ in result.errors)
        _record(integration, batch, failed_items=failed_items, errors=errors)
        code = status.HTTP_400_BAD_REQUEST if result.failed == len(traces) else status.HTTP_200_OK
        return Response({**out, "errors": errors}, status=code)


def _items_of(batch, trace_id: str) -> int:
    return (trace_id in batch.traces) + len(batch.spans.get(trace_id, {}))


def _record(integration, batch, *, failed_items: int, errors: list[dict]) -> None:
    """Note the post on the source: when, and the first few distinct problems if any."""
    problems = list(dict.fromkeys(str(e["error"]) for e in errors))[:3]
    receivers.record_receipt(
        integration,
        received=batch.accepted + len(batch.errors),
        rejected=len(batch.errors) + failed_items,
        problem="; ".join(problems),
        unit="items",
    )


def _merge_and_store(workspace, integration: Integration, batch):
    """Merge the batch's spans into the traces stored so far and store them; return the
    merged traces and what the upsert did. Reads before it writes, in one transaction."""
    # Locked so that two posts of one trace merge one after the other.
    stored = stored_traces(
        workspace=workspace, source=SOURCE, integration=integration, external_ids=batch.trace_ids
    )
    traces = [
        merge_trace(
            stored.get(trace_id),
            trace_id,
            batch.traces.get(trace_id),
            batch.spans.get(trace_id, {}),
        )
        for trace_id in batch.trace_ids
    ]
    result = ingest_traces(
        workspace=workspace, source=SOURCE, integration=integration, traces=traces, stored=stored
    )
    # Response spans carry only an id: their content is read afterwards, off this request.
    queue_response_fill(integration, traces)
    return traces, result
