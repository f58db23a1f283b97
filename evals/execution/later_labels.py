"""Later labels: the traces of a set first labelled after a version was measured on it.

One definition for every figure that claims "agreement with later labels" (drift of the
active version, the shadow comparison): a version's agreement was measured, and a refined
candidate trained, on the labels given before its moment, so a trace labelled then by
anyone (the label table and the label audit both say so) or kept back to measure it is no
new evidence, even when its label is changed, removed and given again, or another
reviewer labels it later.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Case, Count, Min, OuterRef, Q, Subquery, Value, When

from evals.models import EvalExecution
from traces.models import Feedback, LabelChange
from traces.selectors import resolve_label


def later_labelled_traces(
    *,
    workspace_id: int,
    eval_set_id: int,
    since: datetime,
    kept_back: Iterable[int] = (),
    verdicts: dict[str, int],
):
    """Per trace of the set first labelled at or after `since`, by nobody before it and
    not in `kept_back`: its rating counts, the time of its first label (``first``) and, per
    name of `verdicts` (an eval's id), ``<name>_outcome``: that eval's verdict on the trace
    (``row_judged``, ``row_verdict``). Oldest first; one grouped query, whatever the
    number of traces.

    The verdicts are looked up by index, one probe per label kept by the conditions on
    the labels themselves: none for the traces the audit says were labelled before
    `since`, most of a set's labels, and no read of the traces' table.
    """
    labels = Feedback.objects.for_workspace(workspace_id).filter(eval_set_id=eval_set_id)
    labelled_before = LabelChange.objects.for_workspace(workspace_id).filter(
        eval_set_id=eval_set_id, created_at__lt=since
    )
    # At most one verdict per eval and trace (unique): 1 passed, 0 failed, -1 errored.
    outcome = Case(
        When(passed=True, then=Value(1)), When(passed=False, then=Value(0)), default=Value(-1)
    )
    outcomes = {
        f"{name}_outcome": Subquery(
            EvalExecution.objects.for_workspace(workspace_id)
            .filter(eval_id=eval_id, trace_id=OuterRef("trace_id"))
            .annotate(outcome=outcome)
            .order_by()
            .values("outcome")[:1]
        )
        for name, eval_id in verdicts.items()
    }
    return (
        labels.exclude(trace_id__in=labelled_before.values("trace_id"))
        .exclude(trace_id__in=[int(i) for i in kept_back])
        .values("trace_id")
        .annotate(
            first=Min("created_at"),
            positive=Count("id", filter=Q(rating=Feedback.Rating.POSITIVE)),
            negative=Count("id", filter=Q(rating=Feedback.Rating.NEGATIVE)),
            neutral=Count("id", filter=Q(rating=Feedback.Rating.NEUTRAL)),
            **outcomes,
        )
        .filter(first__gte=since)
        .order_by("first", "trace_id")
    )


def row_label(row: dict) -> str | None:
    """The row's majority label: "positive", "negative", or None (ties and neutral ones are
    left out, as in the metrics)."""
    label = resolve_label({r: row[r] for r in ("positive", "negative", "neutral")})
    return label if label in ("positive", "negative") else None


def row_judged(row: dict, name: str) -> bool:
    """Whether the eval named `name` has a verdict on the row's trace (errors included)."""
    return row[f"{name}_outcome"] is not None


def row_verdict(row: dict, name: str) -> bool | None:
    """The verdict named `name` on the row's trace: True, False, or None (errored).
    Only for rows where it judged (``row_judged``)."""
    return {1: True, 0: False}.get(row[f"{name}_outcome"])


def kept_back_ids(eval) -> list[int]:
    """The traces kept back to measure `eval` (never later evidence)."""
    return [int(i) for i in (eval.metrics or {}).get("heldout_trace_ids") or []]
