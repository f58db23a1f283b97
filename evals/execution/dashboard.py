"""The operations dashboard: automatic runs, failures and drift across a workspace."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Sum
from django.utils import timezone

from evals.execution.continuous import active_evals
from evals.execution.drift import Drift, workspace_drift
from evals.judging.spend import MonthSpend, month_spend
from evals.models import Eval, EvalExecution, VerdictDay
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
    pass_rate: float | None  # over RECENT_DAYS days (today and the days before it)
    pass_rate_by_day: list[tuple[date, float | None, int]]
    recent_failures: list[EvalExecution]
    drift: list[Drift]
    integrations: list  # integrations with their score-push status
    spend: MonthSpend  # judge calls this month, against the workspace's budget


RECENT_DAYS = 30


def dashboard(*, workspace, days: int = RECENT_DAYS, failures: int = 20) -> Dashboard:
    """Return the workspace's continuous-evaluation figures for the operations page."""
    # Whole days, today the last: the pass rate is counted per day (VerdictDay).
    first_day = timezone.localdate() - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first_day, time.min))
    traces = Trace.objects.for_workspace(workspace)
    by_day, executions_recent = pass_counts_by_day(workspace=workspace, since=first_day)
    series = [(day, passed / judged, judged) for day, passed, judged in by_day]
    judged = sum(n for _, _, n in by_day)
    passed = sum(p for _, p, _ in by_day)
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
        executions_recent=executions_recent,
        pass_rate=passed / judged if judged else None,
        pass_rate_by_day=series,
        recent_failures=recent_failures,
        drift=workspace_drift(workspace=workspace),
        spend=month_spend(workspace=workspace),
        integrations=list(
            Integration.objects.for_workspace(workspace)
            .present()
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


def pass_counts_by_day(*, workspace, since: date) -> tuple[list[tuple[date, int, int]], int]:
    """Return ``(day, passed, judged)`` of the active evals' verdicts per day from `since`
    (days with none judged left out), and how many verdicts they wrote, errors included.

    Read from the per-day counts the database keeps (``VerdictDay``), not the verdicts: a
    row per active eval and day, whatever the number of verdicts. An eval's verdicts
    count from the day each was first written, with its current outcome.
    """
    rows = (
        VerdictDay.objects.for_workspace(workspace)
        .filter(day__gte=since, eval__status=Eval.Status.ACTIVE)
        .values("day")
        .annotate(passed=Sum("passed"), failed=Sum("failed"), errored=Sum("errored"))
        .order_by("day")
    )
    by_day, total = [], 0
    for row in rows:
        judged = row["passed"] + row["failed"]
        total += judged + row["errored"]
        if judged:
            by_day.append((row["day"], row["passed"], judged))
    return by_day, total
