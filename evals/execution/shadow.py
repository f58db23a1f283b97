"""Shadow A/B: the active version and its shadow compared on the same new traces.

Continuous evaluation runs both on every new trace (``continuous.evaluating_evals``);
only the active one's verdicts leave iofold. Here the two are lined up on the traces both
judged as new traffic, against the human labels those traces received: how often each
agrees with the labels (paired, McNemar, ``evals.metrics.paired``), how often they
disagree with each other, and how long each took in the sandbox.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from evals.metrics.paired import PairedComparison, compare_paired
from evals.models import Eval, EvalExecution, EvalRun
from traces.models import EvalSet, Feedback
from traces.selectors import resolve_label


@dataclass(frozen=True)
class Latency:
    mean_ms: float | None
    p95_ms: float | None

    @classmethod
    def of(cls, durations: list[float]) -> Latency:
        if not durations:
            return cls(None, None)
        ordered = sorted(durations)
        return cls(
            statistics.fmean(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        )


@dataclass(frozen=True)
class ShadowComparison:
    active: Eval
    shadow: Eval
    shared: int  # new traces both versions judged
    disagreements: int  # of those, traces where their verdicts differ (an error counts)
    labelled: int  # of those, traces with a positive or negative majority label
    paired: PairedComparison
    active_latency: Latency
    shadow_latency: Latency

    @property
    def disagreement_rate(self) -> float | None:
        return self.disagreements / self.shared if self.shared else None

    @property
    def challenger_wins(self) -> bool:
        return self.paired.challenger_wins

    def as_dict(self) -> dict:
        return {
            "active": {"id": self.active.pk, "version": self.active.version},
            "shadow": {"id": self.shadow.pk, "version": self.shadow.version},
            "shared": self.shared,
            "disagreements": self.disagreements,
            "disagreement_rate": self.disagreement_rate,
            "labelled": self.labelled,
            "paired": self.paired.as_dict(),
            "active_latency": vars(self.active_latency),
            "shadow_latency": vars(self.shadow_latency),
        }


def shadow_pair(eval_set: EvalSet) -> tuple[Eval | None, Eval | None]:
    """Return the set's (active, shadow) versions; either may be None."""
    rows = Eval.objects.for_workspace(eval_set.workspace_id).filter(
        eval_set=eval_set, status__in=(Eval.Status.ACTIVE, Eval.Status.SHADOW)
    )
    by_status = {e.status: e for e in rows.select_related("eval_set")}
    return by_status.get(Eval.Status.ACTIVE), by_status.get(Eval.Status.SHADOW)


def _new_traffic_verdicts(eval: Eval) -> dict[int, tuple[bool | None, float]]:
    """Return trace id -> (verdict, duration) of what ``eval`` judged as new traffic."""
    rows = EvalExecution.objects.filter(eval=eval, run__trigger=EvalRun.Trigger.AUTOMATIC)
    if eval.shadow_since is not None:
        rows = rows.filter(updated_at__gte=eval.shadow_since)
    return {t: (p, d) for t, p, d in rows.values_list("trace_id", "passed", "duration_ms")}


def compare_shadow(*, active: Eval, shadow: Eval) -> ShadowComparison:
    """Compare the shadow with the active version on the new traces both judged."""
    challenger = _new_traffic_verdicts(shadow)
    incumbent = dict(
        (t, (p, d))
        for t, p, d in EvalExecution.objects.filter(
            eval=active, trace_id__in=list(challenger)
        ).values_list("trace_id", "passed", "duration_ms")
    )
    shared = [t for t in challenger if t in incumbent]
    ratings: dict[int, Counter] = defaultdict(Counter)
    for trace_id, rating in Feedback.objects.filter(
        eval_set_id=active.eval_set_id, trace_id__in=shared
    ).values_list("trace_id", "rating"):
        ratings[trace_id][rating] += 1
    pairs, disagreements = [], 0
    for trace_id in shared:
        a, s = incumbent[trace_id][0], challenger[trace_id][0]
        disagreements += a != s
        label = resolve_label(ratings[trace_id]) if trace_id in ratings else None
        if label in ("positive", "negative"):
            truth = label == "positive"
            # An error is never right.
            pairs.append((a is not None and a == truth, s is not None and s == truth))
    return ShadowComparison(
        active=active,
        shadow=shadow,
        shared=len(shared),
        disagreements=disagreements,
        labelled=len(pairs),
        paired=compare_paired(pairs),
        active_latency=Latency.of([incumbent[t][1] for t in shared]),
        shadow_latency=Latency.of([challenger[t][1] for t in shared]),
    )


def eval_set_shadow(eval_set: EvalSet) -> ShadowComparison | None:
    """Return the comparison of the set's shadow with its active version, if it has both."""
    active, shadow = shadow_pair(eval_set)
    if active is None or shadow is None:
        return None
    return compare_shadow(active=active, shadow=shadow)
