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

from django.db.models import Count, FilteredRelation, Min, Q

from traces.models import Feedback, LabelChange
from traces.selectors import resolve_label


def later_labelled_traces(
    *,
    workspace_id: int,
    eval_set_id: int,
    since: datetime,
    kept_back: Iterable[int] = (),
    verdicts: dict[str, Q],
):
    """Per trace of the set first labelled at or after `since`, by nobody before it and
    not in `kept_back`: its rating counts, the time of its first label (``first``) and, per
    name of `verdicts` (a condition on ``trace__executions``), ``<name>_passes``,
    ``<name>_fails`` and ``<name>_judged`` (0: no verdict; judged with neither: errored).
    Oldest first; one grouped query, whatever the number of traces."""
    labels = Feedback.objects.for_workspace(workspace_id).filter(eval_set_id=eval_set_id)
    labelled_before = LabelChange.objects.for_workspace(workspace_id).filter(
        eval_set_id=eval_set_id, created_at__lt=since
    )
    # At most one verdict per eval and trace: each join keeps one row per label, and the
    # grouped counts say whether it passed, failed or errored (neither).
    joins = {
        name: FilteredRelation("trace__executions", condition=condition)
        for name, condition in verdicts.items()
    }
    counts = {}
    for name in verdicts:
        counts[f"{name}_passes"] = Count(f"{name}__id", filter=Q(**{f"{name}__passed": True}))
        counts[f"{name}_fails"] = Count(f"{name}__id", filter=Q(**{f"{name}__passed": False}))
        counts[f"{name}_judged"] = Count(f"{name}__id")
    return (
        labels.exclude(trace_id__in=labelled_before.values("trace_id"))
        .exclude(trace_id__in=[int(i) for i in kept_back])
        .annotate(**joins)
        .values("trace_id")
        .annotate(
            first=Min("created_at"),
            positive=Count("id", filter=Q(rating=Feedback.Rating.POSITIVE)),
            negative=Count("id", filter=Q(rating=Feedback.Rating.NEGATIVE)),
            neutral=Count("id", filter=Q(rating=Feedback.Rating.NEUTRAL)),
            **counts,
        )
        .filter(first__gte=since)
        .order_by("first", "trace_id")
    )


def row_label(row: dict) -> str | None:
    """The row's majority label: "positive", "negative", or None (ties and neutral ones are
    left out, as in the metrics)."""
    label = resolve_label({r: row[r] for r in ("positive", "negative", "neutral")})
    return label if label in ("positive", "negative") else None


def row_verdict(row: dict, name: str) -> bool | None:
    """The verdict named `name` on the row's trace: True, False, or None (errored).
    Only for rows where it judged (``<name>_judged``)."""
    if row[f"{name}_passes"]:
        return True
    if row[f"{name}_fails"]:
        return False
    return None


def kept_back_ids(eval) -> list[int]:
    """The traces kept back to measure `eval` (never later evidence)."""
    return [int(i) for i in (eval.metrics or {}).get("heldout_trace_ids") or []]
