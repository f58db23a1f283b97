"""API: eval versions after generation: lineage, state changes, edits, tests, diffs,
exports and refinement. The comparison matrix has its own module (evals.api.matrix)."""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import renderers, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.api.generation import EvalDetailOut, EvalOut, GenerationOut
from evals.exceptions import EvalError
from evals.execution.batch import batch_outcome
from evals.generation import refinement
from evals.metrics.measure import mark_out_of_date
from evals.models import Eval, EvalRun
from evals.versions import display, export, selectors
from evals.versions import services as version_services
from iofold.api import LOCATION, BodyIn
from iofold.lib.fields import whole_number
from traces.models import EvalSet
from workspaces.access import WorkspaceScopedMixin

# --- serializers ------------------------------------------------------------------------


class EvalVersionOut(EvalOut):
    parent_version = serializers.IntegerField(
        allow_null=True, read_only=True, help_text="Version number of the parent, if any."
    )
    depth = serializers.IntegerField(
        read_only=True, help_text="Steps from the root of the lineage (0: no parent)."
    )

    class Meta(EvalOut.Meta):
        fields = [*EvalOut.Meta.fields, "parent_version", "depth"]


class EvalSetRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class VersionsOut(serializers.Serializer):
    eval_set = EvalSetRefOut()
    active = serializers.IntegerField(allow_null=True, help_text="Id of the active version.")
    versions = EvalVersionOut(many=True, help_text="Every version, newest first.")


class ActivateOut(serializers.Serializer):
    eval = EvalOut()
    previous_active = serializers.IntegerField(
        allow_null=True, help_text="The version that was active before, now a draft."
    )
    rollback = serializers.BooleanField(help_text="True when an older version was re-activated.")


class EditIn(BodyIn):
    code = serializers.CharField(trim_whitespace=False, max_length=200_000)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class EvalRunOut(serializers.ModelSerializer):
    summary = serializers.SerializerMethodField(
        help_text="Totals once the run succeeded (null before): gate CI on failed, errors, invalid."
    )
    results = serializers.SerializerMethodField(
        help_text=(
            "Per-trace verdicts once the run succeeded, in the order sent; null before, and "
            "for runs over more than 1,000 stored traces (page /evals/<id>/executions/)."
        )
    )
    agreement = serializers.FloatField(
        source="eval.agreement",
        read_only=True,
        allow_null=True,
        help_text="The version's headline agreement (re-measured when a test run finishes).",
    )

    class Meta:
        model = EvalRun
        fields = [
            "id",
            "eval",
            "trigger",
            "status",
            "total",
            "done",
            "passed",
            "failed",
            "errors",
            "error",
            "judge_calls",
            "cache_hits",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "unpriced_calls",
            "judge_model",
            "agreement",
            "summary",
            "results",
            "created_at",
            "started_at",
            "finished_at",
        ]
        extra_kwargs = {
            "cost_usd": {
                "help_text": "Dollars the run's judge calls cost, not counting unpriced_calls."
            },
            "unpriced_calls": {
                "help_text": (
                    "Of judge_calls, those to a model with no price (IOFOLD_LLM_PRICES has "
                    "none for judge_model): their cost is unknown, not $0, and not in cost_usd."
                )
            },
            "judge_model": {"help_text": "The model the run's judge calls went to."},
        }

    @extend_schema_field({"type": "object", "nullable": True})
    def get_summary(self, run) -> dict | None:
        outcome = batch_outcome(run) if run.trigger == EvalRun.Trigger.API else None
        return outcome[0] if outcome else None

    @extend_schema_field({"type": "array", "items": {"type": "object"}, "nullable": True})
    def get_results(self, run) -> list | None:
        outcome = batch_outcome(run) if run.trigger == EvalRun.Trigger.API else None
        return outcome[1] if outcome else None


class EditOut(serializers.Serializer):
    eval = EvalDetailOut(help_text="The new draft version.")
    run = EvalRunOut(help_text="Its test run on the labelled traces; poll it.")


class CodeProblemOut(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class CodeProblemsOut(serializers.Serializer):
    detail = serializers.CharField()
    problems = CodeProblemOut(many=True)


class DetailOut(serializers.Serializer):
    detail = serializers.CharField()


class VersionRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()


class DiffOut(serializers.Serializer):
    a = VersionRefOut()
    b = VersionRefOut()
    same = serializers.BooleanField()
    unified = serializers.CharField(help_text="Unified diff from a's code to b's.")


class ExportLabelOut(serializers.Serializer):
    trace_id = serializers.IntegerField()
    external_id = serializers.CharField()
    source = serializers.CharField()
    label = serializers.CharField(allow_null=True)
    feedback = serializers.ListField(child=serializers.DictField())
    trace = serializers.JSONField()


class ExportVersionOut(serializers.Serializer):
    version = serializers.IntegerField()
    parent_version = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    origin = serializers.CharField()
    provider = serializers.CharField()
    model = serializers.CharField()
    prompt_version = serializers.CharField()
    agreement = serializers.FloatField(allow_null=True)
    labels_tested = serializers.IntegerField()
    metrics = serializers.JSONField()
    cost_usd = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    activated_at = serializers.DateTimeField(allow_null=True)
    code = serializers.CharField()


class EvalSetExportOut(serializers.Serializer):
    format = serializers.CharField(help_text=f"Always {export.EXPORT_FORMAT!r}.")
    eval_set = serializers.DictField()
    labels = ExportLabelOut(many=True)
    versions = ExportVersionOut(many=True)


class PythonRenderer(renderers.BaseRenderer):
    """Lets clients ask for ``text/x-python``; the view writes the file itself."""

    media_type = "text/x-python"
    format = "py"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, str | bytes) else str(data)


# --- helpers ------------------------------------------------------------------------------


def _eval_or_404(view, pk: int) -> Eval:
    qs = Eval.objects.for_workspace(view.request.workspace).select_related("eval_set", "parent")
    return get_object_or_404(qs, pk=pk)


ERRORS = {400: DetailOut, 503: DetailOut}

# --- views: one eval set ----------------------------------------------------------------


@extend_schema(tags=["evals"])
class EvalSetVersionsApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(responses={200: VersionsOut}, summary="Every version of an eval set")
    def get(self, request, pk: int):
        """Versions of the set, newest first, with their parent and depth in the lineage."""
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        history = mark_out_of_date(selectors.versions_of(eval_set))
        for v in history:
            v.parent_version = v.parent.version if v.parent_id else None
        active = next((v.pk for v in history if v.status == Eval.Status.ACTIVE), None)
        out = {
            "eval_set": {"id": eval_set.pk, "name": eval_set.name},
            "active": active,
            "versions": list(reversed(history)),
        }
        return Response(VersionsOut(out).data)


@extend_schema(tags=["evals"])
class EvalSetDiffApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(
        parameters=[
            OpenApiParameter("a", int, description="Version number (default: the one before b)"),
            OpenApiParameter("b", int, description="Version number (default: the newest)"),
        ],
        responses={200: DiffOut, 404: DetailOut},
        summary="Diff the code of two versions",
    )
    def get(self, request, pk: int):
        """A unified diff between two versions of the set, by version number."""
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        versions = list(
            Eval.objects.for_eval_set(eval_set).only("id", "version", "code").order_by("version")
        )
        by_number = {v.version: v for v in versions}
        a_raw, b_raw = request.query_params.get("a", ""), request.query_params.get("b", "")
        a_number, b_number = whole_number(a_raw), whole_number(b_raw)
        if (a_raw and a_number is None) or (b_raw and b_number is None):
            raise EvalError("a and b are version numbers.")
        if len(versions) < 2 and not (a_raw and b_raw):
            raise NotFound("The set has fewer than two versions.")
        a = by_number.get(a_number if a_raw else versions[-2].version)
        b = by_number.get(b_number if b_raw else versions[-1].version)
        if a is None or b is None:
            raise NotFound("No such version in this eval set.")
        out = {
            "a": {"id": a.pk, "version": a.version},
            "b": {"id": b.pk, "version": b.version},
            "same": a.code == b.code,
            "unified": display.unified(
                a.code, b.code, a_label=f"v{a.version}", b_label=f"v{b.version}"
            ),
        }
        return Response(DiffOut(out).data)


@extend_schema(tags=["evals"])
class EvalSetExportApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(responses={200: EvalSetExportOut}, summary="Export an eval set as JSON")
    def get(self, request, pk: int):
        """The set's criteria, every reviewer's labels with the traces, and all versions."""
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        response = HttpResponse(
            export.export_eval_set_json(eval_set), content_type="application/json"
        )
        response["Content-Disposition"] = f'attachment; filename="eval-set-{eval_set.pk}.json"'
        return response


# --- views: one version -------------------------------------------------------------------


class _EvalAction(WorkspaceScopedMixin, APIView):
    model = Eval


@extend_schema(tags=["evals"])
class EvalActivateApi(_EvalAction):
    @extend_schema(
        request=None,
        responses={200: ActivateOut, **ERRORS},
        summary="Activate a version (or roll back to an older one)",
    )
    def post(self, request, pk: int):
        """Make this the set's one active version; the previously active one becomes a draft."""
        done = version_services.activate_or_roll_back(
            eval=_eval_or_404(self, pk),
            user=request.user,
            reason=str(request.data.get("reason", "") if hasattr(request.data, "get") else ""),
        )
        previous = done.previous.pk if done.previous is not None else None
        out = {"eval": done.eval, "previous_active": previous, "rollback": done.rollback}
        return Response(ActivateOut(out).data)


@extend_schema(tags=["evals"])
class EvalArchiveApi(_EvalAction):
    @extend_schema(request=None, responses={200: EvalOut}, summary="Archive a version")
    def post(self, request, pk: int):
        """Retire the version; archiving the active one leaves the set with no active eval."""
        eval = version_services.archive_eval(eval=_eval_or_404(self, pk), user=request.user)
        return Response(EvalOut(eval).data)


@extend_schema(tags=["evals"])
class EvalRestoreApi(_EvalAction):
    @extend_schema(request=None, responses={200: EvalOut}, summary="Restore an archived version")
    def post(self, request, pk: int):
        """Bring an archived version back as a draft."""
        eval = version_services.restore_eval(eval=_eval_or_404(self, pk))
        return Response(EvalOut(eval).data)


@extend_schema(tags=["evals"])
class EvalEditApi(_EvalAction):
    @extend_schema(
        request=EditIn,
        responses={
            201: EditOut,
            400: OpenApiResponse(
                CodeProblemsOut, description="The code has problems; nothing was saved."
            ),
            503: DetailOut,
        },
        summary="Save edited code as a new version",
        parameters=[LOCATION],
    )
    def post(self, request, pk: int):
        """Validate and dry-run the code, save it as a new draft refined from this version,
        and start testing it on the labelled traces."""
        eval = _eval_or_404(self, pk)
        data = EditIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            edited = version_services.edit_eval_code(
                eval=eval,
                code=data.validated_data["code"],
                user=request.user,
                description=data.validated_data.get("description", ""),
            )
        except version_services.InvalidEvalCode as exc:
            problems = [{"line": p.line, "message": p.message} for p in exc.problems]
            out = {"detail": exc.message, "problems": problems}
            return Response(CodeProblemsOut(out).data, status=status.HTTP_400_BAD_REQUEST)
        run = version_services.test_again(eval=edited)
        out = {"eval": edited, "run": run}
        return Response(
            EditOut(out).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api-eval", args=[edited.pk])},
        )


@extend_schema(tags=["evals"])
class EvalTestApi(_EvalAction):
    @extend_schema(
        request=None,
        responses={202: EvalRunOut, **ERRORS},
        summary="Test a version again on the current labels",
    )
    def post(self, request, pk: int):
        """Start a run on the set's labelled traces; poll the returned run. When it
        finishes, the version's metrics are measured again."""
        eval = _eval_or_404(self, pk)
        run = version_services.test_again(eval=eval)
        return Response(EvalRunOut(run).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["evals"])
class EvalRunDetailApi(WorkspaceScopedMixin, APIView):
    model = EvalRun

    @extend_schema(responses={200: EvalRunOut}, summary="A test run's progress")
    def get(self, request, pk: int):
        """Status and counts of an eval run; final once status is succeeded or failed."""
        run = get_object_or_404(self.get_queryset().select_related("eval"), pk=pk)
        return Response(EvalRunOut(run).data)


@extend_schema(tags=["evals"])
class EvalRefineApi(_EvalAction):
    @extend_schema(
        request=None,
        responses={202: GenerationOut, **ERRORS},
        summary="Refine a version from the labels it contradicts",
    )
    def post(self, request, pk: int):
        """Queue a refinement; poll it at /generations/<id>/. Its result is the new version."""
        eval = _eval_or_404(self, pk)
        generation = refinement.start_refinement(eval=eval, user=request.user)
        return Response(GenerationOut(generation).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["evals"])
class EvalExportApi(_EvalAction):
    renderer_classes = [renderers.JSONRenderer, PythonRenderer]

    @extend_schema(
        responses={(200, "text/x-python"): OpenApiTypes.STR},
        summary="Export a version as a standalone Python script",
    )
    def get(self, request, pk: int):
        """A Python file defining eval_fn that judges JSONL traces by itself."""
        eval = _eval_or_404(self, pk)
        response = HttpResponse(export.export_eval_script(eval), content_type="text/x-python")
        response["Content-Disposition"] = f'attachment; filename="{export.eval_filename(eval)}"'
        return response
