"""Delete an eval set, many traces, or an integration (its traces kept, unlinked), on a
worker, in batches (a ``DeletionRun``).

At 100,000 traces a deletion in the web request outlived the server's timeout, held its
locks throughout and, cut off, left its work half done. The request instead marks what is
deleted (the set's or the traces' ``deletion``, the integration's
``deletion_requested_at``), which hides it at once, and queues a run; the worker deletes
in batches of ``BATCH`` rows, one short transaction each, and records its progress. A
second request for the same rows returns the same run (queued again if it had failed),
and a run taken over from a worker that died carries on from what is left: the marks say
what that is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.models import Integration
from integrations.services import delete_integration, mark_integration_deleted
from iofold.lib.runs import keep_alive
from iofold.lib.tasks import enqueue
from traces.conversations import recount_conversations
from traces.exceptions import TraceError
from traces.models import (
    DeletionRun,
    EvalSet,
    EvalSetTrace,
    Feedback,
    LabelAssignment,
    LabelChange,
    Trace,
)

logger = logging.getLogger(__name__)

DELETION_TASK = "traces.tasks.delete_task"
# Rows per transaction: short enough that no lock is held for long, few enough statements
# that 100,000 traces take minutes, not hours.
BATCH = 1000
# The traces one request may name by id; the list's selection is one page.
MAX_TRACE_IDS = 10_000
DELETION_STALE_AFTER = timedelta(minutes=10)


# --- asked for in a request ------------------------------------------------------------------


def request_eval_set_deletion(*, eval_set: EvalSet, user) -> DeletionRun:
    """Hide the eval set at once and queue its deletion, with its labels and evals.

    Asked again (a double click, a retried request), the same run is returned, queued
    again if it had failed.
    """
    with transaction.atomic():
        locked = EvalSet.objects.select_for_update().filter(pk=eval_set.pk).first()
        if locked is None:
            raise TraceError("This eval set was already deleted.")
        if locked.deletion_id is not None:
            run = DeletionRun.objects.get(pk=locked.deletion_id)
            return resume_deletion(run)
        run = DeletionRun.objects.create(
            workspace_id=locked.workspace_id,
            kind=DeletionRun.Kind.EVAL_SET,
            name=f"eval set “{locked.name}”"[:300],
            user=user,
        )
        # Archived too: the evals app stops running and generating for it meanwhile.
        EvalSet.objects.filter(pk=locked.pk).update(
            deletion=run, archived_at=Coalesce(F("archived_at"), timezone.now())
        )
        transaction.on_commit(lambda: enqueue(DELETION_TASK, run.pk))
    logger.info("eval set deletion queued run=%s eval_set=%s", run.pk, locked.pk)
    return run


def request_traces_deletion(*, workspace, trace_ids: Iterable[int], user) -> DeletionRun:
    """Hide the workspace's traces of ``trace_ids`` at once and queue their deletion.

    Ids of other workspaces' traces are ignored, as if unknown. Traces already being
    deleted stay with their run; when all are, that run is returned.
    """
    ids = sorted(set(trace_ids))
    if not ids:
        raise TraceError("Select at least one trace to delete.")
    scoped = Trace.objects.for_workspace(workspace)
    with transaction.atomic():
        run = DeletionRun.objects.create(
            workspace=workspace, kind=DeletionRun.Kind.TRACES, name="traces", user=user
        )
        marked = 0
        for start in range(0, len(ids), MAX_TRACE_IDS):
            chunk = ids[start : start + MAX_TRACE_IDS]
            # A concurrent request marking the same traces waits for this one's row locks,
            # then finds them marked: each trace belongs to one run.
            marked += scoped.filter(pk__in=chunk, deletion__isnull=True).update(deletion=run)
        if not marked:
            run.delete()
            earlier = (
                scoped.filter(pk__in=ids[:MAX_TRACE_IDS], deletion__isnull=False)
                .values_list("deletion_id", flat=True)
                .first()
            )
            if earlier is None:
                raise TraceError("None of these traces is in this workspace.")
            return resume_deletion(DeletionRun.objects.get(pk=earlier))
        run.name = f"{marked:,} trace{'s' if marked != 1 else ''}"
        run.total = marked
        run.save(update_fields=["name", "total", "updated_at"])
        transaction.on_commit(lambda: enqueue(DELETION_TASK, run.pk))
    logger.info("traces deletion queued run=%s traces=%d", run.pk, marked)
    return run


def request_integration_deletion(
    *, integration: Integration, user, delete_traces: bool = False
) -> DeletionRun:
    """Hide the integration at once and queue its deletion; its traces are kept.

    The worker unlinks its traces in batches (100,000 in one ``UPDATE`` outlive a request),
    then deletes it. The traces stay visible throughout, with their labels. With
    ``delete_traces`` (asked for explicitly) they are hidden at once through the run (see
    ``TraceQuerySet.present``) and deleted instead. Asked again, the same run is returned
    (with its first choice), queued again if it had failed.
    """
    with transaction.atomic():
        locked = Integration.objects.select_for_update().filter(pk=integration.pk).first()
        if locked is None:
            raise TraceError("This integration was already deleted.")
        earlier = (
            DeletionRun.objects.filter(kind=DeletionRun.Kind.INTEGRATION, integration=locked)
            .order_by("-pk")
            .first()
        )
        if locked.deletion_requested_at is not None and earlier is not None:
            return resume_deletion(earlier)
        run = DeletionRun.objects.create(
            workspace_id=locked.workspace_id,
            kind=DeletionRun.Kind.INTEGRATION,
            integration=locked,
            delete_traces=delete_traces,
            name=f"integration “{locked.name}”"[:300],
            user=user,
        )
        mark_integration_deleted(integration=locked)
        transaction.on_commit(lambda: enqueue(DELETION_TASK, run.pk))
    logger.info("integration deletion queued run=%s integration=%s", run.pk, locked.pk)
    return run


def resume_deletion(run: DeletionRun) -> DeletionRun:
    """Return ``run``; a failed one is queued again to carry on from what is left."""
    if not transaction.get_connection().in_atomic_block:
        with transaction.atomic():
            return resume_deletion(run)
    if run.status == DeletionRun.Status.FAILED:
        if DeletionRun.objects.filter(pk=run.pk, status=DeletionRun.Status.FAILED).update(
            status=DeletionRun.Status.QUEUED, error="", finished_at=None, owner="", takeovers=0
        ):
            transaction.on_commit(lambda: enqueue(DELETION_TASK, run.pk))
            logger.info("deletion queued again run=%s", run.pk)
        run.refresh_from_db()
    return run


# --- carried out by a worker -----------------------------------------------------------------


def execute_deletion(
    *, run_id: int, on_batch: Callable[[float], None] | None = None
) -> DeletionRun | None:
    """Delete what run ``run_id`` marked, in batches, recording progress; then finish it.

    Safe to call again: a run a live worker holds, or a finished one, is left alone, and a
    taken-over run deletes what is still marked. ``on_batch`` receives each batch's seconds.
    """
    if DeletionRun.objects.claim(run_id) is None:
        return DeletionRun.objects.filter(pk=run_id).first()
    run = DeletionRun.objects.get(pk=run_id)
    mine = DeletionRun.objects.filter(pk=run.pk, owner=run.owner)
    with keep_alive(run) as heartbeat:

        def batches(step: Callable[[], int]) -> None:
            """Run ``step`` (one batch in its own transaction) until it deletes nothing."""
            while heartbeat is None or not heartbeat.lost:
                started = time.perf_counter()
                with transaction.atomic():
                    deleted = step()
                    if deleted:
                        mine.update(done=F("done") + deleted, heartbeat_at=timezone.now())
                if on_batch:
                    on_batch(time.perf_counter() - started)
                if not deleted:
                    return

        if run.kind == DeletionRun.Kind.EVAL_SET:
            _delete_eval_set(run, mine, batches)
        elif run.kind == DeletionRun.Kind.INTEGRATION:
            _delete_integration(run, mine, batches)
        else:
            marked = Trace.objects.filter(workspace_id=run.workspace_id, deletion=run)
            batches(lambda: _delete_traces_batch(run.workspace_id, marked))
        if heartbeat is not None and heartbeat.lost:
            return DeletionRun.objects.filter(pk=run_id).first()  # another worker has it
    mine.filter(status=DeletionRun.Status.RUNNING).update(
        status=DeletionRun.Status.SUCCEEDED, finished_at=timezone.now()
    )
    logger.info("deletion done run=%s kind=%s", run.pk, run.kind)
    run.refresh_from_db()
    return run


def _delete_eval_set(run: DeletionRun, mine, batches) -> None:
    eval_set = EvalSet.objects.filter(deletion=run).first()
    if eval_set is None:
        return  # deleted by an earlier attempt
    owned = [
        model.objects.filter(eval_set=eval_set)
        for model in (LabelChange, LabelAssignment, Feedback, EvalSetTrace)
    ]
    # What is left, plus what was done: a taken-over run's bar carries on where it was.
    left = sum(rows.count() for rows in owned) + 1
    mine.update(total=F("done") + left)
    for rows in owned:
        batches(lambda rows=rows: _delete_ids(rows))
    # The set's row last, with what the evals app keeps of it (versions, runs, verdicts).
    batches(lambda: int(bool(EvalSet.objects.filter(pk=eval_set.pk, deletion=run).delete()[0])))


def _delete_integration(run: DeletionRun, mine, batches) -> None:
    if run.integration_id is None:
        return  # deleted by an earlier attempt
    traces = Trace.objects.filter(workspace_id=run.workspace_id, integration_id=run.integration_id)
    # What is left, plus what was done: a taken-over run's bar carries on where it was.
    mine.update(total=F("done") + traces.count() + 1)

    def step() -> int:
        if run.delete_traces:
            return _delete_traces_batch(run.workspace_id, traces)
        return _unlink_traces_batch(traces)

    batches(step)
    batches(lambda: _delete_integration_row(run, step))


def _unlink_traces_batch(rows) -> int:
    """Unlink up to ``BATCH`` of an integration's traces: kept, with their labels."""
    batch = list(rows.order_by().values_list("pk", flat=True)[:BATCH])
    return Trace.objects.filter(pk__in=batch).update(integration=None) if batch else 0


def _delete_integration_row(run: DeletionRun, step: Callable[[], int]) -> int:
    # Locked first: a sync's page takes the same lock and, finding it being deleted, stops
    # (integrations.services._sync); a page committed before is among the traces left.
    integration = (
        Integration.objects.select_for_update()
        .filter(pk=run.integration_id, deletion_requested_at__isnull=False)
        .first()
    )
    if integration is None:
        return 0
    done = 0
    while batch := step():
        done += batch
    delete_integration(integration=integration)
    return done + 1


def _delete_traces_batch(workspace_id: int, rows) -> int:
    batch = list(rows.order_by().values_list("pk", "conversation_id")[:BATCH])
    if not batch:
        return 0
    Trace.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
    conversations = {conversation for _, conversation in batch if conversation}
    if conversations:
        recount_conversations(workspace_id, conversations)
    return len(batch)


def _delete_ids(rows) -> int:
    ids = list(rows.order_by().values_list("pk", flat=True)[:BATCH])
    if ids:
        rows.model.objects.filter(pk__in=ids).delete()
    return len(ids)


# --- what is shown, and the reaper -----------------------------------------------------------


def unfinished_deletions(workspace):
    """Return the workspace's deletions still queued or running, or failed, newest first."""
    return DeletionRun.objects.for_workspace(workspace).exclude(status=DeletionRun.Status.SUCCEEDED)


def recover_deletions(*, include_queued: bool = False) -> int:
    """Enqueue again the deletions whose worker died."""
    return DeletionRun.objects.recover(
        enqueue=lambda run: enqueue(DELETION_TASK, run.pk), include_queued=include_queued
    )


def reap_stale_deletions(*, older_than: timedelta = DELETION_STALE_AFTER) -> int:
    """Fail deletions no worker has touched for ``older_than``; asking again resumes them."""
    return (
        DeletionRun.objects.filter(status=DeletionRun.Status.RUNNING)
        .stale(older_than=older_than)
        .fail("The worker stopped responding; delete again to carry on.")
    )
