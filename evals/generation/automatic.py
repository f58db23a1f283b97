"""Refinement that runs itself: from live disagreement to a better eval in shadow.

``sweep`` (beat, every ``IOFOLD_AUTO_REFINE_EVERY`` seconds) looks at every workspace that
opted in (``AutomationSettings.auto_refine``) and, within its budget of refinements per 30
days, refines an active eval when

- it drifts (``evals.execution.drift``: recent labels agree less than at activation), or
- N labels given since its activation (or since the last automatic refinement) contradict
  it, N being the eval set's ``contradiction_threshold``.

The refinement is an ordinary one (``refinement.start_refinement``). When it finishes
(``after_refinement``, called by the worker, and again by the sweep for any it missed),
the candidate is measured against the parent on the labels it was not written from, put
in shadow beside the active version, and the workspace is told (email and its webhook)
with the before and after. It is promoted only when the workspace opted in
(``auto_promote``) and it wins beyond noise: on the held-out labels right away, or later
in shadow on new traces (the sweep checks ``evals.execution.shadow``).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import timedelta

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from evals.exceptions import EvalError
from evals.execution.drift import compute_drift
from evals.execution.shadow import compare_shadow
from evals.generation.refinement import start_refinement
from evals.metrics.agreement import cell_state
from evals.metrics.paired import compare_paired
from evals.models import (
    Activity,
    AutomationSettings,
    AutoRefinement,
    Eval,
    EvalExecution,
    EvalSetAutomation,
    Generation,
    RunStatus,
)
from evals.notifications import automation_settings, notify
from evals.versions import services as version_services
from iofold.lib.links import email_link
from traces.models import EvalSet, Feedback
from traces.selectors import resolve_label

logger = logging.getLogger(__name__)

BUDGET_WINDOW = timedelta(days=30)
DEFAULT_CONTRADICTIONS = 10
EVENT_SHADOW = "eval.refined"
EVENT_PROMOTED = "eval.promoted"
EVENT_FAILED = "eval.refinement_failed"


def contradiction_threshold(eval_set: EvalSet) -> int:
    found = EvalSetAutomation.objects.filter(eval_set=eval_set).first()
    return found.contradiction_threshold if found else DEFAULT_CONTRADICTIONS


def new_contradictions(*, eval: Eval, since) -> int:
    """Count traces first labelled after ``since`` whose majority label the eval contradicts."""
    ratings: dict[int, Counter] = defaultdict(Counter)
    later: set[int] = set()
    for trace_id, rating, created_at in Feedback.objects.filter(
        eval_set_id=eval.eval_set_id
    ).values_list("trace_id", "rating", "created_at"):
        ratings[trace_id][rating] += 1
        if created_at >= since:
            later.add(trace_id)
    verdicts = dict(
        EvalExecution.objects.filter(eval=eval, trace_id__in=list(later)).values_list(
            "trace_id", "passed"
        )
    )
    count = 0
    for trace_id in later:
        label = resolve_label(ratings[trace_id])
        if label in ("positive", "negative") and trace_id in verdicts:
            count += cell_state(label, verdicts[trace_id]) == "contradict"
    return count


def due(eval: Eval) -> tuple[str, str] | None:
    """Return (trigger, reason) when the active ``eval`` should be refined, else None."""
    drift = compute_drift(eval=eval)
    if drift.drifting:
        return AutoRefinement.Trigger.DRIFT, (
            f"v{eval.version} agrees with {drift.current:.0%} of the latest {drift.labels} "
            f"labels, {drift.drop:.0%} below its {drift.baseline:.0%} at activation."
        )
    last = (
        AutoRefinement.objects.filter(parent=eval).order_by("-created_at").values("created_at")
    ).first()
    since = max(filter(None, [eval.activated_at, last and last["created_at"]]), default=None)
    if since is None:
        return None
    threshold = contradiction_threshold(eval.eval_set)
    found = new_contradictions(eval=eval, since=since)
    if found >= threshold:
        return AutoRefinement.Trigger.CONTRADICTIONS, (
            f"{found} labels given since {since:%Y-%m-%d %H:%M} contradict v{eval.version} "
            f"(threshold {threshold})."
        )
    return None


def _within_budget(automation: AutomationSettings) -> bool:
    since = timezone.now() - BUDGET_WINDOW
    used = AutoRefinement.objects.for_workspace(automation.workspace_id).filter(
        created_at__gte=since
    )
    return used.count() < automation.monthly_refinements


def _waiting(eval_set: EvalSet) -> bool:
    """True when an automatic refinement of the set is running or its candidate is in shadow."""
    rows = AutoRefinement.objects.filter(eval_set=eval_set)
    return (
        rows.unfinished().exists()
        or rows.filter(
            status=AutoRefinement.Status.SHADOW, candidate__status=Eval.Status.SHADOW
        ).exists()
    )


def consider(eval: Eval, *, enqueue: bool = True) -> AutoRefinement | None:
    """Start an automatic refinement of the active ``eval`` when one is due and allowed."""
    automation = automation_settings(eval.workspace)
    if not automation.auto_refine or eval.eval_set.is_archived or _waiting(eval.eval_set):
        return None
    reason = due(eval)
    if reason is None:
        return None
    if not _within_budget(automation):
        logger.info("automatic refinement over budget eval=%s", eval.pk)
        return None
    trigger, text = reason
    try:
        generation = start_refinement(eval=eval, enqueue=enqueue)
    except EvalError as exc:
        logger.info("automatic refinement not started eval=%s: %s", eval.pk, exc.message)
        return None
    auto = AutoRefinement.objects.create(
        workspace_id=eval.workspace_id,
        eval_set_id=eval.eval_set_id,
        parent=eval,
        trigger=trigger,
        reason=text,
        generation=generation,
    )
    logger.info("automatic refinement started eval=%s trigger=%s", eval.pk, trigger)
    return auto


def _summary(eval: Eval) -> dict:
    metrics = eval.metrics or {}
    heldout = metrics.get("heldout") or {}
    training = metrics.get("training") or {}
    return {
        "id": eval.pk,
        "version": eval.version,
        "agreement": eval.agreement,
        "heldout_accuracy": heldout.get("accuracy"),
        "heldout_labels": heldout.get("labelled"),
        "training_accuracy": training.get("accuracy"),
    }


def paired_on_heldout(*, parent: Eval, candidate: Eval):
    """Compare both versions on the labels the candidate was not written from, if it kept any.

    The offline synthesiser cross-validates instead of keeping traces back; then there is
    no paired evidence yet, and the shadow run on new traces provides it.
    """
    ids = (candidate.metrics or {}).get("heldout_trace_ids") or []
    if not ids:
        return None
    ratings: dict[int, Counter] = defaultdict(Counter)
    for trace_id, rating in Feedback.objects.filter(
        eval_set_id=candidate.eval_set_id, trace_id__in=ids
    ).values_list("trace_id", "rating"):
        ratings[trace_id][rating] += 1
    verdicts: dict[int, dict[int, bool | None]] = defaultdict(dict)
    for eval_id, trace_id, passed in EvalExecution.objects.filter(
        eval_id__in=[parent.pk, candidate.pk], trace_id__in=ids
    ).values_list("eval_id", "trace_id", "passed"):
        verdicts[eval_id][trace_id] = passed
    pairs = []
    for trace_id in ids:
        label = resolve_label(ratings[trace_id]) if trace_id in ratings else None
        if label not in ("positive", "negative"):
            continue
        truth = label == "positive"
        before, after = verdicts[parent.pk].get(trace_id), verdicts[candidate.pk].get(trace_id)
        pairs.append((before is not None and before == truth, after is not None and after == truth))
    return compare_paired(pairs)


def after_refinement(*, generation: Generation) -> AutoRefinement | None:
    """Finish the automatic refinement behind a final generation: shadow, measure, notify.

    The rows change in one transaction; the notification goes out after it commits.
    """
    paired = None
    with transaction.atomic():
        auto = (
            AutoRefinement.objects.select_for_update()
            .filter(generation=generation, status=AutoRefinement.Status.REFINING)
            .first()
        )
        if auto is None or generation.status not in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return None
        parent = Eval.objects.get(pk=auto.parent_id)
        if generation.status == RunStatus.FAILED or generation.result_id is None:
            _fail(auto, generation.error or "The refinement made no version.")
        else:
            try:
                candidate = version_services.shadow_eval(
                    eval=generation.result,
                    reason=f"Refined by itself from v{parent.version}: {auto.reason}",
                )
            except EvalError as exc:
                # Someone archived or activated it first: report it, do not fail the task.
                auto.candidate = generation.result
                _fail(auto, exc.message)
            else:
                paired = paired_on_heldout(parent=parent, candidate=candidate)
                auto.candidate = candidate
                auto.comparison = {
                    "before": _summary(parent),
                    "after": _summary(candidate),
                    "paired": paired.as_dict() if paired is not None else None,
                }
                auto.status = AutoRefinement.Status.SHADOW
                auto.save(update_fields=["candidate", "comparison", "status", "updated_at"])
    if auto.status == AutoRefinement.Status.FAILED:
        return _tell(auto, EVENT_FAILED)
    if paired is not None and paired.challenger_wins:
        promoted = _promote_if_allowed(auto)
        if promoted is not None:
            return promoted
    return _tell(auto, EVENT_SHADOW)


def _fail(auto: AutoRefinement, error: str) -> None:
    auto.status = AutoRefinement.Status.FAILED
    auto.error = error
    auto.save(update_fields=["status", "candidate", "error", "updated_at"])


def _promote_if_allowed(auto: AutoRefinement) -> AutoRefinement | None:
    if not automation_settings(auto.workspace).auto_promote:
        return None
    candidate = Eval.objects.get(pk=auto.candidate_id)
    if candidate.status != Eval.Status.SHADOW:
        return None
    version_services.activate_or_roll_back(
        eval=candidate,
        reason=f"Refined by itself and won beyond noise. {auto.reason}",
        verb=Activity.Verb.PROMOTED,
    )
    auto.status = AutoRefinement.Status.PROMOTED
    auto.save(update_fields=["status", "updated_at"])
    logger.info("automatic refinement promoted eval=%s", candidate.pk)
    return _tell(auto, EVENT_PROMOTED)


def _tell(auto: AutoRefinement, event: str) -> AutoRefinement:
    workspace = auto.workspace
    eval_set = auto.eval_set
    before = (auto.comparison or {}).get("before") or {}
    after = (auto.comparison or {}).get("after") or {}
    paired = (auto.comparison or {}).get("paired")
    link = email_link(reverse("evals:shadow_compare", args=[workspace.slug, eval_set.pk]))

    def pct(value):
        return "—" if value is None else f"{value:.0%}"

    if event == EVENT_FAILED:
        subject = f"Automatic refinement of {eval_set.name} failed"
        lines = [auto.reason, "", f"The refinement failed: {auto.error}"]
    else:
        verb = "promoted" if event == EVENT_PROMOTED else "put in shadow"
        subject = f"{eval_set.name}: v{after.get('version')} refined and {verb}"
        lines = [
            f"Why: {auto.reason}",
            "",
            f"Before (v{before.get('version')}): agreement {pct(before.get('agreement'))}",
            f"After  (v{after.get('version')}): agreement {pct(after.get('agreement'))}"
            f" (held-out {pct(after.get('heldout_accuracy'))})",
        ]
        if paired:
            lines.append(
                f"On {paired['n']} held-out labels: {paired['c']} fixed, {paired['b']} broken, "
                f"difference {paired['difference']:+.0%} "
                f"[{paired['low']:+.0%}, {paired['high']:+.0%}], mid-p {paired['p_mid']:.3f}."
            )
        lines.append(f"Compare them on new traces: {link}")
    payload = {
        "workspace": workspace.slug,
        "eval_set": {"id": eval_set.pk, "name": eval_set.name},
        "trigger": auto.trigger,
        "reason": auto.reason,
        "status": auto.status,
        "before": before,
        "after": after,
        "paired": paired,
        "error": auto.error,
        "url": link,
    }
    outcome = notify(
        workspace=workspace, event=event, subject=subject, body="\n".join(lines), payload=payload
    )
    auto.notified_at = timezone.now()
    auto.webhook_status = outcome
    auto.save(update_fields=["notified_at", "webhook_status", "updated_at"])
    return auto


def _review_shadow(auto: AutoRefinement) -> AutoRefinement | None:
    """Promote an automatic candidate that now wins in shadow, if the workspace opted in."""
    active = (
        Eval.objects.for_workspace(auto.workspace_id)
        .filter(eval_set_id=auto.eval_set_id)
        .active()
        .first()
    )
    candidate = auto.candidate
    if active is None or candidate is None or candidate.status != Eval.Status.SHADOW:
        return None
    comparison = compare_shadow(active=active, shadow=candidate)
    if not comparison.challenger_wins:
        return None
    auto.comparison = {**(auto.comparison or {}), "shadow": comparison.as_dict()}
    auto.save(update_fields=["comparison", "updated_at"])
    return _promote_if_allowed(auto)


def sweep(*, enqueue: bool = True) -> list[AutoRefinement]:
    """Finish missed refinements, promote winning shadows, and start the refinements due."""
    touched: list[AutoRefinement] = []
    for auto in AutoRefinement.objects.unfinished().select_related("generation"):
        if auto.generation is None or auto.generation.is_final:
            generation = auto.generation
            if generation is None:
                AutoRefinement.objects.filter(pk=auto.pk).update(
                    status=AutoRefinement.Status.FAILED, error="The refinement was deleted."
                )
                continue
            done = after_refinement(generation=generation)
            if done is not None:
                touched.append(done)
    opted = AutomationSettings.objects.filter(auto_refine=True).values_list(
        "workspace_id", flat=True
    )
    for auto in AutoRefinement.objects.filter(
        workspace_id__in=list(
            AutomationSettings.objects.filter(auto_promote=True).values_list(
                "workspace_id", flat=True
            )
        ),
        status=AutoRefinement.Status.SHADOW,
    ).select_related("candidate", "workspace"):
        promoted = _review_shadow(auto)
        if promoted is not None:
            touched.append(promoted)
    for eval in (
        Eval.objects.filter(workspace_id__in=list(opted), status=Eval.Status.ACTIVE)
        .filter(eval_set__archived_at__isnull=True)
        .select_related("eval_set", "workspace")
    ):
        started = consider(eval, enqueue=enqueue)
        if started is not None:
            touched.append(started)
    return touched
