"""API: run an eval on a batch of traces for CI gates: a run to poll, or verdicts at once."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.api.versions import DetailOut, EvalRunOut
from evals.execution.batch import (
    MAX_BATCH_TRACE_IDS,
    MAX_BATCH_TRACES,
    MAX_WAIT_TRACES,
    run_batch,
    start_batch,
    wait_limits,
)
from evals.models import Eval
from iofold.api import BodyIn, IdField
from workspaces.access import WorkspaceScopedMixin


class BatchRunIn(BodyIn):
    traces = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        max_length=MAX_BATCH_TRACES,
        help_text="Normalised traces to judge; they are not stored.",
    )
    trace_ids = serializers.ListField(
        child=IdField(),
        required=False,
        max_length=MAX_BATCH_TRACE_IDS,
        help_text="Ids of this workspace's traces; their verdicts are stored as executions.",
    )
    wait = serializers.BooleanField(
        default=False,
        help_text=(
            f"Judge within the request and answer with the verdicts (at most {MAX_WAIT_TRACES} "
            "traces). Without it the batch is queued and the answer is a run to poll."
        ),
    )

    def validate(self, data):
        if bool(data.get("traces")) == bool(data.get("trace_ids")):
            raise serializers.ValidationError("Send either “traces” or “trace_ids”, not both.")
        size = len(data.get("traces") or data.get("trace_ids"))
        if data["wait"] and size > MAX_WAIT_TRACES:
            raise serializers.ValidationError(
                f"At most {MAX_WAIT_TRACES} traces with “wait”; leave it out to get a run to "
                "poll instead."
            )
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
        # 503: with "wait", the sandbox could not start this time; retrying can help.
        responses={202: EvalRunOut, 200: BatchRunOut, 503: DetailOut},
        summary="Run an eval version on traces: a run to poll, or verdicts with wait",
    )
    def post(self, request, pk: int):
        """Queue a batch run of this eval version (202, poll /eval-runs/<id>/), or judge a
        small batch within the request with ``"wait": true`` (200 with the verdicts)."""
        eval = get_object_or_404(self.get_queryset().select_related("eval_set"), pk=pk)
        data = BatchRunIn(data=request.data)
        data.is_valid(raise_exception=True)
        traces = data.validated_data.get("traces")
        trace_ids = data.validated_data.get("trace_ids")
        if not data.validated_data["wait"]:
            run = start_batch(eval=eval, traces=traces, trace_ids=trace_ids)
            location = reverse("api-eval-run-detail", kwargs={"pk": run.pk})
            return Response(
                EvalRunOut(run).data,
                status=status.HTTP_202_ACCEPTED,
                headers={"Location": location},
            )
        batch = run_batch(eval=eval, traces=traces, trace_ids=trace_ids, limits=wait_limits())
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
