"""API: the comparison matrix of an eval set's versions, and one cell of it."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.api.versions import VersionRefOut
from evals.matrix.selectors import MATRIX_PAGE_SIZE, comparison_matrix, matrix_cell
from evals.matrix.types import MatrixCell, MatrixFilters, MatrixRow, VersionColumn
from evals.models import Eval
from iofold.api import IdField
from traces.models import EvalSet, Trace
from workspaces.access import WorkspaceScopedMixin


class MatrixQueryIn(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=200, default=MATRIX_PAGE_SIZE)
    disagreements = serializers.BooleanField(
        default=False, help_text="Only traces where a shown version contradicts or errs."
    )
    source = serializers.ChoiceField(choices=Trace.Source.choices, required=False)
    v = serializers.ListField(
        child=IdField(),
        required=False,
        help_text="Eval version ids to show (repeat the parameter); default: the newest 20.",
    )

    def get_fields(self):
        # "from" and "to" are Python keywords, so they cannot be class attributes.
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False, help_text="Traces on or after.")
        fields["to"] = serializers.DateField(required=False, help_text="Traces on or before.")
        return fields

    def filters(self) -> MatrixFilters:
        data = self.validated_data
        return MatrixFilters(
            only_disagreements=data["disagreements"],
            date_from=data.get("from"),
            date_to=data.get("to"),
            source=data.get("source", ""),
            version_ids=tuple(data.get("v") or ()),
        )


class MatrixColumnOut(serializers.Serializer):
    eval = serializers.IntegerField()
    version = serializers.IntegerField()
    status = serializers.CharField()
    agreement = serializers.FloatField(allow_null=True)
    agree = serializers.IntegerField()
    contradict = serializers.IntegerField()
    errors = serializers.IntegerField()
    not_run = serializers.IntegerField(help_text="Labelled traces in range it has no verdict on.")


class TraceRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    name = serializers.CharField()
    timestamp = serializers.DateTimeField()
    source = serializers.CharField()


class MatrixCellOut(serializers.Serializer):
    eval = serializers.IntegerField()
    state = serializers.ChoiceField(
        choices=["agree", "contradict", "error", "neutral", "missing"],
        help_text="The verdict against the label; missing: never ran on this trace.",
    )
    passed = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField()
    error = serializers.CharField()
    duration_ms = serializers.FloatField(allow_null=True)


class MatrixRowOut(serializers.Serializer):
    trace = TraceRefOut()
    label = serializers.ChoiceField(choices=["positive", "negative", "neutral"])
    notes = serializers.ListField(child=serializers.CharField())
    cells = MatrixCellOut(many=True, help_text="One per column, in column order.")


class MatrixOut(serializers.Serializer):
    count = serializers.IntegerField(help_text="Labelled traces matching the filters.")
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    page_size = serializers.IntegerField()
    columns = MatrixColumnOut(many=True, help_text="Versions, oldest first.")
    results = MatrixRowOut(many=True, help_text="Labelled traces, newest first.")


class CellVerdictOut(serializers.Serializer):
    passed = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField()
    error = serializers.CharField()
    duration_ms = serializers.FloatField()
    output = serializers.CharField(help_text="What eval_fn printed.")
    updated_at = serializers.DateTimeField()


class CellTraceOut(TraceRefOut):
    data = serializers.JSONField(help_text="The normalised trace the eval received.")


class CellOut(serializers.Serializer):
    eval = VersionRefOut()
    trace = CellTraceOut()
    label = serializers.CharField(allow_null=True, help_text="Majority label; null on a tie.")
    notes = serializers.ListField(child=serializers.CharField())
    state = serializers.CharField()
    verdict = CellVerdictOut(allow_null=True)


@extend_schema(tags=["evals"])
class EvalSetMatrixApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(
        parameters=[MatrixQueryIn],
        responses={200: MatrixOut},
        summary="The comparison matrix: labelled traces by versions",
    )
    def get(self, request, pk: int):
        """One page of labelled traces with each version's verdict against the label."""
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        query = MatrixQueryIn(data=request.query_params)
        query.is_valid(raise_exception=True)
        matrix = comparison_matrix(
            eval_set=eval_set,
            filters=query.filters(),
            page=query.validated_data["page"],
            page_size=query.validated_data["page_size"],
        )
        out = {
            "count": matrix.total_rows,
            "page": matrix.page,
            "pages": matrix.pages,
            "page_size": matrix.page_size,
            "columns": [_column(c) for c in matrix.columns],
            "results": [_row(row) for row in matrix.rows],
        }
        return Response(MatrixOut(out).data)


def _column(column: VersionColumn) -> dict:
    return {
        "eval": column.eval.pk,
        "version": column.eval.version,
        "status": column.eval.status,
        "agreement": column.eval.agreement,
        "agree": column.agree,
        "contradict": column.contradict,
        "errors": column.errors,
        "not_run": column.not_run,
    }


def _row(row: MatrixRow) -> dict:
    return {
        "trace": row.trace,
        "label": row.label,
        "notes": row.notes,
        "cells": [_cell(c) for c in row.cells],
    }


def _cell(cell: MatrixCell) -> dict:
    ex = cell.execution
    return {
        "eval": cell.eval_id,
        "state": cell.state,
        "passed": ex.passed if ex else None,
        "reason": ex.reason if ex else "",
        "error": ex.error if ex else "",
        "duration_ms": ex.duration_ms if ex else None,
    }


@extend_schema(tags=["evals"])
class EvalCellApi(WorkspaceScopedMixin, APIView):
    model = Eval

    @extend_schema(responses={200: CellOut}, summary="One version's verdict on one trace")
    def get(self, request, pk: int, trace_pk: int):
        """A matrix cell: the label and notes, the verdict, its reason, error and time."""
        eval = get_object_or_404(self.get_queryset().select_related("eval_set"), pk=pk)
        trace = get_object_or_404(Trace.objects.for_workspace(request.workspace), pk=trace_pk)
        detail = matrix_cell(eval=eval, trace=trace)
        out = {
            "eval": {"id": eval.pk, "version": eval.version},
            "trace": trace,
            "label": detail.label,
            "notes": detail.notes,
            "state": detail.state,
            "verdict": detail.execution,
        }
        return Response(CellOut(out).data)
