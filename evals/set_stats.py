"""The figures the evals app gives the eval set pages: eval count, best agreement, drift."""

from django.db.models import Count, Max

from evals.execution.drift import compute_drift
from evals.models import Eval


def eval_set_stats(eval_set_ids: list[int]) -> dict[int, dict]:
    """Return each eval set's number of eval versions, best headline agreement, and
    ``drift``: a warning when its active eval agrees less with recent labels (else None).
    """
    rows = (
        Eval.objects.filter(eval_set_id__in=eval_set_ids)
        .values("eval_set_id")
        .annotate(eval_count=Count("id"), best_agreement=Max("agreement"))
        .order_by()
    )
    stats = {
        row["eval_set_id"]: {
            "eval_count": row["eval_count"],
            "best_agreement": row["best_agreement"],
            "drift": None,
        }
        for row in rows
    }
    for eval_set_id, message in drift_warnings(eval_set_ids).items():
        stats[eval_set_id]["drift"] = message
    return stats


def drift_warnings(eval_set_ids: list[int]) -> dict[int, str]:
    """Return a warning per eval set whose active eval has drifted from recent labels."""
    warnings = {}
    active = Eval.objects.filter(
        eval_set_id__in=eval_set_ids, status=Eval.Status.ACTIVE, activated_at__isnull=False
    ).select_related("eval_set")
    for eval in active:
        drift = compute_drift(eval=eval)
        if drift.drifting:
            warnings[eval.eval_set_id] = (
                f"The active eval v{eval.version} agrees with {drift.current:.0%} of the latest "
                f"labels, {drift.drop:.0%} below its {drift.baseline:.0%} at activation. "
                "Refine it with the new labels."
            )
    return warnings
