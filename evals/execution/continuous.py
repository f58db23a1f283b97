"""Continuous evaluation: active evals judge new traces, and drift from later human labels.

New or changed traces arrive through ``iofold.pipeline.ingest_traces`` (sync, upload, API,
webhook), which stores them and then calls ``queue_automatic_runs`` here; that enqueues
``run_automatic_evals_task``, which calls ``start_automatic_runs``. Each matching active
eval gets one automatic run on the ``execute`` queue; when it finishes, its verdicts go to
Langfuse (``scores``).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone

import sandbox
from evals.exceptions import EvalError
from evals.execution.runs import execute_run, run_eval_now, start_run
from evals.execution.scores import PushReport, push_run_scores
from evals.metrics.agreement import agreement
from evals.models import Eval, EvalExecution, EvalRun, RunStatus
from evals.queue import enqueue_automatic_runs, enqueue_run
from evals.sandboxing import sandbox_limits
from integrations.adapters.base import validate_normalised_trace
from integrations.models import Integration
from traces.ingest import canonical_trace
from traces.models import EvalSet, Feedback, Trace
from traces.selectors import resolve_label

logger = logging.getLogger(__name__)

# Agreement at activation needs this many later labels before drift is judged at all.
DRIFT_MIN_LABELS = 10
# The "current" agreement is taken over the most recent labels, up to this many.
DRIFT_WINDOW = 50
# A batch run answers within one request: one sandbox call over at most this many traces.
MAX_BATCH_TRACES = 1000


# --- automatic runs -----------------------------------------------------------------------


def active_evals(*, workspace_id: int) -> list[Eval]:
    """Return the workspace's active evals of eval sets that are not archived."""
    return list(
        Eval.objects.for_workspace(workspace_id)
        .filter(status=Eval.Status.ACTIVE, eval_set__archived_at__isnull=True)
        .select_related("eval_set")
        .order_by("eval_set_id")
    )


def traces_to_judge(*, eval: Eval, trace_ids: Sequence[int]) -> list[int]:
    """Return the ids among `trace_ids` in the eval's set that it has not judged as they are.

    A trace belongs to a ``filter`` set when the saved filter matches it, and to a
    ``manual`` set only when it was picked. A trace already judged by this version since
    it last changed is left out, so a repeated notification runs nothing twice.
    """
    if not trace_ids:
        return []
    up_to_date = EvalExecution.objects.filter(
        eval=eval, trace=OuterRef("pk"), updated_at__gte=OuterRef("updated_at")
    )
    matching = (
        Trace.objects.in_eval_set(eval.eval_set)
        .filter(pk__in=list(trace_ids))
        .exclude(Q(pk__in=Subquery(up_to_date.values("trace_id"))))
        .order_by("timestamp", "id")
    )
    return list(matching.values_list("id", flat=True))


def queue_automatic_runs(*, workspace_id: int, trace_ids: Sequence[int]) -> None:
    """Queue the automatic runs of active evals on new or changed traces."""
    # Most ingestions happen before any eval is active: skip the broker round trip.
    active = Eval.objects.for_workspace(workspace_id).filter(status=Eval.Status.ACTIVE)
    if trace_ids and active.exists():
        enqueue_automatic_runs(workspace_id, list(trace_ids))


def start_automatic_runs(
    *, workspace_id: int, trace_ids: Sequence[int], enqueue: bool = True
) -> list[EvalRun]:
    """Start an automatic run of every matching active eval over the new traces.

    Each run is enqueued on commit on the ``execute`` queue (``run_automatic_eval_task``),
    which executes it and then pushes its scores. With ``enqueue=False`` nothing is
    queued and the caller executes the runs (``execute_automatic_run``).
    """
    ids = list(dict.fromkeys(int(pk) for pk in trace_ids))
    runs: list[EvalRun] = []
    for eval in active_evals(workspace_id=workspace_id):
        todo = traces_to_judge(eval=eval, trace_ids=ids)
        if not todo:
            continue
        with transaction.atomic():
            run = start_run(
                eval=eval, trace_ids=todo, trigger=EvalRun.Trigger.AUTOMATIC, enqueue=False
            )
            if enqueue:
                transaction.on_commit(lambda pk=run.pk: enqueue_run(pk, automatic=True))
        runs.append(run)
    if runs:
        logger.info(
            "automatic eval runs started workspace=%s runs=%d traces=%d",
            workspace_id,
            len(runs),
            len(ids),
        )
    return runs


def execute_automatic_run(*, run_id: int) -> PushReport | None:
    """Execute an automatic run, then send its verdicts to Langfuse when its set asks to.

    Safe to call again: execution skips judged traces and score ids are deterministic.
    """
    run = execute_run(run_id=run_id)
    if run is None or run.status != RunStatus.SUCCEEDED:
        return None
    return push_run_scores(run=run)


# --- batch runs for CI ----------------------------------------------------------------------


@dataclass
class BatchRun:
    """Per-trace verdicts of one batch run, in the order the traces were given."""

    results: list[dict] = field(default_factory=list)
    invalid: int = 0

    def summary(self) -> dict:
        passed = sum(1 for r in self.results if r["passed"] is True and not r["error"])
        failed = sum(1 for r in self.results if r["passed"] is False and not r["error"])
        errors = sum(1 for r in self.results if r["passed"] is None and not r["invalid"])
        return {
            "total": len(self.results),
            "passed": passed,
            "failed": failed,
            "errors": errors,
            "invalid": self.invalid,
            "ok": failed == 0 and errors == 0 and self.invalid == 0,
        }


def run_batch(
    *,
    eval: Eval,
    traces: Sequence[dict] | None = None,
    trace_ids: Sequence[int] | None = None,
) -> BatchRun:
    """Judge sent traces (not stored) or stored trace ids (verdicts stored) right now.

    Invalid sent traces get an error result instead of failing the whole batch. Raises
    EvalError when the sandbox cannot run, or when ids name no trace of the workspace.
    """
    batch = BatchRun()
    if trace_ids:
        wanted = list(dict.fromkeys(int(pk) for pk in trace_ids))
        stored = Trace.objects.for_workspace(eval.workspace_id).in_bulk(wanted)
        missing = [pk for pk in wanted if pk not in stored]
        if missing:
            shown = ", ".join(str(pk) for pk in missing[:10])
            raise EvalError(f"No trace with id {shown} in this workspace.")
        executions = {
            e.trace_id: e
            for e in run_eval_now(
                eval=eval, traces=[stored[pk] for pk in wanted], trigger=EvalRun.Trigger.API
            )
        }
        for index, pk in enumerate(wanted):
            e = executions[pk]
            batch.results.append(
                _verdict(index, stored[pk].external_id, e.passed, e.reason, e.error, e.duration_ms)
            )
        return batch
    valid: list[tuple[int, dict]] = []
    for index, raw in enumerate(traces or []):
        problems = validate_normalised_trace(raw)
        if problems:
            batch.invalid += 1
            trace_id = raw.get("id") if isinstance(raw, dict) else None
            result = _verdict(index, str(trace_id or ""), None, "", "; ".join(problems), 0.0)
            result["invalid"] = True
            batch.results.append(result)
            continue
        valid.append((index, canonical_trace(raw)))
    if valid:
        try:
            outcomes = sandbox.run(eval.code, [t for _, t in valid], sandbox_limits())
        except sandbox.SandboxError as exc:
            raise EvalError(
                f"The sandbox could not run the eval: {exc.message}", permanent=exc.permanent
            ) from exc
        for (index, trace), outcome in zip(valid, outcomes, strict=True):
            passed = outcome.passed if outcome.error is None else None
            batch.results.append(
                _verdict(
                    index,
                    trace["id"],
                    passed,
                    outcome.reason or "",
                    outcome.error or "",
                    outcome.duration_ms,
                )
            )
    batch.results.sort(key=lambda r: r["index"])
    return batch


def _verdict(index, trace_id, passed, reason, error, duration_ms) -> dict:
    return {
        "index": index,
        "trace_id": trace_id,
        "passed": passed,
        "reason": reason,
        "error": error,
        "duration_ms": duration_ms,
        "invalid": False,
    }


# --- drift ---------------------------------------------------------------------------------


@dataclass
class DriftPoint:
    day: date
    labels: int  # labelled traces with a verdict in this period
    agreement: float | None  # accuracy in this period
    cumulative: float | None  # accuracy over every later label up to this period


@dataclass
class Drift:
    """How an active eval agrees with human labels given after it was activated."""

    eval: Eval
    baseline: float | None  # agreement at activation
    current: float | None  # over the most recent labels (DRIFT_WINDOW)
    labels: int  # later labels with a verdict
    unjudged: int  # later labels of traces the eval has no verdict on
    margin: float
    points: list[DriftPoint] = field(default_factory=list)

    @property
    def drifting(self) -> bool:
        """True when the recent agreement fell below the baseline by more than the margin."""
        return (
            self.baseline is not None
            and self.current is not None
            and self.labels >= DRIFT_MIN_LABELS
            and self.current < self.baseline - self.margin
        )

    @property
    def drop(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.baseline - self.current


def drift_margin() -> float:
    return float(settings.IOFOLD_DRIFT_MARGIN)


def baseline_agreement(eval: Eval) -> float | None:
    """Return the eval's agreement at activation (recorded then, else its headline figure)."""
    recorded = (eval.metrics or {}).get("agreement_at_activation")
    if isinstance(recorded, (int, float)):
        return float(recorded)
    return eval.agreement


def compute_drift(*, eval: Eval, margin: float | None = None) -> Drift:
    """Return the agreement of `eval` with labels that arrived after its activation.

    A trace counts once, at the time of its first label after activation, with its current
    majority label (ties and neutral majorities are left out, as in the metrics).
    """
    margin = drift_margin() if margin is None else margin
    drift = Drift(
        eval=eval,
        baseline=baseline_agreement(eval),
        current=None,
        labels=0,
        unjudged=0,
        margin=margin,
    )
    if eval.activated_at is None:
        return drift
    ratings: dict[int, list[str]] = defaultdict(list)
    first_later: dict[int, datetime] = {}
    rows = (
        Feedback.objects.filter(eval_set_id=eval.eval_set_id)
        .values_list("trace_id", "rating", "created_at")
        .order_by("created_at", "id")
    )
    for trace_id, rating, created_at in rows:
        ratings[trace_id].append(rating)
        if created_at >= eval.activated_at and trace_id not in first_later:
            first_later[trace_id] = created_at
    verdicts = dict(
        EvalExecution.objects.filter(eval=eval, trace_id__in=list(first_later)).values_list(
            "trace_id", "passed"
        )
    )
    pairs: list[tuple[datetime, str, bool | None]] = []
    for trace_id, when in first_later.items():
        label = resolve_label(Counter(ratings[trace_id]))
        if label not in ("positive", "negative"):
            continue
        if trace_id not in verdicts:
            drift.unjudged += 1
            continue
        pairs.append((when, label, verdicts[trace_id]))
    pairs.sort(key=lambda p: p[0])
    scored = [p for p in pairs if p[2] is not None]
    drift.labels = len(scored)
    if not scored:
        return drift
    drift.current = agreement((label, v) for _, label, v in scored[-DRIFT_WINDOW:]).accuracy
    drift.points = _points(scored)
    return drift


def _points(pairs: list[tuple[datetime, str, bool | None]]) -> list[DriftPoint]:
    span = pairs[-1][0] - pairs[0][0]
    # Daily points for up to two months of labels, weekly after that, to keep charts legible.
    step = timedelta(days=1) if span <= timedelta(days=60) else timedelta(days=7)
    buckets: dict[date, list[tuple[str, bool | None]]] = defaultdict(list)
    origin = pairs[0][0].date()
    for when, label, verdict in pairs:
        offset = (when.date() - origin).days // step.days
        buckets[origin + offset * step].append((label, verdict))
    points, seen = [], []
    for day in sorted(buckets):
        seen += buckets[day]
        points.append(
            DriftPoint(
                day=day,
                labels=len(buckets[day]),
                agreement=agreement(buckets[day]).accuracy,
                cumulative=agreement(seen).accuracy,
            )
        )
    return points


def workspace_drift(*, workspace) -> list[Drift]:
    """Return the drift of every active eval in the workspace."""
    return [compute_drift(eval=e) for e in active_evals(workspace_id=workspace.pk)]


def eval_set_drift(*, eval_set: EvalSet) -> Drift | None:
    """Return the drift of the eval set's active eval, if it has one."""
    eval = (
        Eval.objects.for_workspace(eval_set.workspace_id)
        .filter(eval_set=eval_set, status=Eval.Status.ACTIVE)
        .select_related("eval_set")
        .first()
    )
    return compute_drift(eval=eval) if eval is not None else None


# --- operations dashboard -------------------------------------------------------------------


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
        integrations=list(
            Integration.objects.for_workspace(workspace).only(
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
