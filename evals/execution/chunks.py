"""Split eval runs: chunks of one large run, carried out in parallel by any number of workers.

``start_run`` splits a run over more than ``IOFOLD_EVAL_CHUNK_TRACES`` traces into
``EvalRunChunk`` rows, one task per chunk, a few of them queued at a time
(``runs.dispatch_chunks``: the next ones join the queue's tail as those end, so runs of
other workspaces take turns with a large one). A chunk is a background run of its
own (``iofold.lib.runs``): claimed by one worker, kept alive by its heartbeat, taken over
when its worker dies. Counts stay exact whatever dies:

- a chunk judges its traces ``EXECUTE_CHUNK`` at a time (``pipeline.judge_batches``: the
  next batch is read and the last one written, by a writer thread on PostgreSQL, while the
  sandbox works) and records each batch's verdicts and its own progress in one
  transaction, so a worker killed mid-chunk leaves only whole batches behind, and the
  chunk's next owner judges only the traces this run has no verdict on yet;
- verdicts are upserts on (eval, trace), so a chunk judged again never adds a row;
- the run's counts are recounted from its executions, and the last chunk to finish (or
  the reaper, if that chunk was given up on) finishes the run.

A worker whose chunk's last batch enters the sandbox claims the run's next chunk already
queued and reads its first batch meanwhile (``carry_on``, the task's way): one worker pays
no gap, first read or last write between the chunks its run has in the queue. The chunks
it holds and has not finished go back to the queue when it stops early (a sandbox outage,
a chunk lost to another worker), or are taken over like any chunk if it dies.

A generation measuring its new version on many labelled traces splits that run the same
way and waits for it in ``work_until_done``, carrying out chunks itself meanwhile.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import sandbox
from evals.execution import breaker
from evals.execution.continuous import after_automatic_run
from evals.execution.pipeline import Stages, judge_batches, writes_apart
from evals.execution.runs import (
    EXECUTE_CHUNK,
    _refresh_counts,
    _upsert,
    dispatch_chunks,
    trace_json,
)
from evals.metrics.measure import record_test_result
from evals.models import Eval, EvalExecution, EvalRun, EvalRunChunk, RunStatus
from evals.queue import enqueue_chunk
from evals.sandboxing import metered, sandbox_limits
from iofold.lib.runs import ACTIVE, Heartbeat, commit_asynchronously, keep_alive

logger = logging.getLogger(__name__)


def execute_chunk(*, chunk_id: int, carry_on: bool = False) -> EvalRunChunk | None:
    """Judge one chunk's traces and record them; finish the run if it was the last chunk.

    Safe to call twice: a chunk claimed by a live worker or already finished is left
    alone. With ``carry_on`` (a worker's task), the run's chunks still queued are claimed
    one after the other as this one's last batch enters the sandbox and judged in the
    same pipeline: no gap, first read or last write between two chunks (their own
    messages then find them taken). Raises sandbox.SandboxError when the sandbox cannot
    run (a transient failure puts the chunks held here back in the queue, for the task's
    retry and their own messages; a permanent one fails them).
    """
    if breaker.chunk_is_held(chunk_id=chunk_id):
        # Its eval set is paused: the chunk stays queued; resuming sends it again.
        logger.info("eval run chunk held: its eval set is paused chunk=%s", chunk_id)
        return None
    chunk = _claim(chunk_id, start_run=True)
    if chunk is None:
        logger.info("eval run chunk not claimed chunk=%s", chunk_id)
        return None
    run = chunk.run
    # An active version's continuous runs watch its recent verdicts (breaker).
    watched = run.trigger == EvalRun.Trigger.AUTOMATIC and run.eval.status == Eval.Status.ACTIVE
    stages = Stages()
    eval_set, code, limits = run.eval.eval_set, run.eval.code, sandbox_limits()
    # The chunks claimed here whose last batch is not written yet (the writer removes them).
    held: dict[int, _Held] = {}
    taken: list[int] = []
    lost = False

    def read(item: tuple[_Held, list[int]]):
        return trace_json(workspace_id=run.workspace_id, trace_ids=item[1], eval_set=eval_set)

    def write(item: tuple[_Held, list[int]], ids, results) -> bool:
        entry = item[0]
        entry.remaining -= 1
        last = entry.remaining == 0
        if not _record_batch(entry.chunk, run, ids, results, last=last):
            return False
        if watched and breaker.trip_if_failing(eval=run.eval) is not None:
            # Paused: what this worker holds goes back to the queue, held there.
            if last:
                held.pop(entry.chunk.pk, None)
            return False
        if last:
            held.pop(entry.chunk.pk, None)
            if entry.heartbeat is not None:
                entry.heartbeat.stopped.set()
            return True  # done: a beat that found it finished means nothing
        return not (entry.heartbeat is not None and entry.heartbeat.lost)

    with ExitStack() as beats:

        def batches_of(claimed: EvalRunChunk):
            nonlocal lost
            taken.append(claimed.pk)
            todo = _todo(claimed, run)
            if not todo:
                # Every trace was judged before (or none is left): the chunk is done.
                if not _record_batch(claimed, run, [], [], last=True):
                    lost = True
                return
            entry = _Held(claimed, None, remaining=-(-len(todo) // EXECUTE_CHUNK))
            held[claimed.pk] = entry
            for n, i in enumerate(range(0, len(todo), EXECUTE_CHUNK)):
                yield entry, todo[i : i + EXECUTE_CHUNK]
                if n == 0:
                    # Asked for once the first batch is in the sandbox: the heartbeat's
                    # thread start (2-8 ms on a busy machine) is not in the fill. The
                    # claim's own time stamp stands for the first beat meanwhile.
                    entry.heartbeat = beats.enter_context(keep_alive(claimed))

        # One task carries on for a third of its soft time limit at most (none: no limit):
        # the chunk it takes last has the rest to finish in; the chunks left keep their
        # own messages.
        carry_on_until = time.monotonic() + (settings.CELERY_TASK_SOFT_TIME_LIMIT or math.inf) / 3

        def every_batch():
            yield from batches_of(chunk)
            while (
                carry_on
                and not lost
                and time.monotonic() < carry_on_until
                and not (watched and breaker.run_is_held(run_id=run.pk))
                and (following := _claim_queued(run)) is not None
            ):
                yield from batches_of(following)

        # The first batch's jail starts while its traces are read, not after them: 20-40 ms
        # off each task's first batch (the batches after it take the jail their previous
        # one started); a chunk found with nothing left to judge ends it unused.
        sandbox.start_ahead(limits)
        try:
            kept = judge_batches(
                every_batch(),
                read=read,
                # Each batch starts the next one's jail (the last one's is dropped below).
                judge=lambda texts: metered(sandbox.run_json, code, texts, limits, ahead=True),
                write=write,
                stages=stages,
                write_apart=writes_apart(),
                write_first=breaker.may_trip if watched else None,
            )
        except sandbox.SandboxError as exc:
            if exc.permanent:
                for entry in list(held.values()):
                    fail_chunk(
                        chunk_id=entry.chunk.pk,
                        error=f"The sandbox could not run the eval: {exc.message}",
                    )
            else:
                # This chunk's task retries it; the others go back to their own queue.
                _release(held.values(), requeue=lambda pk: pk != chunk.pk)
            raise
        finally:
            sandbox.drop_spare()
    if not kept or lost:
        # What this worker still held goes to other workers (the chunk that said stop is
        # another's already).
        _release(held.values(), requeue=lambda pk: True)
        logger.warning("eval run chunk lost chunk=%s", ",".join(map(str, taken)))
        dispatch_chunks(run_id=run.pk)  # for the chunks finished here before
        return None
    logger.info(
        "eval run chunk done chunk=%s run=%s %s",
        ",".join(map(str, taken)),
        run.pk,
        stages.log_fields(),
    )
    dispatch_chunks(run_id=run.pk)
    finish_if_complete(run_id=run.pk)
    return chunk


@dataclass
class _Held:
    """A chunk claimed by ``execute_chunk``: its heartbeat and how many batches are left."""

    chunk: EvalRunChunk
    heartbeat: Heartbeat | None
    remaining: int


def _claim(chunk_id: int, *, start_run: bool = False) -> EvalRunChunk | None:
    """Claim a chunk and return it with its run and eval; None if another process has it.

    With ``start_run``, the run is marked running too, in the same transaction: one commit,
    one wait for the disk, where each was 7-8 ms of a chunk's first batch at load 5. The
    claim waits for the disk: a claim a crash could take back would leave the chunk queued
    with its message already acknowledged, which only a worker's start-up enqueues again.
    """
    with transaction.atomic():
        if EvalRunChunk.objects.claim(chunk_id) is None:
            return None
        chunk = (
            EvalRunChunk.objects.select_related("run__eval__eval_set")
            # A chunk judges its own ids, never its run's (every one of them: a
            # 1,000,000-trace run's took 230 ms to load, for each of its 200 chunks).
            .defer("run__trace_ids")
            .get(pk=chunk_id)
        )
        if start_run:
            now = timezone.now()
            EvalRun.objects.filter(pk=chunk.run_id, status=RunStatus.QUEUED).update(
                status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
            )
    return chunk


def _todo(chunk: EvalRunChunk, run: EvalRun) -> list[int]:
    """Return the chunk's traces this run has no verdict on yet, in order."""
    # A chunk commits its verdicts and `judged` together, batch by batch: one that
    # recorded nothing yet (every first attempt) has no verdict of this run to skip.
    if not chunk.judged:
        return list(chunk.trace_ids)
    judged = set(
        EvalExecution.objects.filter(run=run, trace_id__in=chunk.trace_ids).values_list(
            "trace_id", flat=True
        )
    )
    return [pk for pk in chunk.trace_ids if pk not in judged]


def _claim_queued(run: EvalRun) -> EvalRunChunk | None:
    """Claim the run's first chunk sent and still queued; None when no worker left one.

    Only one already sent: a chunk not sent yet waits its turn at the queue's tail
    (``dispatch_chunks``), behind the other runs queued meanwhile.
    """
    queued = (
        EvalRunChunk.objects.for_workspace(run.workspace_id)
        .filter(run=run, status=RunStatus.QUEUED, heartbeat_at__isnull=False)
        .order_by("index")
        .values_list("pk", flat=True)
    )
    # Other workers may take the first ones at the same moment: a few tries, not a scan.
    for pk in queued[:3]:
        if (claimed := _claim(pk)) is not None:
            return claimed
    return None


def _release(entries, *, requeue) -> None:
    """Put the chunks held here back in the queue, with what they recorded; enqueue them.

    A chunk taken over by another process meanwhile is left to it.
    """
    for entry in list(entries):
        chunk = entry.chunk
        released = EvalRunChunk.objects.filter(
            pk=chunk.pk, status=RunStatus.RUNNING, owner=chunk.owner
        ).update(status=RunStatus.QUEUED, owner="")
        if released and requeue(chunk.pk):
            # Its own message may have been taken already (and found it claimed).
            enqueue_chunk(chunk.pk, background=chunk.run.is_background)


def work_until_done(*, run_id: int) -> EvalRun:
    """Carry out a split run's chunks in this process, with any worker helping; return it final.

    For a caller that needs the verdicts before it goes on (generation measuring a new
    version): it claims every chunk no live worker holds, the chunks' own tasks let other
    workers take the rest, and it waits while they do. A chunk whose worker died is taken
    over here like anywhere else (the same claim), so the run always ends. Raises
    sandbox.SandboxError as ``execute_chunk`` does.
    """
    while True:
        pending = EvalRunChunk.objects.filter(run_id=run_id, status__in=ACTIVE)
        for chunk_id in pending.values_list("pk", flat=True):
            execute_chunk(chunk_id=chunk_id, carry_on=True)
        # Every chunk may have ended without finishing the run (one was given up on).
        finish_if_complete(run_id=run_id)
        run = EvalRun.objects.get(pk=run_id)
        if run.status not in ACTIVE:
            return run
        # Other workers hold the chunks left: look again once they may have moved.
        time.sleep(min(1.0, settings.IOFOLD_RUN_HEARTBEAT_SECONDS))


def _record_batch(
    chunk: EvalRunChunk, run: EvalRun, ids: list[int], results: list, *, last: bool
) -> bool:
    """Record one batch's verdicts with the chunk's progress; False if the chunk was lost.

    Only the chunk's owner records: a worker that lost the chunk to another (it went
    silent too long) drops its results. The chunk's last batch also marks it succeeded.
    """
    now = timezone.now()
    done = {"status": RunStatus.SUCCEEDED, "finished_at": now} if last else {}
    with transaction.atomic():
        # A chunk's verdicts and its own status commit together, in order: a crash loses
        # the last chunks whole, and they are judged again.
        commit_asynchronously()
        if not EvalRunChunk.objects.filter(
            pk=chunk.pk, status=RunStatus.RUNNING, owner=chunk.owner
        ).update(judged=F("judged") + len(ids), heartbeat_at=now, **done):
            return False
        _upsert(eval=run.eval, run=run, trace_ids=ids, results=results)
        # Added, not recounted (a recount reads every verdict of the run so far, batch
        # after batch): these traces had no verdict of this run, or the chunk's progress
        # would have said so. The run's last chunk recounts (finish_if_complete).
        passed = sum(1 for r in results if r.error is None and r.passed is True)
        failed = sum(1 for r in results if r.error is None and r.passed is False)
        EvalRun.objects.filter(pk=run.pk).update(
            heartbeat_at=now,
            done=F("done") + len(ids),
            passed=F("passed") + passed,
            failed=F("failed") + failed,
            errors=F("errors") + (len(ids) - passed - failed),
        )
    return True


def fail_chunk(*, chunk_id: int, error: str) -> None:
    """Mark a chunk failed; its run finishes (failed) once its other chunks are done."""
    chunks = EvalRunChunk.objects.filter(pk=chunk_id)
    chunks.fail(error)
    run_id = chunks.values_list("run_id", flat=True).first()
    if run_id is not None:
        dispatch_chunks(run_id=run_id)
        finish_if_complete(run_id=run_id)


def finish_if_complete(*, run_id: int) -> EvalRun | None:
    """Finish a split run whose chunks are all final; None while some are still at work.

    Called by every chunk as it ends, so two may call at once: the conditional update
    lets exactly one finish the run and do what follows (scores, re-measuring).
    """
    chunks = EvalRunChunk.objects.filter(run_id=run_id)
    if chunks.filter(status__in=ACTIVE).exists():
        return None
    run = EvalRun.objects.select_related("eval").defer("trace_ids").get(pk=run_id)
    if run.status not in ACTIVE:
        return None
    _refresh_counts(run)
    failed = chunks.filter(status=RunStatus.FAILED).values_list("error", flat=True).first()
    if failed is not None:
        if EvalRun.objects.filter(pk=run_id).fail(failed):
            logger.warning("split eval run failed run=%s", run_id)
        return None
    now = timezone.now()
    if not EvalRun.objects.filter(pk=run_id, status__in=ACTIVE).update(
        status=RunStatus.SUCCEEDED, finished_at=now, heartbeat_at=now
    ):
        return None  # another chunk finished it
    run.refresh_from_db()
    logger.info("split eval run finished run=%s done=%d errors=%d", run.pk, run.done, run.errors)
    if run.trigger == EvalRun.Trigger.MANUAL:
        record_test_result(run=run)
    elif run.trigger == EvalRun.Trigger.AUTOMATIC:
        after_automatic_run(run=run)
    return run


def recover_chunks(*, include_queued: bool = False) -> int:
    """Enqueue again the chunks whose worker died; they skip the traces already judged.

    Then send each split run's next chunks where fewer than its share are in flight: a
    worker that died as its chunk ended sent none (``dispatch_chunks``).
    """
    # A paused set's queued chunks wait for its resume, which sends them.
    held = EvalRunChunk.objects.filter(
        status=RunStatus.QUEUED,
        run__trigger=EvalRun.Trigger.AUTOMATIC,
        run__eval__eval_set__continuous_pause__isnull=False,
    )
    # A chunk never sent waits for its turn, not for a lost message.
    waiting = EvalRunChunk.objects.filter(status=RunStatus.QUEUED, heartbeat_at__isnull=True)
    recovered = (
        EvalRunChunk.objects.exclude(pk__in=held)
        .exclude(pk__in=waiting)
        .select_related("run")
        .defer("run__trace_ids", "run__inputs", "run__results")
        .recover(
            enqueue=lambda chunk: enqueue_chunk(chunk.pk, background=chunk.run.is_background),
            include_queued=include_queued,
        )
    )
    for run_id in waiting.exclude(pk__in=held).values_list("run_id", flat=True).distinct():
        dispatch_chunks(run_id=run_id)
    return recovered


def reap_split_runs() -> int:
    """Finish split runs whose chunks all ended but whose last chunk did not finish them.

    A chunk given up on by the recovery (its worker died too often) is failed without a
    task to finish its run; this closes such runs with exact counts.
    """
    open_runs = EvalRun.objects.filter(status__in=ACTIVE, chunks__isnull=False).distinct()
    ended = open_runs.exclude(chunks__status__in=ACTIVE)
    finished = 0
    for run_id in ended.values_list("pk", flat=True):
        finish_if_complete(run_id=run_id)
        finished += 1
    return finished
