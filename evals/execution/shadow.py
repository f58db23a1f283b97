"""Shadow A/B: the active version and its shadow compared on the same new traces.

Continuous evaluation runs both on every new trace (``continuous.evaluating_evals``);
only the active one's verdicts leave iofold. Here the two are lined up on the traces both
judged as new traffic, against the later human labels those traces received (the same
definition and query as drift, ``later_labels``): how often each agrees with the labels
(paired, McNemar, ``evals.metrics.paired``), how often they disagree with each other, and
how long each took in the sandbox.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

from evals.execution.later_labels import (
    kept_back_ids,
    later_labelled_traces,
    row_label,
    row_verdict,
)
from evals.metrics.paired import PairedComparison, compare_paired
from evals.models import Eval, EvalExecution, EvalRun
from traces.models import EvalSet


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
    since: datetime  # labels count from then on (``labels_since``)
    # Of the labelled traces, those each version errored on (counted as wrong for it).
    active_errored_trace_ids: list[int] = field(default_factory=list)
    shadow_errored_trace_ids: list[int] = field(default_factory=list)

    @property
    def disagreement_rate(self) -> float | None:
        return self.disagreements / self.shared if self.shared else None

    @property
    def errored(self) -> list[tuple[str, Eval, list[int]]]:
        """(name, version, trace ids) of each version that errored on labelled traces."""
        rows = [
            ("active", self.active, self.active_errored_trace_ids),
            ("shadow", self.shadow, self.shadow_errored_trace_ids),
        ]
        return [row for row in rows if row[2]]

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
            "labels_since": self.since.isoformat(),
            "active_errored": len(self.active_errored_trace_ids),
            "shadow_errored": len(self.shadow_errored_trace_ids),
            "active_errored_trace_ids": self.active_errored_trace_ids,
            "shadow_errored_trace_ids": self.shadow_errored_trace_ids,
        }


def shadow_pair(eval_set: EvalSet) -> tuple[Eval | None, Eval | None]:
    """Return the set's (active, shadow) versions; either may be None."""
    rows = Eval.objects.for_workspace(eval_set.workspace_id).filter(
        eval_set=eval_set, status__in=(Eval.Status.ACTIVE, Eval.Status.SHADOW)
    )
    by_status = {e.status: e for e in rows.select_related("eval_set")}
    return by_status.get(Eval.Status.ACTIVE), by_status.get(Eval.Status.SHADOW)


def _new_traffic(eval: Eval):
    """The executions of ``eval`` by automatic runs since it went into shadow."""
    rows = EvalExecution.objects.for_workspace(eval.workspace_id).filter(
        eval=eval, run__trigger=EvalRun.Trigger.AUTOMATIC
    )
    if eval.shadow_since is not None:
        rows = rows.filter(updated_at__gte=eval.shadow_since)
    return rows


def labels_since(*, active: Eval, shadow: Eval) -> datetime:
    """When labels start to count as later ones for both: the active version was measured
    on the labels before its activation, the shadow trained on those before it went into
    shadow (or was created)."""
    return max(active.activated_at or active.created_at, shadow.shadow_since or shadow.created_at)


def compare_shadow(*, active: Eval, shadow: Eval) -> ShadowComparison:
    """Compare the shadow with the active version on the new traces both judged.

    The agreement counts only later labels (``later_labels``, as drift does: traces first
    labelled after ``labels_since`` and by nobody before it); an error is never right, and
    the traces each version errored on are listed.
    """
    new_traffic = _new_traffic(shadow)
    challenger = {
        t: (p, d) for t, p, d in new_traffic.values_list("trace_id", "passed", "duration_ms")
    }
    incumbent = dict(
        (t, (p, d))
        for t, p, d in EvalExecution.objects.for_workspace(active.workspace_id)
        .filter(eval=active, trace_id__in=list(challenger))
        .values_list("trace_id", "passed", "duration_ms")
    )
    shared = [t for t in challenger if t in incumbent]
    disagreements = sum(incumbent[t][0] != challenger[t][0] for t in shared)
    since = labels_since(active=active, shadow=shadow)
    later = later_labelled_traces(
        workspace_id=active.workspace_id,
        eval_set_id=active.eval_set_id,
        since=since,
        kept_back={*kept_back_ids(active), *kept_back_ids(shadow)},
        verdicts={"active": active.pk, "shadow": shadow.pk},
    ).filter(trace_id__in=new_traffic.values("trace_id"), active_outcome__isnull=False)
    pairs, errored = [], {"active": [], "shadow": []}
    for row in later:
        label = row_label(row)
        if label is None:
            continue
        truth = label == "positive"
        verdicts = {name: row_verdict(row, name) for name in errored}
        for name, verdict in verdicts.items():
            if verdict is None:
                errored[name].append(row["trace_id"])
        # An error is never right.
        pairs.append(tuple(verdicts[name] is truth for name in ("active", "shadow")))
    return ShadowComparison(
        active=active,
        shadow=shadow,
        shared=len(shared),
        disagreements=disagreements,
        labelled=len(pairs),
        paired=compare_paired(pairs),
        active_latency=Latency.of([incumbent[t][1] for t in shared]),
        shadow_latency=Latency.of([challenger[t][1] for t in shared]),
        since=since,
        active_errored_trace_ids=errored["active"],
        shadow_errored_trace_ids=errored["shadow"],
    )


def eval_set_shadow(eval_set: EvalSet) -> ShadowComparison | None:
    """Return the comparison of the set's shadow with its active version, if it has both."""
    active, shadow = shadow_pair(eval_set)
    if active is None or shadow is None:
        return None
    return compare_shadow(active=active, shadow=shadow)
