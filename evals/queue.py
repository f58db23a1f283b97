"""Enqueue evals' Celery tasks from services, by the tasks' registered names.

``evals.tasks`` imports the services its tasks call, so a service cannot import the
tasks back without closing an import cycle; it enqueues through these functions, which
find the task by the name ``evals.tasks`` declares it under (``name=`` from here).
"""

from iofold.lib.tasks import enqueue, registered_task

# The names are also what the routes (CELERY_TASK_ROUTES) refer to: keep them as they are.
GENERATE_EVAL = "evals.tasks.generate_eval_task"
RUN_EVAL = "evals.tasks.run_eval_task"
RUN_AUTOMATIC_EVAL = "evals.tasks.run_automatic_eval_task"
RUN_EVAL_CHUNK = "evals.tasks.run_eval_chunk_task"
RUN_SENT_BATCH = "evals.tasks.run_sent_batch_task"
START_AUTOMATIC_RUNS = "evals.tasks.run_automatic_evals_task"
# Work no one watches (continuous scoring, backfills, API batch runs) is sent at Redis's
# lowest priority, so a worker takes what a person waits for on a page (a manual test, a
# generation's measuring; the default, 0) first, whatever was queued before it
# (EvalRun.is_background). The file-system broker of development ignores priorities.
BACKGROUND = 9


def _priority(background: bool) -> int | None:
    return BACKGROUND if background else None


def enqueue_generation(generation_id: int) -> None:
    """Send a generation (or refinement) to the ``generate`` queue."""
    enqueue(GENERATE_EVAL, generation_id)


def enqueue_run(run_id: int, *, automatic: bool = False, background: bool = False) -> None:
    """Send an eval run to the ``execute`` queue; an automatic one pushes scores after."""
    enqueue(
        RUN_AUTOMATIC_EVAL if automatic else RUN_EVAL,
        run_id,
        priority=_priority(background or automatic),
    )


def enqueue_sent_batch(run_id: int) -> None:
    """Send a batch run of sent (not stored) traces to the ``execute`` queue."""
    enqueue(RUN_SENT_BATCH, run_id, priority=BACKGROUND)


def enqueue_chunk(chunk_id: int, *, background: bool = False) -> None:
    """Send one chunk of a split eval run to the ``execute`` queue."""
    enqueue(RUN_EVAL_CHUNK, chunk_id, priority=_priority(background))


def enqueue_automatic_runs(workspace_id: int, trace_ids: list[int]) -> None:
    """Send new traces to the task that starts the matching active evals' automatic runs."""
    # Said for the logs and monitors in a few words: Celery's own repr of the arguments
    # walks every id, however few it shows (10,000 ids: 5-6 ms more to send, load 4).
    registered_task(START_AUTOMATIC_RUNS).apply_async(
        (workspace_id, trace_ids),
        argsrepr=f"({workspace_id}, <{len(trace_ids)} trace ids>)",
        priority=BACKGROUND,
    )
