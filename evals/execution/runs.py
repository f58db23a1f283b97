"""Run eval versions over traces in the sandbox and keep one verdict per (eval, trace)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Count, Q, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone

import sandbox
from evals.exceptions import EvalError, sandbox_failure
from evals.execution import breaker
from evals.execution.pipeline import Stages, judge_batches
from evals.judging.runs import (
    JudgedResults,
    add_run_spend,
    open_session,
    run_sandbox,
    usage_columns,
    uses_judge,
)
from evals.judging.session import Usage
from evals.judging.spend import nothing_left
from evals.metrics.measure import record_test_result
from evals.models import Eval, EvalExecution, EvalRun, EvalRunChunk, RunStatus
from evals.queue import enqueue_chunk, enqueue_run, enqueue_sent_batch
from evals.sandboxing import sandbox_limits
from iofold.lib.runs import ACTIVE, Heartbeat, keep_alive
from traces.conversations import eval_payloads
from traces.models import EvalSet, Trace

logger = logging.getLogger(__name__)

# Traces per sandbox call in a queued run: big enough to amortise the jail start (the
# sandbox keeps it in one jail: sandbox.runner.MIN_TRACES_PER_JAIL), small enough
# that the heartbeat moves (each jail has at most its 120 s wall limit) and a killed worker
# loses little.
EXECUTE_CHUNK = 1000
# A running run no worker has touched for this long is failed. Its heartbeat moves every
# few seconds and a run whose worker died is taken over at once (iofold/lib/runs.py), so
# this is the last resort.
RUN_STALE_AFTER = timedelta(minutes=10)
# run_eval_now is for requests and generation; bigger batches go through a queued run.
MAX_NOW_TRACES = 2000
EXECUTION_FIELDS = (
    "run",
    "passed",
    "reason",
    "error",
    "duration_ms",
    "output",
    "judge_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced_calls",
    "updated_at",
)


def start_run(
    *,
    eval: Eval,
    trace_ids: Sequence[int],
    trigger: str,
    enqueue: bool = True,
    stored: set[int] | None = None,
) -> EvalRun:
    """Create a queued run of `eval` over the workspace's `trace_ids` and enqueue it on commit.

    Ids of other workspaces or deleted traces are dropped; order and duplicates are kept
    out. A run over more than ``IOFOLD_EVAL_CHUNK_TRACES`` traces of an eval that calls no
    judge is split into chunks, one task each, that any number of workers share. With
    `enqueue=False` nothing is split or queued and the caller runs it (`execute_run`) itself.
    ``stored``: the workspace's ids among `trace_ids`, when the caller already read them
    (``stored_trace_ids``).
    """
    wanted = list(dict.fromkeys(int(pk) for pk in trace_ids))
    existing = stored if stored is not None else stored_trace_ids(eval.workspace_id, wanted)
    kept = [pk for pk in wanted if pk in existing]
    automatic = trigger == EvalRun.Trigger.AUTOMATIC
    size = settings.IOFOLD_EVAL_CHUNK_TRACES
    with transaction.atomic():
        run = EvalRun.objects.create(
            workspace_id=eval.workspace_id,
            eval=eval,
            trigger=trigger,
            trace_ids=kept,
            total=len(kept),
        )
        # Judge calls spend one run budget, which parallel chunks could not share exactly;
        # such a run stays whole (its judge calls are already made 8 at a time).
        if enqueue and len(kept) > size and not uses_judge(eval.code):
            EvalRunChunk.objects.bulk_create(
                EvalRunChunk(
                    workspace_id=eval.workspace_id,
                    run=run,
                    index=n,
                    trace_ids=kept[start : start + size],
                )
                for n, start in enumerate(range(0, len(kept), size))
            )
            dispatch_chunks(run_id=run.pk)
        elif enqueue:
            transaction.on_commit(
                lambda: enqueue_run(run.pk, automatic=automatic, background=run.is_background)
            )
    logger.info("eval run queued run=%s eval=%s traces=%d", run.pk, eval.pk, len(kept))
    return run


def stored_trace_ids(workspace_id: int, trace_ids: Sequence[int]) -> set[int]:
    """Return the ids among ``trace_ids`` of the workspace's stored traces."""
    return set(
        Trace.objects.for_workspace(workspace_id)
        .filter(pk_in(Trace, trace_ids))
        .values_list("pk", flat=True)
    )


def dispatch_chunks(*, run_id: int, resend: bool = False) -> int:
    """Send the split run's next chunks to the queue, on commit; return how many.

    At most ``IOFOLD_EVAL_CHUNKS_IN_FLIGHT`` of a run's chunks are sent and unfinished at a
    time, and the next ones go to the queue's tail as those end, behind whatever other runs
    were queued meanwhile: runs of every workspace take turns at the workers, a chunk at a
    time, however many chunks one of them has. A queued chunk's heartbeat says when it was
    last sent; one never sent has none. Called as a run is split, whenever a chunk task
    ends, and by the sweep (a worker that died between its chunk's end and this sends
    nothing: the sweep does). ``resend``: the chunks sent but not claimed are sent again
    too (a paused set's resume: their messages were dropped while it was held).
    """
    with transaction.atomic():
        # Locked, so two chunks ending at once do not both fill the same free place.
        runs = EvalRun.objects.select_for_update().only("trigger")
        run = runs.filter(pk=run_id, status__in=ACTIVE).first()
        if run is None:
            return 0
        chunks = EvalRunChunk.objects.filter(run_id=run_id, status__in=ACTIVE)
        sent = chunks.filter(heartbeat_at__isnull=False)
        free = settings.IOFOLD_EVAL_CHUNKS_IN_FLIGHT - sent.count()
        # One being claimed meanwhile (a generation works on its run's chunks itself) is
        # skipped, not waited for: that claim holds it and then waits for the run's row.
        waiting = chunks.filter(status=RunStatus.QUEUED, heartbeat_at__isnull=True)
        waiting = waiting.order_by("index").select_for_update(skip_locked=True)
        pks = list(waiting.values_list("pk", flat=True)[: max(free, 0)])
        EvalRunChunk.objects.filter(pk__in=pks).update(heartbeat_at=timezone.now())
        if resend:
            pks = list(sent.filter(status=RunStatus.QUEUED).values_list("pk", flat=True)) + pks
        background = run.is_background
        transaction.on_commit(lambda: [enqueue_chunk(pk, background=background) for pk in pks])
    return len(pks)


def claim_run(*, run_id: int) -> EvalRun | None:
    """Mark a queued run (or one whose worker died) running and return it; None if taken."""
    if EvalRun.objects.claim(run_id) is None:
        return None
    return EvalRun.objects.select_related("eval__eval_set").get(pk=run_id)


def execute_run(*, run_id: int) -> EvalRun | None:
    """Run a queued run to the end, in chunks, recording each chunk's verdicts as it goes.

    Safe to call twice: a run already claimed by a live worker is left alone, a finished
    one is returned as is, and traces this run already judged are not judged again.
    Raises sandbox.SandboxError when the sandbox cannot run at all (after putting a
    transient failure back in the queue, marking a permanent one failed).
    """
    if EvalRunChunk.objects.filter(run_id=run_id).exists() or EvalRun.objects.filter(
        pk=run_id, inputs__isnull=False
    ):
        # A split run is carried out by its chunks' tasks (evals/execution/chunks.py), a
        # run of sent traces by its own (evals/execution/batch.py).
        return EvalRun.objects.filter(pk=run_id).first()
    run = claim_run(run_id=run_id)
    if run is None:
        logger.info("eval run not claimed run=%s", run_id)
        return EvalRun.objects.filter(pk=run_id).first()
    with keep_alive(run) as heartbeat:
        return _execute_claimed(run, heartbeat=heartbeat)


def _execute_claimed(run: EvalRun, *, heartbeat: Heartbeat | None) -> EvalRun:
    eval = run.eval
    # `done` counts this run's executions (kept with them in one transaction), so a run
    # that has none yet needs no look-up of what it already judged.
    done_ids = (
        set(EvalExecution.objects.filter(run=run, eval=eval).values_list("trace_id", flat=True))
        if run.done
        else set()
    )
    todo = [pk for pk in run.trace_ids if pk not in done_ids]
    limits = sandbox_limits()
    # Capped by what is left of the monthly budget, whatever started the run.
    session = open_session(eval=eval)
    monthly = nothing_left(session.budget) if session and session.available else ""
    if monthly:
        # Nothing left this month: say so once instead of on every trace.
        fail_run(run_id=run.pk, error=f"Not run: {monthly}.")
        return EvalRun.objects.get(pk=run.pk)
    spent = Usage()
    stopped = ""
    # An active version's continuous runs watch its recent verdicts (evals/execution/breaker).
    watched = run.trigger == EvalRun.Trigger.AUTOMATIC and eval.status == Eval.Status.ACTIVE

    def read(batch: Sequence[int]) -> tuple[list[int], list[str]]:
        return trace_json(workspace_id=run.workspace_id, trace_ids=batch, eval_set=eval.eval_set)

    def judge(texts: list[str]) -> JudgedResults:
        nonlocal left
        left -= 1
        # Without judge calls, a batch with another after it starts that one's jail.
        ahead = session is None and left > 0
        call = partial(sandbox.run_json, ahead=True) if ahead else sandbox.run_json
        return run_sandbox(session, call, eval.code, texts, limits)

    def write(_batch: Sequence[int], ids: list[int], judged: JudgedResults) -> bool:
        nonlocal spent, stopped, written
        with transaction.atomic():
            _upsert(eval=eval, run=run, trace_ids=ids, results=judged.results, usage=judged.usage)
            _refresh_counts(run)
            if session is not None:
                spent = add_run_spend(run=run, session=session, since=spent)
        if session is not None and session.exhausted:
            # What is left would only collect the same error trace by trace.
            stopped = f"Stopped: {session.exhausted}."
            return False
        if heartbeat is not None and heartbeat.lost:
            # Another worker took the run over (this one was silent too long), or it was
            # failed: leave the rest to the new owner.
            stopped = "lost"
            return False
        written += 1
        if watched and breaker.trip_if_failing(eval=eval) is not None and written < len(batches):
            stopped = "paused"
            return False
        return True

    batches = [todo[i : i + EXECUTE_CHUNK] for i in range(0, len(todo), EXECUTE_CHUNK)]
    left = len(batches)  # not judged yet
    written = 0
    stages = Stages()
    try:
        if session is None:
            # The database work of one batch overlaps the sandbox's on the next.
            judge_batches(
                batches,
                read=read,
                judge=judge,
                write=write,
                stages=stages,
                write_first=(lambda judged: breaker.may_trip(judged.results)) if watched else None,
            )
        else:
            # Judge calls record their spend in the database as they go: one batch at a
            # time, all in this thread.
            for batch in batches:
                ids, texts = read(batch)
                if not write(batch, ids, judge(texts)):
                    break
    except sandbox.SandboxError as exc:
        if exc.permanent:
            fail_run(run_id=run.pk, error=f"The sandbox could not run the eval: {exc.message}")
        else:
            EvalRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
                status=RunStatus.QUEUED
            )
        raise
    finally:
        sandbox.drop_spare()  # a run stopped early leaves its next batch's jail
    if stopped == "lost":
        logger.warning("eval run given up run=%s", run.pk)
        return EvalRun.objects.get(pk=run.pk)
    if stopped == "paused":
        # The rest waits, queued, for the set to be resumed (it skips what was judged).
        EvalRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(status=RunStatus.QUEUED)
        logger.warning("eval run held: its eval set was paused run=%s", run.pk)
        return EvalRun.objects.get(pk=run.pk)
    if stopped:
        fail_run(run_id=run.pk, error=stopped)
        return EvalRun.objects.get(pk=run.pk)
    if session is None:
        logger.info("eval run judged run=%s %s", run.pk, stages.log_fields())
    run = finish_run(run=run)
    if run.trigger == EvalRun.Trigger.MANUAL:
        # "Test again" re-measures the version even when nobody watches the progress page.
        record_test_result(run=run)
    return run


def trace_json(
    *, workspace_id: int, trace_ids: Sequence[int], eval_set=None
) -> tuple[list[int], list[str]]:
    """Return the ids of the workspace's traces among `trace_ids` and their data as JSON text.

    The database returns the text stored (``json`` on PostgreSQL: traces.fields), so the
    data is never decoded into Python objects only to be encoded again for the
    sandbox. Deleted traces are left out; the order is the database's. A conversation
    set's items are conversations, built from their turns (``eval_payloads``).
    """
    if eval_set is not None and eval_set.unit == EvalSet.Unit.CONVERSATION:
        traces = list(Trace.objects.for_workspace(workspace_id).filter(pk__in=list(trace_ids)))
        payloads = eval_payloads(eval_set, traces)
        return [t.pk for t in traces], [json.dumps(p, default=str) for p in payloads]
    rows = (
        Trace.objects.for_workspace(workspace_id)
        .filter(pk_in(Trace, trace_ids))
        # In any order (ids and texts stay paired): the model's default ordering made
        # PostgreSQL sort a batch's payloads before sending them.
        .order_by()
        .values_list("id", Cast("data", TextField()))
    )
    ids, texts = [], []
    for pk, text in rows:
        ids.append(pk)
        texts.append(text)
    return ids, texts


def pk_in(model, pks: Sequence[int]) -> Q | RawSQL:
    """Return a filter on ``model``'s primary key among ``pks``, as one array on PostgreSQL.

    ``pk__in`` sends one placeholder per id: psycopg spends about as long rewriting a
    1,000-id query as the database spends running it. The ids go as one array literal,
    ``'{1,2,3}'::bigint[]``: a constant the planner matches by hashing. A Python list
    would be bound as ``ARRAY[1, 2, 3]``, which PostgreSQL compares element by element
    for every row (10,000 ids against 10,000 traces: 0.6 s instead of 40 ms).
    """
    if connection.vendor != "postgresql":
        return Q(pk__in=list(pks))
    quote = connection.ops.quote_name
    column = f"{quote(model._meta.db_table)}.{quote(model._meta.pk.column)}"
    # int() keeps the literal to digits and commas whatever the caller passed.
    literal = "{" + ",".join(str(int(pk)) for pk in pks) + "}"
    # Only the model's own table and column names go into the SQL; the ids are a parameter.
    return RawSQL(f"{column} = ANY(%s::bigint[])", (literal,), output_field=BooleanField())  # noqa: S611


def run_eval_now(
    *,
    eval: Eval,
    traces: Sequence[Trace],
    trigger: str = EvalRun.Trigger.MANUAL,
    limits: sandbox.Limits | None = None,
    bounded: bool = False,
) -> list[EvalExecution]:
    """Run `eval` on `traces` right now (one sandbox call) and return the stored executions.

    For small batches (a request, a generation); records an EvalRun so the history
    shows it. Raises EvalError when the sandbox cannot run at all. `bounded`: `limits`
    stand as given even for judge calls (``run_sandbox``).
    """
    traces = list(traces)
    if len(traces) > MAX_NOW_TRACES:
        raise EvalError(
            f"{len(traces)} traces are too many to run at once (at most {MAX_NOW_TRACES}); "
            "start a run instead."
        )
    session = open_session(eval=eval)
    monthly = nothing_left(session.budget) if session and session.available else ""
    if monthly:
        raise EvalError(f"Not run: {monthly}.")
    try:
        judged = run_sandbox(
            session,
            sandbox.run,
            eval.code,
            eval_payloads(eval.eval_set, traces),
            limits or sandbox_limits(),
            bounded=bounded,
        )
    except sandbox.SandboxError as exc:
        raise sandbox_failure(exc) from exc
    run = record_completed_run(
        eval=eval, traces=traces, results=judged.results, trigger=trigger, usage=judged.usage
    )
    if session is not None:
        add_run_spend(run=run, session=session, since=Usage())
        run.refresh_from_db()
    return list(
        EvalExecution.objects.filter(run=run, eval=eval)
        .select_related("trace")
        .order_by("trace_id")
    )


def run_unjudged_labels(*, eval: Eval) -> None:
    """Run the version now on the set's labelled traces it has no verdict on yet."""
    from traces.selectors import labelled_examples

    examples = labelled_examples(eval.eval_set)
    judged = set(
        EvalExecution.objects.filter(eval=eval, trace_id__in=[e.trace.pk for e in examples])
        .values_list("trace_id", flat=True)
        .order_by()
    )
    missing = [e.trace for e in examples if e.trace.pk not in judged]
    if missing:
        run_eval_now(eval=eval, traces=missing, trigger=EvalRun.Trigger.MANUAL)


def record_completed_run(
    *,
    eval: Eval,
    traces: Sequence[Trace],
    results: Sequence[sandbox.Result],
    trigger: str,
    usage: Sequence[Usage | None] = (),
) -> EvalRun:
    """Store a finished run of `eval` whose sandbox results are already known."""
    now = timezone.now()
    with transaction.atomic():
        run = EvalRun.objects.create(
            workspace_id=eval.workspace_id,
            eval=eval,
            trigger=trigger,
            status=RunStatus.RUNNING,
            trace_ids=[t.pk for t in traces],
            total=len(traces),
            started_at=now,
            heartbeat_at=now,
        )
        _upsert(eval=eval, run=run, trace_ids=[t.pk for t in traces], results=results, usage=usage)
        _refresh_counts(run)
    return finish_run(run=run)


def record_results(
    *,
    eval: Eval,
    run: EvalRun | None,
    traces: Sequence[Trace],
    results: Sequence[sandbox.Result],
) -> None:
    """Upsert one EvalExecution per trace: a new verdict replaces the old one."""
    _upsert(eval=eval, run=run, trace_ids=[t.pk for t in traces], results=results)


def _upsert(
    *,
    eval: Eval,
    run: EvalRun | None,
    trace_ids: Sequence[int],
    results: Sequence[sandbox.Result],
    usage: Sequence[Usage | None] = (),
) -> None:
    """Write one execution per (trace id, result) in one statement."""
    if len(trace_ids) != len(results):
        raise ValueError("one sandbox result per trace is required")
    # The table leaves the eval and workspace of a verdict to its run's foreign keys.
    if run is not None and (run.eval_id, run.workspace_id) != (eval.pk, eval.workspace_id):
        raise ValueError("a run's verdicts are its own eval's")
    if not trace_ids:
        return
    if connection.vendor == "postgresql":
        return _upsert_postgresql(
            eval=eval,
            run=run,
            trace_ids=trace_ids,
            results=results,
            # Without judge calls (every automatic run of a code eval) the spend is all
            # zeros: the columns are left out of the copy.
            spend=usage_columns(usage, len(results)) if usage else None,
        )
    spend = usage_columns(usage, len(results))
    rows = [
        EvalExecution(
            workspace_id=eval.workspace_id,
            eval=eval,
            run=run,
            trace_id=trace_id,
            passed=result.passed if result.error is None else None,
            reason=result.reason or "",
            error=result.error or "",
            duration_ms=result.duration_ms,
            output=result.output or "",
            judge_calls=calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            unpriced_calls=unpriced,
        )
        for trace_id, result, (calls, input_tokens, output_tokens, cost, unpriced) in zip(
            trace_ids, results, spend, strict=True
        )
    ]
    EvalExecution.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["eval", "trace"],
        update_fields=list(EXECUTION_FIELDS),
    )


# The same upsert as bulk_create's, with the rows copied (COPY, text format) into a
# temporary table of this connection that the upsert reads: bulk_create builds a model
# instance and prepares every value of every row, and psycopg dumps ten 1,000-item arrays
# in Python at five times the cost of one ``json.dumps``. Against the rows as one JSON
# document unpacked by ``jsonb_to_recordset`` (before), 10 batches of 1,000 verdicts took
# 598 ms instead of 711 (median of 6, alternated, load 4-5) and 32 ms of this process's
# CPU instead of 48. Tests compare both paths' rows (tests/evals/test_execution.py).
# Kept for the connection, emptied at every commit: only the first batch creates it.
_STAGE_SQL = """
CREATE TEMPORARY TABLE IF NOT EXISTS iofold_verdict_stage (
    t bigint, p boolean, r text, e text, d float8, o text,
    j integer, i integer, u integer, c numeric, n integer
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE_SQL = "COPY iofold_verdict_stage FROM STDIN"
# The rows of a batch without judge calls: its spend columns stay null, read as zeros.
_COPY_STAGE_NO_SPEND_SQL = "COPY iofold_verdict_stage (t, p, r, e, d, o) FROM STDIN"
# The staged rows are taken out as they are read: a later upsert in the same transaction
# finds the table empty.
_UPSERT_SQL = """
WITH r AS (DELETE FROM iofold_verdict_stage RETURNING *)
INSERT INTO {table} (workspace_id, eval_id, run_id, created_at, updated_at, score_error,
                     trace_id, passed, reason, error, duration_ms, output,
                     judge_calls, input_tokens, output_tokens, cost_usd, unpriced_calls)
SELECT %s, %s, %s, %s, %s, '', r.t, r.p, r.r, r.e, r.d, r.o,
       COALESCE(r.j, 0), COALESCE(r.i, 0), COALESCE(r.u, 0), COALESCE(r.c, 0),
       COALESCE(r.n, 0)
FROM r
ON CONFLICT (eval_id, trace_id) DO UPDATE SET
    run_id = EXCLUDED.run_id, passed = EXCLUDED.passed, reason = EXCLUDED.reason,
    error = EXCLUDED.error, duration_ms = EXCLUDED.duration_ms, output = EXCLUDED.output,
    judge_calls = EXCLUDED.judge_calls, input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens, cost_usd = EXCLUDED.cost_usd,
    unpriced_calls = EXCLUDED.unpriced_calls, updated_at = EXCLUDED.updated_at
"""


def _upsert_postgresql(
    *,
    eval: Eval,
    run: EvalRun | None,
    trace_ids: Sequence[int],
    results: Sequence[sandbox.Result],
    spend: Sequence[tuple] | None,
) -> None:
    now = timezone.now()
    sql = _UPSERT_SQL.format(table=connection.ops.quote_name(EvalExecution._meta.db_table))
    rows = (
        (
            int(trace_id),
            result.passed if result.error is None else None,
            result.reason or "",
            result.error or "",
            float(result.duration_ms),
            result.output or "",
        )
        for trace_id, result in zip(trace_ids, results, strict=True)
    )
    # One transaction at least: the staged rows are gone at the commit that ends it.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(_STAGE_SQL)
        if spend is None:
            # 6 columns a row instead of 11: 1.4 ms instead of 2.5 to format 1,000 rows,
            # in the writer thread, the slowest of a chunk's pipeline (docs/sandbox.md).
            with cursor.cursor.copy(_COPY_STAGE_NO_SPEND_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            with cursor.cursor.copy(_COPY_STAGE_SQL) as copy:
                # The cost is a Decimal: numeric's input reads its own digits.
                for row, columns in zip(rows, spend, strict=True):
                    copy.write_row(row + columns)
        cursor.execute(sql, [eval.workspace_id, eval.pk, run.pk if run else None, now, now])


def _refresh_counts(run: EvalRun) -> None:
    counts = EvalExecution.objects.filter(run=run).aggregate(
        n_done=Count("id"),
        n_passed=Count("id", filter=Q(passed=True)),
        n_failed=Count("id", filter=Q(passed=False)),
        n_errors=Count("id", filter=Q(passed__isnull=True)),
    )
    EvalRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now(),
        done=counts["n_done"],
        passed=counts["n_passed"],
        failed=counts["n_failed"],
        errors=counts["n_errors"],
    )


def finish_run(*, run: EvalRun) -> EvalRun:
    """Mark a running run succeeded and return it fresh."""
    EvalRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.SUCCEEDED, finished_at=timezone.now(), heartbeat_at=timezone.now()
    )
    run.refresh_from_db()
    logger.info(
        "eval run finished run=%s eval=%s status=%s done=%d errors=%d",
        run.pk,
        run.eval_id,
        run.status,
        run.done,
        run.errors,
    )
    return run


def fail_run(*, run_id: int, error: str) -> None:
    """Mark an unfinished run failed with a message for the user."""
    EvalRun.objects.filter(pk=run_id).fail(error)


def recover_eval_runs(*, include_queued: bool = False) -> int:
    """Enqueue again the eval runs whose worker died; they skip the traces already judged."""

    def enqueue(run: EvalRun) -> None:
        if run.inputs is not None:
            enqueue_sent_batch(run.pk)
        else:
            enqueue_run(
                run.pk,
                automatic=run.trigger == EvalRun.Trigger.AUTOMATIC,
                background=run.is_background,
            )

    # A split run has no process of its own: its chunks are recovered instead. A paused
    # set's held runs wait for its resume, which sends them.
    unsplit = EvalRun.objects.filter(chunks__isnull=True).exclude(breaker.held_runs())
    return unsplit.recover(enqueue=enqueue, include_queued=include_queued)


def reap_stale_runs(*, older_than: timedelta = RUN_STALE_AFTER) -> int:
    """Fail running runs no worker has touched for ``older_than``."""
    cutoff = timezone.now() - older_than
    stale = EvalRun.objects.filter(chunks__isnull=True).filter(
        Q(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff)
        | Q(status=RunStatus.RUNNING, heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    count = stale.fail("The worker stopped responding; run the eval again.")
    if count:
        logger.warning("stale eval runs reaped count=%d", count)
    return count
