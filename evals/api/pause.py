"""API: whether an eval set's continuous evaluation is paused (its circuit breaker), and
resuming it."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.execution import breaker, continuous
from traces.models import EvalSet
from workspaces.access import WorkspaceScopedMixin


class PauseOut(serializers.Serializer):
    eval = serializers.IntegerField(source="eval_id", help_text="The version that tripped it.")
    version = serializers.IntegerField(source="eval.version")
    reason = serializers.CharField()
    message = serializers.SerializerMethodField()
    failures = serializers.IntegerField(help_text="Errors and timeouts among the window.")
    timeouts = serializers.IntegerField()
    window = serializers.IntegerField(help_text="The latest continuous verdicts read.")
    example_trace_ids = serializers.ListField(child=serializers.IntegerField())
    paused_at = serializers.DateTimeField(source="created_at")

    def get_message(self, pause) -> str:
        return f"Paused: {pause.reason}"


class ContinuousOut(serializers.Serializer):
    eval_set = serializers.IntegerField()
    paused = serializers.BooleanField()
    pause = PauseOut(allow_null=True, help_text="None while new traces are judged.")
    window = serializers.IntegerField(help_text="Verdicts the breaker reads.")
    min_failures = serializers.IntegerField(help_text="Failures needed, at least half of them.")


def _out(eval_set: EvalSet) -> dict:
    pause = breaker.pause_of(eval_set)
    return ContinuousOut(
        {
            "eval_set": eval_set.pk,
            "paused": pause is not None,
            "pause": pause,
            "window": breaker.WINDOW,
            "min_failures": breaker.MIN_FAILURES,
        }
    ).data


@extend_schema(tags=["evals"])
class EvalSetContinuousApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(responses={200: ContinuousOut}, summary="Continuous evaluation of a set")
    def get(self, request, pk: int):
        """Whether new traces are judged, or paused by the breaker and why."""
        return Response(_out(get_object_or_404(self.get_queryset(), pk=pk)))


@extend_schema(tags=["evals"])
class EvalSetResumeApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(request=None, responses={200: ContinuousOut}, summary="Resume it")
    def post(self, request, pk: int):
        """Resume a paused set: the traces that waited are judged, then new ones again."""
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        continuous.resume(eval_set=eval_set, user=request.user)
        return Response(_out(eval_set))
