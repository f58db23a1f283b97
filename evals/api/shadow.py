"""API: shadow A/B of eval versions (compare, put in shadow, promote)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from evals.api.generation import EvalOut
from evals.api.versions import ERRORS, ActivateOut, _eval_or_404
from evals.execution.shadow import compare_shadow, shadow_pair
from evals.models import Eval
from evals.versions import services as version_services
from traces.models import EvalSet
from workspaces.access import WorkspaceScopedMixin


def _reason(request) -> str:
    return str(request.data.get("reason", "")) if hasattr(request.data, "get") else ""


@extend_schema(tags=["evals"])
class EvalSetShadowApi(WorkspaceScopedMixin, APIView):
    model = EvalSet

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT}, summary="Compare the active version and its shadow"
    )
    def get(self, request, pk: int):
        """Agreement with later labels, disagreement, sandbox time, McNemar and the interval."""
        eval_set = get_object_or_404(self.get_queryset(), pk=pk)
        active, shadow = shadow_pair(eval_set)
        if active is None or shadow is None:
            return Response(
                {
                    "active": active.pk if active else None,
                    "shadow": shadow.pk if shadow else None,
                    "comparison": None,
                }
            )
        comparison = compare_shadow(active=active, shadow=shadow)
        return Response(
            {"active": active.pk, "shadow": shadow.pk, "comparison": comparison.as_dict()}
        )


class _EvalAction(WorkspaceScopedMixin, APIView):
    model = Eval


@extend_schema(tags=["evals"])
class EvalShadowApi(_EvalAction):
    @extend_schema(request=None, responses={200: EvalOut, **ERRORS}, summary="Run in shadow")
    def post(self, request, pk: int):
        """Judge new traces beside the active version without sending the verdicts anywhere."""
        eval = version_services.shadow_eval(
            eval=_eval_or_404(self, pk), user=request.user, reason=_reason(request)
        )
        return Response(EvalOut(eval).data)


@extend_schema(tags=["evals"])
class EvalPromoteApi(_EvalAction):
    @extend_schema(
        request=None,
        responses={200: ActivateOut, **ERRORS},
        summary="Promote the shadow when it wins beyond noise",
    )
    def post(self, request, pk: int):
        """Activate the shadow; refused (400) unless it beats the active version beyond noise."""
        done = version_services.promote_shadow(
            eval=_eval_or_404(self, pk), user=request.user, reason=_reason(request)
        )
        previous = done.previous.pk if done.previous is not None else None
        out = {"eval": done.eval, "previous_active": previous, "rollback": done.rollback}
        return Response(ActivateOut(out).data)
