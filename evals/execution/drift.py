"""Drift: how an active eval agrees with the human labels added since its activation."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings

from evals.execution.continuous import active_evals
from evals.metrics.agreement import agreement
from evals.metrics.measure import AT_ACTIVATION
from evals.models import Eval, EvalExecution
from traces.models import EvalSet, Feedback
from traces.selectors import resolve_label

logger = logging.getLogger(__name__)

# Agreement at activation needs this many later labels before drift is judged at all.
DRIFT_MIN_LABELS = 10
# The "current" agreement is taken over the most recent labels, up to this many.
DRIFT_WINDOW = 50


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
    recorded = (eval.metrics or {}).get(AT_ACTIVATION)
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
