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
deletes the pause and sends the held runs (a replaced version's to the new one).
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
from evals.queue import enqueue_chunk, enqueue_run
from iofold.lib.runs import ACTIVE

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
    url = reverse("traces:evalset_detail", args=[eval_set.workspace.slug, eval_set.pk])
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


def resume(*, eval_set, user=None) -> int | None:
    """Resume the set's continuous evaluation and send its held runs; return how many.

    Nothing happens (None) when it was not paused.
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
            return None
        pause.delete()
        record_activity(eval=pause.eval, verb=Activity.Verb.RESUMED, actor=user)
    return release_held_runs(eval_set=eval_set)


def clear_on_activation(*, eval: Eval) -> int:
    """A new version was activated: it starts unpaused, with the held traces to judge."""
    deleted, _ = (
        ContinuousPause.objects.for_workspace(eval.workspace_id)
        .filter(eval_set_id=eval.eval_set_id)
        .delete()
    )
    if not deleted:
        return 0
    logger.info("continuous evaluation resumed by activation eval=%s", eval.pk)
    return release_held_runs(eval_set=eval.eval_set)


def release_held_runs(*, eval_set) -> int:
    """Send the set's queued automatic runs to the workers, after commit.

    A run of a version that no longer judges new traces is not run on its old code: it
    is closed and its traces go to the set's current versions instead.
    """
    from evals.execution.continuous import RUNS_ON_NEW_TRACES, queue_automatic_runs

    held = list(
        EvalRun.objects.for_workspace(eval_set.workspace_id)
        .filter(
            eval__eval_set_id=eval_set.pk,
            trigger=EvalRun.Trigger.AUTOMATIC,
            status__in=ACTIVE,
        )
        .select_related("eval")
        .order_by("pk")
    )
    for run in held:
        if run.eval.status not in RUNS_ON_NEW_TRACES and run.status == RunStatus.QUEUED:
            replaced = f"Not run: v{run.eval.version} was replaced while paused; the new one runs."
            EvalRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).fail(replaced)
            transaction.on_commit(
                lambda ids=run.trace_ids: queue_automatic_runs(
                    workspace_id=eval_set.workspace_id, trace_ids=ids
                )
            )
            continue
        chunks = list(
            EvalRunChunk.objects.filter(run=run, status=RunStatus.QUEUED).values_list(
                "pk", flat=True
            )
        )
        if chunks:
            transaction.on_commit(lambda pks=chunks: [enqueue_chunk(pk) for pk in pks])
        elif run.status == RunStatus.QUEUED:
            transaction.on_commit(lambda pk=run.pk: enqueue_run(pk, automatic=True))
    return len(held)
