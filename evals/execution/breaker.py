"""The continuous evaluation's circuit breaker: pause an eval set whose active version
times out (or errors) on most new traces, so it stops holding an ``execute`` worker.

An eval that hangs costs a worker its 5 s per trace, 120 s per jail and three fresh
jails on every sync (docs/sandbox.md). After each batch of an automatic run of an
active version, its last ``WINDOW`` continuous verdicts are read: when at least
``MIN_FAILURES`` of them are errors and they make at least half of them, the set is
paused (``ContinuousPause``). The rule: 20 failures are 20 traces of evidence, not one
unlucky sync of a few traces, and "at least half" spares an eval that errors on a
minority of odd traces (those errors are worth reading, not a reason to stop the set).

While paused, automatic runs of the set are created but held, queued: nothing is lost,
and nothing of the set goes to the sandbox. Resuming, or activating a new version,
deletes the pause and sends the held runs (a replaced version's to the new one):
``continuous.resume`` and ``continuous.resume_on_activation``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse

from evals.collaboration import record_activity
from evals.models import (
    Activity,
    ContinuousPause,
    Eval,
    EvalExecution,
    EvalRun,
    EvalRunChunk,
    RunStatus,
)
from iofold.lib.links import email_link

logger = logging.getLogger(__name__)

WINDOW = 50
MIN_FAILURES = 20
EXAMPLES = 5
PAUSE_EVENT = "continuous.paused"
TIMEOUT_MARKS = ("timed out", "ran out of time")


@dataclass(frozen=True)
class Record:
    failures: int
    timeouts: int
    window: int
    examples: list[int]

    @property
    def tripped(self) -> bool:
        return self.failures >= MIN_FAILURES and 2 * self.failures >= self.window

    @property
    def reason(self) -> str:
        of = f"of the last {self.window} traces"
        if self.timeouts == self.failures:
            return f"the eval timed out on {self.timeouts} {of}"
        if self.timeouts:
            more = self.failures - self.timeouts
            return f"the eval timed out on {self.timeouts} and failed on {more} more {of}"
        return f"the eval failed on {self.failures} {of}"


def pause_of(eval_set) -> ContinuousPause | None:
    """Return the set's pause, or None while its continuous evaluation runs."""
    return (
        ContinuousPause.objects.for_workspace(eval_set.workspace_id)
        .filter(eval_set_id=eval_set.pk)
        .select_related("eval")
        .first()
    )


def pause_display(eval_set) -> dict | None:
    """What the eval set's page shows of its pause: the reason, the version, links to a few
    of the traces it failed on and to resume; None while it runs."""
    pause = pause_of(eval_set)
    if pause is None:
        return None
    slug = eval_set.workspace.slug
    return {
        "message": f"Paused: {pause.reason}",
        "version": pause.eval.version,
        "eval_url": reverse("evals:detail", args=[slug, pause.eval_id]),
        "since": pause.created_at,
        "examples": [
            reverse("evals:cell", args=[slug, pause.eval_id, trace_id])
            for trace_id in pause.example_trace_ids
        ],
        "resume_url": reverse("evals:resume_continuous", args=[slug, eval_set.pk]),
    }


def paused_set_ids(*, workspace_id: int) -> set[int]:
    return set(
        ContinuousPause.objects.for_workspace(workspace_id).values_list("eval_set_id", flat=True)
    )


def held_runs() -> Q:
    """Queued automatic runs of paused eval sets (across workspaces: the sweep's and the
    metrics' filter): they wait on purpose, not for a worker."""
    return Q(
        status=RunStatus.QUEUED,
        trigger=EvalRun.Trigger.AUTOMATIC,
        eval__eval_set__continuous_pause__isnull=False,
    )


def run_is_held(*, run_id: int) -> bool:
    """Whether an automatic run must wait: its eval set is paused."""
    return EvalRun.objects.filter(
        pk=run_id,
        trigger=EvalRun.Trigger.AUTOMATIC,
        eval__eval_set__continuous_pause__isnull=False,
    ).exists()


def chunk_is_held(*, chunk_id: int) -> bool:
    """Whether a chunk of an automatic run must wait: its eval set is paused."""
    return EvalRunChunk.objects.filter(
        pk=chunk_id,
        run__trigger=EvalRun.Trigger.AUTOMATIC,
        run__eval__eval_set__continuous_pause__isnull=False,
    ).exists()


def may_trip(results) -> bool:
    """Whether writing a batch's verdicts may pause its set. Without an error it cannot (it
    adds no failure, only verdicts the failures must be half of); a batch of ``WINDOW``
    verdicts or more with fewer than ``MIN_FAILURES`` errors cannot either (the window is
    its own verdicts). A batch that may is written before the next one enters the sandbox,
    so a pause keeps that one out (``pipeline.judge_batches``' ``write_first``); the others
    keep their write overlapping the next batch's judging."""
    errors = sum(1 for result in results if result.error is not None)
    return errors > 0 and (errors >= MIN_FAILURES or len(results) < WINDOW)


def recent_record(*, eval: Eval) -> Record:
    """The version's last ``WINDOW`` continuous verdicts since the set was last resumed."""
    verdicts = EvalExecution.objects.for_workspace(eval.workspace_id).filter(
        eval=eval, run__trigger=EvalRun.Trigger.AUTOMATIC
    )
    resumed = (
        Activity.objects.for_workspace(eval.workspace_id)
        .filter(eval_set_id=eval.eval_set_id, verb=Activity.Verb.RESUMED)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if resumed is not None:
        verdicts = verdicts.filter(updated_at__gt=resumed)
    rows = list(verdicts.order_by("-updated_at", "-id").values_list("trace_id", "error")[:WINDOW])
    failed = [(trace_id, error) for trace_id, error in rows if error]
    timeouts = sum(1 for _, error in failed if any(m in error for m in TIMEOUT_MARKS))
    return Record(
        failures=len(failed),
        timeouts=timeouts,
        window=len(rows),
        examples=[trace_id for trace_id, _ in failed[:EXAMPLES]],
    )


def trip_if_failing(*, eval: Eval) -> ContinuousPause | None:
    """Pause the set when its active version fails on most recent new traces; return the
    pause (an earlier one too), or None while the set keeps running."""
    existing = pause_of(eval.eval_set)
    if existing is not None:
        return existing
    if eval.status != Eval.Status.ACTIVE:
        return None
    record = recent_record(eval=eval)
    if not record.tripped:
        return None
    try:
        with transaction.atomic():
            pause = ContinuousPause.objects.create(
                workspace_id=eval.workspace_id,
                eval_set_id=eval.eval_set_id,
                eval=eval,
                failures=record.failures,
                timeouts=record.timeouts,
                window=record.window,
                reason=record.reason,
                example_trace_ids=record.examples,
            )
            record_activity(eval=eval, verb=Activity.Verb.PAUSED, reason=record.reason)
    except IntegrityError:
        return pause_of(eval.eval_set)  # another worker's run tripped it first
    logger.warning(
        "continuous evaluation paused eval_set=%s eval=%s failures=%d window=%d",
        eval.eval_set_id,
        eval.pk,
        record.failures,
        record.window,
    )
    _notify_paused(pause)
    return pause


def _notify_paused(pause: ContinuousPause) -> None:
    from evals.notifications import notify

    eval_set = pause.eval_set
    url = email_link(reverse("traces:evalset_detail", args=[eval_set.workspace.slug, eval_set.pk]))
    subject = f"Continuous evaluation of “{eval_set.name}” paused"
    body = (
        f"Paused: {pause.reason} (v{pause.eval.version}). New traces wait, queued, and are "
        f"judged once a member resumes it or activates another version: {url}"
    )
    payload = {
        "eval_set": eval_set.pk,
        "eval": pause.eval_id,
        "version": pause.eval.version,
        "reason": pause.reason,
        "failures": pause.failures,
        "window": pause.window,
        "example_trace_ids": pause.example_trace_ids,
        "url": url,
    }
    notify(
        workspace=eval_set.workspace, event=PAUSE_EVENT, subject=subject, body=body, payload=payload
    )


def lift(*, eval_set, user=None) -> bool:
    """Delete the set's pause and record who resumed it; False when it was not paused.

    ``continuous.resume`` calls it, then sends the held runs.
    """
    with transaction.atomic():
        pause = (
            ContinuousPause.objects.for_workspace(eval_set.workspace_id)
            .select_for_update()
            .filter(eval_set_id=eval_set.pk)
            .select_related("eval")
            .first()
        )
        if pause is None:
            return False
        pause.delete()
        record_activity(eval=pause.eval, verb=Activity.Verb.RESUMED, actor=user)
    return True


def lift_on_activation(*, eval: Eval) -> bool:
    """Delete the set's pause: a new version was activated. False when it was not paused."""
    deleted, _ = (
        ContinuousPause.objects.for_workspace(eval.workspace_id)
        .filter(eval_set_id=eval.eval_set_id)
        .delete()
    )
    return bool(deleted)
