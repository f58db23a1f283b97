"""Drift: how an active eval agrees with the human labels added since its activation."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings

from evals.execution.continuous import active_evals
from evals.execution.later_labels import (
    kept_back_ids,
    later_labelled_traces,
    row_judged,
    row_label,
    row_verdict,
)
from evals.metrics.agreement import agreement
from evals.metrics.measure import AT_ACTIVATION
from evals.models import Eval
from traces.models import EvalSet

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
    # Later labels of traces the eval errored on (sandbox error or timeout): not counted.
    errored_trace_ids: list[int] = field(default_factory=list)

    @property
    def errored(self) -> int:
        return len(self.errored_trace_ids)

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
    """Return the agreement of `eval` with labels of traces first labelled after activation.

    Only traces nobody had labelled before the activation count: the version's agreement
    at activation was measured on the labels given before it (training and held-out), so
    such a trace is no new evidence even when its label is changed, removed and given
    again, or another reviewer labels it later. A trace counts once, at the time of its
    first label, with its current majority label (ties and neutral majorities are left
    out, as in the metrics). Traces the eval errored on are counted apart (``errored``).
    One grouped query (``later_labels``, shared with the shadow comparison).
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
    pairs: list[tuple[datetime, str, bool]] = []
    for row in _later_labelled(eval):
        label = row_label(row)
        if label is None:
            continue
        verdict = row_verdict(row, "verdict")
        if not row_judged(row, "verdict"):
            drift.unjudged += 1
        elif verdict is None:
            drift.errored_trace_ids.append(row["trace_id"])
        else:
            pairs.append((row["first"], label, verdict))
    drift.labels = len(pairs)
    if not pairs:
        return drift
    drift.current = agreement((label, v) for _, label, v in pairs[-DRIFT_WINDOW:]).accuracy
    drift.points = _points(pairs)
    return drift


def _later_labelled(eval: Eval):
    """Per trace of the set first labelled after the activation, with the eval's verdict."""
    return later_labelled_traces(
        workspace_id=eval.workspace_id,
        eval_set_id=eval.eval_set_id,
        since=eval.activated_at,
        kept_back=kept_back_ids(eval),
        verdicts={"verdict": eval.pk},
    )


def _points(pairs: list[tuple[datetime, str, bool]]) -> list[DriftPoint]:
    span = pairs[-1][0] - pairs[0][0]
    # Daily points for up to two months of labels, weekly after that, to keep charts legible.
    step = timedelta(days=1) if span <= timedelta(days=60) else timedelta(days=7)
    buckets: dict[date, list[tuple[str, bool]]] = defaultdict(list)
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
