"""Operations: how active evals do on new traces, and whether they drift from the labels."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evals.charts import line_chart
from evals.execution import continuous
from evals.execution import dashboard as dashboards
from evals.execution import drift as drifts
from traces.models import EvalSet
from workspaces.access import workspace_view


def _drift_chart(drift: drifts.Drift, *, width: int = 600, height: int = 160):
    guides = []
    if drift.baseline is not None:
        guides.append((drift.baseline, "at activation"))
        guides.append((max(0.0, drift.baseline - drift.margin), "warning below"))
    series = [(p.day, p.agreement, p.labels) for p in drift.points]
    return line_chart(series, width=width, height=height, guides=guides)


@workspace_view
def dashboard(request):
    """Traces in, labels, active evals, pass rate over time, recent failures and drift."""
    data = dashboards.dashboard(workspace=request.workspace)
    ctx = {
        "data": data,
        "days": dashboards.RECENT_DAYS,
        "pass_chart": line_chart(data.pass_rate_by_day),
        "drifts": [(d, _drift_chart(d, width=360, height=110)) for d in data.drift],
    }
    return render(request, "evals/dashboard.html", ctx)


@workspace_view
def drift(request, pk: int):
    """An eval set's active eval against labels given after its activation, over time."""
    eval_set = get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)
    drift = drifts.eval_set_drift(eval_set=eval_set)
    ctx = {
        "eval_set": eval_set,
        "drift": drift,
        "chart": _drift_chart(drift) if drift is not None else None,
        "min_labels": drifts.DRIFT_MIN_LABELS,
        "window": drifts.DRIFT_WINDOW,
    }
    return render(request, "evals/dashboard_drift.html", ctx)


@require_POST
@workspace_view
def resume_continuous(request, pk: int):
    """Resume a paused eval set's continuous evaluation; its held traces are judged."""
    eval_set = get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)
    held = continuous.resume(eval_set=eval_set, user=request.user)
    if held is None:
        messages.info(request, "Continuous evaluation of this set was not paused.")
    else:
        sent = f" {held} waiting run{'s' if held != 1 else ''} sent to the workers." if held else ""
        messages.success(request, f"Continuous evaluation resumed.{sent}")
    return redirect(eval_set)
