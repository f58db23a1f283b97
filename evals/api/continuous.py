"""API: run an eval on a batch of traces and get verdicts back, for CI gates."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.execution.batch import MAX_BATCH_TRACES, run_batch
from evals.models import Eval
from workspaces.access import WorkspaceScopedMixin


class BatchRunIn(serializers.Serializer):
    traces = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        max_length=MAX_BATCH_TRACES,
        help_text="Normalised traces to judge; they are not stored.",
    )
    trace_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=MAX_BATCH_TRACES,
        help_text="Ids of this workspace's traces; their verdicts are stored as executions.",
    )

    def validate(self, data):
        if bool(data.get("traces")) == bool(data.get("trace_ids")):
            raise serializers.ValidationError("Send either “traces” or “trace_ids”, not both.")
        return data


class VerdictOut(serializers.Serializer):
    index = serializers.IntegerField()
    trace_id = serializers.CharField()
    passed = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField()
    error = serializers.CharField()
    duration_ms = serializers.FloatField()


class SummaryOut(serializers.Serializer):
    total = serializers.IntegerField()
    passed = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Traces the eval judged bad: gate CI on this.")
    errors = serializers.IntegerField(help_text="Traces the eval could not judge.")
    invalid = serializers.IntegerField(help_text="Sent traces that are not valid traces.")
    ok = serializers.BooleanField(help_text="True when nothing failed, errored or was invalid.")


class BatchRunOut(serializers.Serializer):
    eval = serializers.DictField()
    summary = SummaryOut()
    results = VerdictOut(many=True)


@extend_schema(tags=["evals"])
class EvalBatchRunApi(WorkspaceScopedMixin, APIView):
    model = Eval

    @extend_schema(
        request=BatchRunIn,
        responses={200: BatchRunOut},
        summary="Run an eval version on traces now and return per-trace verdicts",
    )
    def post(self, request, pk: int):
        """Judge the given traces (or stored trace ids) with this eval version, synchronously."""
        eval = get_object_or_404(self.get_queryset().select_related("eval_set"), pk=pk)
        data = BatchRunIn(data=request.data)
        data.is_valid(raise_exception=True)
        batch = run_batch(
            eval=eval,
            traces=data.validated_data.get("traces"),
            trace_ids=data.validated_data.get("trace_ids"),
        )
        out = {
            "eval": {
                "id": eval.pk,
                "version": eval.version,
                "status": eval.status,
                "eval_set": {"id": eval.eval_set_id, "name": eval.eval_set.name},
            },
            "summary": batch.summary(),
            "results": batch.results,
        }
        return Response(BatchRunOut(out).data)
