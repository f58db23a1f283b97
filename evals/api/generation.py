"""API: start a generation, poll it, read eval versions and their executions."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.generation.services import start_generation
from evals.metrics.measure import label_changes_since_measured, mark_out_of_date
from evals.models import Eval, EvalExecution, Generation
from iofold.api import choice_param, id_param
from traces.models import EvalSet
from workspaces.access import WorkspaceScopedMixin

# --- serializers ------------------------------------------------------------------------


class GenerationOut(serializers.ModelSerializer):
    class Meta:
        model = Generation
        fields = [
            "id",
            "eval_set",
            "parent",
            "status",
            "stage",
            "provider",
            "model",
            "attempts",
            "error",
            "result",
            "created_at",
            "started_at",
            "finished_at",
        ]


class EvalOut(serializers.ModelSerializer):
    out_of_date = serializers.SerializerMethodField(
        help_text="True when a label of the set was given, changed or removed after the "
        "version's figures (agreement, kappa...) were measured: they are on old labels."
    )

    class Meta:
        model = Eval
        fields = [
            "id",
            "eval_set",
            "version",
            "parent",
            "status",
            "kind",
            "origin",
            "provider",
            "model",
            "prompt_version",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "kappa",
            "balanced_accuracy",
            "no_reliable_eval",
            "agreement",
            "labels_tested",
            "low_confidence",
            "low_confidence_reason",
            "description",
            "created_at",
            "activated_at",
            "out_of_date",
        ]

    def get_out_of_date(self, eval) -> bool:
        # A list marks its versions with one grouped query (mark_out_of_date) first.
        if not hasattr(eval, "labels_changed_since_measured"):
            mark_out_of_date([eval])
        return bool(eval.labels_changed_since_measured)


class EvalDetailOut(EvalOut):
    # Label changes since ``metrics`` were measured: above 0, the figures are out of date.
    labels_changed_since_measured = serializers.SerializerMethodField()

    class Meta(EvalOut.Meta):
        fields = [
            *EvalOut.Meta.fields,
            "code",
            "prompt",
            "metrics",
            "labels_changed_since_measured",
        ]

    def get_labels_changed_since_measured(self, eval) -> int:
        return label_changes_since_measured(eval)


class EvalExecutionOut(serializers.ModelSerializer):
    class Meta:
        model = EvalExecution
        fields = [
            "id",
            "trace",
            "run",
            "passed",
            "reason",
            "error",
            "duration_ms",
            "output",
            "created_at",
            "updated_at",
        ]


# --- views ------------------------------------------------------------------------------


class GenerateApi(WorkspaceScopedMixin, APIView):
    """Start generating an eval version for an eval set; poll the returned generation."""

    model = EvalSet

    @extend_schema(request=None, responses={202: GenerationOut})
    def post(self, request, pk: int):
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        generation = start_generation(eval_set=eval_set, user=request.user)
        return Response(GenerationOut(generation).data, status=status.HTTP_202_ACCEPTED)


class GenerationDetailApi(WorkspaceScopedMixin, generics.RetrieveAPIView):
    """A generation's status, stage, error and resulting eval version."""

    model = Generation
    serializer_class = GenerationOut


class EvalListApi(WorkspaceScopedMixin, generics.ListAPIView):
    """Eval versions of the workspace, newest first; filter with ?eval_set=<id>."""

    model = Eval
    serializer_class = EvalOut

    @extend_schema(
        parameters=[
            OpenApiParameter("eval_set", int),
            OpenApiParameter("status", str, enum=Eval.Status.values),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return None if page is None else mark_out_of_date(page)

    def get_queryset(self):
        qs = super().get_queryset().order_by("-created_at", "-id")
        if (eval_set := id_param(self.request, "eval_set")) is not None:
            qs = qs.filter(eval_set_id=eval_set)
        if (wanted := choice_param(self.request, "status", Eval.Status.values)) is not None:
            qs = qs.filter(status=wanted)
        return qs


class EvalDetailApi(WorkspaceScopedMixin, generics.RetrieveAPIView):
    """One eval version with its code, prompt and metrics."""

    model = Eval
    serializer_class = EvalDetailOut


class EvalExecutionListApi(WorkspaceScopedMixin, generics.ListAPIView):
    """An eval version's verdicts, one per trace; ?passed=true|false|error filters."""

    model = Eval
    serializer_class = EvalExecutionOut

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "passed",
                str,
                enum=["true", "false", "error"],
                description="The verdict: true is pass, false is fail, error is neither.",
            )
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        eval = get_object_or_404(super().get_queryset(), pk=self.kwargs["pk"])
        qs = EvalExecution.objects.for_workspace(self.request.workspace).filter(eval=eval)
        passed = self.request.query_params.get("passed")
        if passed == "true":
            qs = qs.filter(passed=True)
        elif passed == "false":
            qs = qs.filter(passed=False)
        elif passed == "error":
            qs = qs.filter(passed__isnull=True)
        return qs.order_by("trace_id")
