"""Celery entry points of the traces app (thin: the work is in the services)."""

from celery import shared_task

from iofold.lib.tasks import RunTask
from traces.exceptions import ResponsesUnavailable
from traces.models import DeletionRun, ScoreImportRun


@shared_task(acks_late=True, base=RunTask, run_model=ScoreImportRun)
def import_scores_task(run_id: int) -> None:
    """Turn a source's scores into an eval set's labels (traces.label_import)."""
    from traces.label_import import execute_score_import

    execute_score_import(run_id=run_id)


@shared_task(acks_late=True, base=RunTask, run_model=DeletionRun)
def delete_task(run_id: int) -> None:
    """Delete an eval set or traces in batches (traces.deletions)."""
    from traces.deletions import execute_deletion

    execute_deletion(run_id=run_id)


# A read OpenAI refused or could not answer is tried again later, each wait twice the last
# (60 s, 120 s, ... at most an hour); a rejected key stops it sooner (agents_responses).
RESPONSES_RETRY = {
    "autoretry_for": (ResponsesUnavailable,),
    "retry_backoff": 60,
    "retry_backoff_max": 3600,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(acks_late=True, **RESPONSES_RETRY)
def fill_agent_responses_task(integration_id: int, external_ids: list[str]) -> None:
    """Read the Responses API content of received Agents SDK traces (agents_responses)."""
    from traces.agents_responses import read_responses

    read_responses(integration_id=integration_id, external_ids=external_ids)


# Retried as the first read is, the traces still waiting; each task queues the next batch.
@shared_task(acks_late=True, **RESPONSES_RETRY)
def reread_agent_responses_task(integration_id: int) -> None:
    """Read again the responses of traces received while reading was stopped (agents_responses)."""
    from traces.agents_responses import reread_waiting

    reread_waiting(integration_id=integration_id)
