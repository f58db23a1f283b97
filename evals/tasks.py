"""Celery tasks of the ``generate`` and ``execute`` queues; each one calls a service."""

import logging
from contextlib import contextmanager

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError

from evals import queue
from evals.exceptions import EvalError, TransientEvalError

logger = logging.getLogger(__name__)

RETRY = {
    "autoretry_for": (TransientEvalError, OperationalError),
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 5,
}
SCORES_LOCK = "evals:push-pending-scores"
AUTO_REFINE_LOCK = "evals:auto-refine"


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, EvalError):
        return exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        return (
            f"Stopped: the task ran past the worker's time limit ({limit:g} s). What was "
            "judged is kept; an eval that is slow on every trace holds a worker that long."
        )
    # Internal errors stay in the logs; the user gets a message they can act on.
    return "The worker stopped on an internal error; try again, or ask an operator to check logs."


class GenerationTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from evals.generation.services import fail_generation

        generation_id = args[0] if args else kwargs.get("generation_id")
        fail_generation(generation_id=generation_id, error=_failure_message(exc))


class EvalRunTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from evals.execution.runs import fail_run

        run_id = args[0] if args else kwargs.get("run_id")
        fail_run(run_id=run_id, error=_failure_message(exc))


class EvalRunChunkTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from evals.execution.chunks import fail_chunk

        chunk_id = args[0] if args else kwargs.get("chunk_id")
        fail_chunk(chunk_id=chunk_id, error=_failure_message(exc))


@contextmanager
def _single_instance(lock: str, *, timeout: int):
    """Yield whether this worker holds ``lock``; the lock expires on its own if it dies."""
    acquired = cache.add(lock, "1", timeout=timeout)
    try:
        yield acquired
    finally:
        if acquired:
            cache.delete(lock)


@contextmanager
def _sandbox_outage_is_transient():
    """Retry the task when the sandbox is briefly unavailable; give up when it never will be."""
    import sandbox

    try:
        yield
    except sandbox.SandboxError as exc:
        if exc.permanent:
            return  # the run has been marked failed with the reason
        raise TransientEvalError(f"The sandbox is unavailable: {exc.message}") from exc


@shared_task(
    name=queue.GENERATE_EVAL, base=GenerationTask, acks_late=True, throws=(EvalError,), **RETRY
)
def generate_eval_task(generation_id: int) -> None:
    """Carry out one queued generation (or refinement)."""
    from evals.generation.worker import run_generation

    run_generation(generation_id=generation_id)


@shared_task(name=queue.RUN_EVAL, base=EvalRunTask, acks_late=True, throws=(EvalError,), **RETRY)
def run_eval_task(run_id: int) -> None:
    """Run one queued eval run in the sandbox."""
    from evals.execution.runs import execute_run

    with _sandbox_outage_is_transient():
        execute_run(run_id=run_id)


@shared_task(
    name=queue.RUN_EVAL_CHUNK, base=EvalRunChunkTask, acks_late=True, throws=(EvalError,), **RETRY
)
def run_eval_chunk_task(chunk_id: int) -> None:
    """Judge one chunk of a split eval run; the last chunk finishes the run."""
    from evals.execution.chunks import execute_chunk

    with _sandbox_outage_is_transient():
        execute_chunk(chunk_id=chunk_id, carry_on=True)


@shared_task(
    name=queue.RUN_SENT_BATCH, base=EvalRunTask, acks_late=True, throws=(EvalError,), **RETRY
)
def run_sent_batch_task(run_id: int) -> None:
    """Judge the traces sent with a batch run (POST /api/v1/evals/<id>/run)."""
    from evals.execution.batch import execute_sent_batch

    execute_sent_batch(run_id=run_id)


# --- continuous evaluation ------------------------------------------------------------------


@shared_task(
    name=queue.START_AUTOMATIC_RUNS,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def run_automatic_evals_task(workspace_id: int, trace_ids: list[int]) -> int:
    """Start automatic runs of the active evals whose eval sets match new traces."""
    from evals.execution.continuous import start_automatic_runs

    return len(start_automatic_runs(workspace_id=workspace_id, trace_ids=trace_ids))


@shared_task(
    name=queue.RUN_AUTOMATIC_EVAL, base=EvalRunTask, acks_late=True, throws=(EvalError,), **RETRY
)
def run_automatic_eval_task(run_id: int) -> None:
    """Run one automatic eval run, then send its verdicts to Langfuse."""
    from evals.execution.continuous import execute_automatic_run

    with _sandbox_outage_is_transient():
        execute_automatic_run(run_id=run_id)


@shared_task
def push_pending_scores_task() -> int:
    """Resend Langfuse scores of active evals that have not arrived yet."""
    from evals.execution.scores import push_pending_scores

    with _single_instance(SCORES_LOCK, timeout=600) as acquired:
        return push_pending_scores().pushed if acquired else 0


@shared_task
def auto_refine_task() -> int:
    """Refine drifting or contradicted active evals of the workspaces that opted in."""
    from evals.generation.automatic import sweep

    with _single_instance(AUTO_REFINE_LOCK, timeout=600) as acquired:
        return len(sweep()) if acquired else 0
