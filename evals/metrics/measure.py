"""Measure an eval version against human labels, on training and on held-out labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from evals.metrics.agreement import (
    AGREEMENT_BAR,
    Agreement,
    agreement,
    is_cross_validated,
    low_confidence_reason,
)
from evals.models import Eval, EvalExecution, EvalRun, RunStatus

Pairs = Sequence[tuple[str, bool | None]]
# The headline agreement a version had when it was last activated: drift's baseline
# (evals.execution.drift), which re-measuring on the labels given since must not move.
AT_ACTIVATION = "agreement_at_activation"


@dataclass(frozen=True)
class Measurement:
    """What gets stored on an Eval: the metrics JSON and the figures shown in lists."""

    metrics: dict
    agreement: float | None
    labels_tested: int
    low_confidence_reason: str

    @property
    def low_confidence(self) -> bool:
        return bool(self.low_confidence_reason)


def measure(
    *,
    training: Pairs,
    heldout: Pairs | None = None,
    method: str = "",
    labels: Sequence[str] | None = None,
    extra: dict | None = None,
) -> Measurement:
    """Return metrics for (human label, verdict) pairs; neutral labels are left out.

    The headline agreement is the held-out accuracy when there are held-out labels
    (agreement on the examples the code was written from proves little), else the
    training accuracy. Either falling under the 80 % bar makes the version low-confidence.
    `labels` are the labels of every distinct trace measured (default: the training
    pairs' plus the held-out pairs', right when the two are disjoint).
    """
    train_result = agreement(training)
    heldout_result = agreement(heldout) if heldout is not None else None
    if labels is None:
        labels = [label for label, _ in training] + [label for label, _ in heldout or []]
    label_counts = Counter(labels)
    reason = None
    headline: Agreement = train_result
    if heldout_result is not None and heldout_result.labelled:
        headline = heldout_result
        reason = low_confidence_reason(heldout_result, scope="held-out labels")
    reason = reason or low_confidence_reason(train_result, scope="training labels")
    metrics = {
        "training": train_result.as_dict(),
        "heldout": heldout_result.as_dict() if heldout_result is not None else None,
        "method": method,
        "bar": AGREEMENT_BAR,
        "labels": {k: label_counts.get(k, 0) for k in ("positive", "negative", "neutral")},
        "measured_at": timezone.now().isoformat(),
        **(extra or {}),
    }
    labels_tested = label_counts["positive"] + label_counts["negative"]
    return Measurement(
        metrics=metrics,
        agreement=headline.accuracy,
        labels_tested=labels_tested,
        low_confidence_reason=reason or "",
    )


def record_activation_baseline(eval: Eval) -> None:
    """Note the version's headline agreement as its agreement at activation (unsaved)."""
    eval.metrics = {**(eval.metrics or {}), AT_ACTIVATION: eval.agreement}


def apply_measurement(eval: Eval, measurement: Measurement) -> None:
    """Copy a measurement onto an Eval (unsaved)."""
    eval.metrics = measurement.metrics
    eval.agreement = measurement.agreement
    eval.labels_tested = measurement.labels_tested
    eval.low_confidence = measurement.low_confidence
    eval.low_confidence_reason = measurement.low_confidence_reason


def score_eval_version(*, eval: Eval) -> Eval:
    """Re-measure an eval version against the eval set's current labels and save it.

    A labelled trace the version has no verdict on counts as an error; run those first
    (``evals.execution.runs.run_unjudged_labels``) to measure on every label. Traces kept
    back at generation time stay held out; a stored cross-validation figure is kept as it
    is (it measures the procedure, not the labels added since).
    """
    from traces.selectors import labelled_examples

    examples = labelled_examples(eval.eval_set)
    verdicts = dict(
        EvalExecution.objects.filter(eval=eval, trace_id__in=[e.trace.pk for e in examples])
        .values_list("trace_id", "passed")
        .order_by()
    )
    previous = eval.metrics or {}
    heldout_ids = set(previous.get("heldout_trace_ids") or [])
    training = [
        (e.label, verdicts.get(e.trace.pk)) for e in examples if e.trace.pk not in heldout_ids
    ]
    heldout: list | None = None
    kept = ("heldout_trace_ids", "no_reliable_eval", "no_eval_reason", AT_ACTIVATION)
    extra = {k: previous[k] for k in kept if k in previous}
    if heldout_ids:
        heldout = [
            (e.label, verdicts.get(e.trace.pk)) for e in examples if e.trace.pk in heldout_ids
        ]
    measurement = measure(
        training=training,
        heldout=heldout,
        method=previous.get("method", ""),
        labels=[e.label for e in examples],
        extra=extra,
    )
    if (
        not heldout_ids
        and previous.get("heldout")
        and is_cross_validated(previous.get("method", ""))
    ):
        # Keep the procedure's cross-validated figure, and judge confidence by it.
        stored = Agreement(**previous["heldout"])
        reason = low_confidence_reason(stored, scope="held-out labels") or (
            measurement.low_confidence_reason
        )
        measurement = Measurement(
            metrics={**measurement.metrics, "heldout": previous["heldout"]},
            agreement=stored.accuracy if stored.labelled else measurement.agreement,
            labels_tested=measurement.labels_tested,
            low_confidence_reason=reason or "",
        )
    apply_measurement(eval, measurement)
    with transaction.atomic():
        eval.save(
            update_fields=[
                "metrics",
                "agreement",
                "labels_tested",
                "low_confidence",
                "low_confidence_reason",
                "updated_at",
            ]
        )
    return eval


def label_changes_since_measured(eval: Eval) -> int:
    """Count the set's label changes since the version's figures were measured.

    Labels given, changed (good, bad or neutral; a note alone changes no figure), removed
    or moved after ``measured_at`` leave the stored figures and confusion counts on labels
    that are no longer the set's, while the matrix and contradictions read the current
    ones: the page says so until the version is measured again.
    """
    measured = parse_datetime(str(eval.measured_at or ""))
    if measured is None:
        return 0
    return (
        _figure_changes(eval.workspace_id)
        .filter(eval_set_id=eval.eval_set_id, created_at__gt=measured)
        .count()
    )


def mark_out_of_date(evals: Sequence[Eval]) -> list[Eval]:
    """Set ``labels_changed_since_measured`` (a bool) on each version, in one query.

    A list only marks the versions whose figures predate a label change of their set;
    the version page counts the changes (``label_changes_since_measured``).
    """
    evals = list(evals)
    if not evals:
        return evals
    last_change = dict(
        _figure_changes(evals[0].workspace_id)
        .filter(eval_set_id__in={e.eval_set_id for e in evals})
        .order_by()
        .values_list("eval_set_id")
        .annotate(last=Max("created_at"))
    )
    for e in evals:
        measured = parse_datetime(str(e.measured_at or ""))
        changed = last_change.get(e.eval_set_id)
        e.labels_changed_since_measured = bool(measured and changed and changed > measured)
    return evals


def _figure_changes(workspace_id: int):
    """The set's label changes that move a figure (a note alone changes none)."""
    from traces.models import LabelChange

    return LabelChange.objects.for_workspace(workspace_id).exclude(
        action=LabelChange.Action.CHANGED, rating_before=F("rating_after")
    )


def measured_on_current_labels(eval: Eval) -> bool:
    """Return whether the version's figures are on the set's labels as they are now."""
    measured = (eval.metrics or {}).get("measured_at")
    return bool(measured) and not label_changes_since_measured(eval)


def record_test_result(*, run: EvalRun) -> Eval:
    """Re-measure the version once its test run has finished (safe to call repeatedly)."""
    eval = run.eval
    measured = (eval.metrics or {}).get("measured_at")
    if run.status != RunStatus.SUCCEEDED or run.finished_at is None:
        return eval
    if measured and measured >= run.finished_at.isoformat():
        return eval
    return score_eval_version(eval=eval)
