"""API: how an eval set's active eval agrees with labels given after its activation."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.execution import drift as drifts
from traces.models import EvalSet
from workspaces.access import WorkspaceScopedMixin


class DriftPointOut(serializers.Serializer):
    day = serializers.DateField()
    labels = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    cumulative = serializers.FloatField(allow_null=True)


class DriftOut(serializers.Serializer):
    eval = serializers.IntegerField(source="eval.pk")
    version = serializers.IntegerField(source="eval.version")
    activated_at = serializers.DateTimeField(source="eval.activated_at")
    baseline = serializers.FloatField(allow_null=True, help_text="Agreement at activation.")
    current = serializers.FloatField(
        allow_null=True, help_text="Agreement with the latest later labels (up to the window)."
    )
    labels = serializers.IntegerField(
        help_text="Traces first labelled after the activation, good or bad, with a verdict. "
        "Traces labelled before it (the labels it was measured on) never count, even when "
        "their label changed since."
    )
    unjudged = serializers.IntegerField(help_text="Such traces the eval has not judged.")
    errored = serializers.IntegerField(
        help_text="Such traces the eval errored on (sandbox error or timeout): not counted."
    )
    errored_trace_ids = serializers.ListField(child=serializers.IntegerField())
    drifting = serializers.BooleanField()
    margin = serializers.FloatField()
    points = DriftPointOut(many=True)


class EvalSetDriftOut(serializers.Serializer):
    eval_set = serializers.IntegerField(source="eval_set.pk")
    window = serializers.IntegerField()
    min_labels = serializers.IntegerField()
    drift = DriftOut(allow_null=True, help_text="None when the set has no active eval.")


@extend_schema(tags=["evals"])
class EvalSetDriftApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(responses={200: EvalSetDriftOut}, summary="Drift of the set's active eval")
    def get(self, request, pk: int):
        """The active eval's agreement with later labels, as on the set's drift page."""
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        out = {
            "eval_set": eval_set,
            "window": drifts.DRIFT_WINDOW,
            "min_labels": drifts.DRIFT_MIN_LABELS,
            "drift": drifts.eval_set_drift(eval_set=eval_set),
        }
        return Response(EvalSetDriftOut(out).data)
