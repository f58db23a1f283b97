"""Reads for eval lists, version history and a version's contradictions.

The comparison matrix has its own package, ``evals.matrix``.
"""

import logging

from django.db.models import QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform

from evals.metrics.agreement import cell_state
from evals.models import Eval, EvalExecution, EvalRun
from iofold.lib.fields import parse_id
from traces.filters import not_read
from traces.models import EvalSet
from workspaces.models import Workspace

logger = logging.getLogger(__name__)

LIST_FIELDS = (
    "id",
    "workspace_id",
    "eval_set_id",
    "version",
    "parent_id",
    "status",
    "provider",
    "model",
    "kind",
    "origin",
    "agreement",
    "labels_tested",
    "low_confidence",
    "low_confidence_reason",
    "cost_usd",
    "activated_at",
    "created_at",
    "eval_set__name",
    "eval_set__workspace_id",
    "parent__version",
)


# --- lists and history ------------------------------------------------------------------


def with_headline_metrics(qs: QuerySet[Eval]) -> QuerySet[Eval]:
    """Annotate the parts of `metrics` that lists show (kappa, no reliable eval, scope).

    Lists defer the full metrics JSON; these annotations let Eval.kappa and
    Eval.no_reliable_eval answer without a query per row.
    """
    return qs.annotate(
        list_heldout=KeyTransform("heldout", "metrics"),
        list_training=KeyTransform("training", "metrics"),
        list_no_reliable_eval=KeyTransform("no_reliable_eval", "metrics"),
        list_labels=KeyTransform("labels", "metrics"),
        list_heldout_trace_ids=KeyTransform("heldout_trace_ids", "metrics"),
        list_measured_at=KeyTextTransform("measured_at", "metrics"),
    )


def read_list_filters(data) -> tuple[int | None, str, list[tuple[str, str]]]:
    """Read the eval list's ``?set=`` and ``?status=``: ``(set id, status, unread)``.

    ``unread`` names, as (label, why) pairs, the values dropped as unreadable: the page
    shows them, or the list reads as if they applied.
    """
    unread = []
    given_set = str(data.get("set") or "").strip()
    set_id = parse_id(given_set) if given_set else None
    if given_set and set_id is None:
        unread.append(("Eval set", not_read(given_set, "an eval set id")))
    status = str(data.get("status") or "").strip()
    if status and status not in Eval.Status.values:
        unread.append(("Status", not_read(status, "one of " + ", ".join(Eval.Status.values))))
        status = ""
    return set_id, status, unread


def eval_list(
    *, workspace: Workspace, eval_set: EvalSet | None = None, status: str | None = None
) -> QuerySet[Eval]:
    """Return eval versions of the workspace (or one set), newest set and version first."""
    qs = Eval.objects.for_workspace(workspace).select_related("eval_set", "parent")
    if eval_set is not None:
        qs = qs.filter(eval_set=eval_set)
    if status:
        qs = qs.filter(status=status)
    qs = with_headline_metrics(qs.only(*LIST_FIELDS))
    return qs.order_by("eval_set__name", "eval_set_id", "-version")


def versions_of(eval_set: EvalSet) -> list[Eval]:
    """Return every version of a set, oldest first, with ``depth`` set from the lineage."""
    versions = list(
        with_headline_metrics(
            Eval.objects.for_eval_set(eval_set)
            .select_related("parent")
            # The API's version rows show how each was made too: read with the row, not
            # three look-ups per version when the serializer touches deferred fields.
            .only(*LIST_FIELDS, "description", "prompt_version", "input_tokens", "output_tokens")
        ).order_by("version")
    )
    by_pk = {v.pk: v for v in versions}
    for v in versions:
        v.eval_set = eval_set  # the rows name the set's unit: no query per row
        parent = by_pk.get(v.parent_id)
        v.depth = (parent.depth + 1) if parent is not None else 0
    return versions


def agreement_history(eval_set: EvalSet) -> list[dict]:
    """Return ``{version, agreement, status}`` per version for the chart."""
    return list(
        Eval.objects.for_eval_set(eval_set)
        .order_by("version")
        .values("version", "agreement", "status")
    )


def latest_run(eval: Eval) -> EvalRun | None:
    return EvalRun.objects.filter(eval=eval).order_by("-created_at", "-id").first()


def contradictions(*, eval: Eval) -> list[tuple]:
    """Return ``(example, execution)`` for labelled traces where the version is wrong or errs.

    Neutral labels cannot be contradicted and are left out.
    """
    from traces.selectors import labelled_examples

    examples = {ex.trace.pk: ex for ex in labelled_examples(eval.eval_set)}
    found = []
    for execution in EvalExecution.objects.filter(eval=eval, trace_id__in=list(examples)).order_by(
        "trace_id"
    ):
        example = examples[execution.trace_id]
        if example.label == "neutral":
            continue
        state = cell_state(example.label, execution.passed)
        if state in ("contradict", "error"):
            found.append((example, execution))
    return found
