"""The operations dashboard: automatic runs, failures and drift across a workspace."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from evals.execution.continuous import active_evals
from evals.execution.drift import Drift, workspace_drift
from evals.judging.spend import MonthSpend, month_spend
from evals.models import Eval, EvalExecution
from integrations.adapters import push_back_kinds
from integrations.models import Integration
from traces.models import Feedback, Trace

logger = logging.getLogger(__name__)


@dataclass
class Dashboard:
    traces: int
    traces_recent: int  # ingested in the last RECENT_DAYS days
    labelled: int
    evals_active: int
    executions_recent: int
    pass_rate: float | None  # over RECENT_DAYS days
    pass_rate_by_day: list[tuple[date, float | None, int]]
    recent_failures: list[EvalExecution]
    drift: list[Drift]
    integrations: list  # integrations with their score-push status
    spend: MonthSpend  # judge calls this month, against the workspace's budget


RECENT_DAYS = 30


def dashboard(*, workspace, days: int = RECENT_DAYS, failures: int = 20) -> Dashboard:
    """Return the workspace's continuous-evaluation figures for the operations page."""
    since = timezone.now() - timedelta(days=days)
    traces = Trace.objects.for_workspace(workspace)
    executions = EvalExecution.objects.for_workspace(workspace).filter(
        created_at__gte=since, eval__status=Eval.Status.ACTIVE
    )
    by_day = (
        executions.exclude(passed__isnull=True)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(total=Count("id"), passed=Count("id", filter=Q(passed=True)))
        .order_by("day")
    )
    series = [(row["day"], row["passed"] / row["total"], row["total"]) for row in by_day]
    judged = sum(n for _, _, n in series)
    passed = sum(rate * n for _, rate, n in series)
    recent_failures = list(
        EvalExecution.objects.for_workspace(workspace)
        .filter(passed=False)
        .select_related("trace", "eval__eval_set")
        .only(
            "id",
            "reason",
            "created_at",
            "trace__id",
            "trace__name",
            "trace__external_id",
            "trace__timestamp",
            "eval__id",
            "eval__version",
            "eval__eval_set__id",
            "eval__eval_set__name",
        )
        .order_by("-created_at", "-id")[:failures]
    )
    return Dashboard(
        traces=traces.count(),
        traces_recent=traces.filter(created_at__gte=since).count(),
        labelled=Feedback.objects.for_workspace(workspace).values("trace_id").distinct().count(),
        evals_active=len(active_evals(workspace_id=workspace.pk)),
        executions_recent=executions.count(),
        pass_rate=passed / judged if judged else None,
        pass_rate_by_day=series,
        recent_failures=recent_failures,
        drift=workspace_drift(workspace=workspace),
        spend=month_spend(workspace=workspace),
        integrations=list(
            Integration.objects.for_workspace(workspace)
            .filter(kind__in=push_back_kinds())
            .only(
                "id",
                "name",
                "kind",
                "scores_pushed_at",
                "scores_pushed_count",
                "score_push_failures",
                "score_push_error",
                "score_push_failed_at",
            )
        ),
    )
