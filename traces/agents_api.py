"""``POST /api/v1/openai/traces/ingest``: the OpenAI Agents SDK's trace exporter, received.

A team points the SDK's ``BackendSpanExporter`` here (its ``endpoint``) with an iofold API
token as its key; the SDK's posts are merged into stored traces (``integrations.adapters.
openai_agents``) and handed to ``iofold.pipeline.ingest_traces``, so continuous evaluation
runs on them like on any other source.
"""

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.adapters.openai_agents import PayloadError, merge_trace, read_payload
from iofold.api import PayloadTooLarge
from iofold.pipeline import ingest_traces
from traces.ingest import source_key_for
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
        responses={200: AgentsIngestOut, 400: AgentsIngestOut, 413: OpenApiTypes.OBJECT},
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
        out = {"accepted": batch.accepted, "traces": 0, "created": 0, "updated": 0, "unchanged": 0}
        if not batch.trace_ids:
            code = status.HTTP_400_BAD_REQUEST if batch.errors else status.HTTP_200_OK
            return Response({**out, "errors": batch.errors}, status=code)
        workspace = request.workspace
        with transaction.atomic():
            # Rows locked so that two posts of one trace merge one after the other.
            stored = dict(
                Trace.objects.for_workspace(workspace)
                .select_for_update()
                .filter(
                    source_key=source_key_for(source=SOURCE),
                    external_id__in=batch.trace_ids,
                )
                .values_list("external_id", "data")
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
            result = ingest_traces(workspace=workspace, source=SOURCE, traces=traces)
        errors = batch.errors + [
            {"trace_id": traces[index]["id"], "error": error} for index, error in result.errors
        ]
        out.update(
            traces=len(traces),
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged + result.duplicates,
        )
        code = status.HTTP_400_BAD_REQUEST if result.failed == len(traces) else status.HTTP_200_OK
        return Response({**out, "errors": errors}, status=code)
