"""Celery entry points of the traces app (thin: the work is in the services)."""

from celery import shared_task

from iofold.lib.tasks import RunTask
from traces.models import ScoreImportRun


@shared_task(acks_late=True, base=RunTask, run_model=ScoreImportRun)
def import_scores_task(run_id: int) -> None:
    """Turn a source's scores into an eval set's labels (traces.label_import)."""
    from traces.label_import import execute_score_import

    execute_score_import(run_id=run_id)


@shared_task(acks_late=True)
def fill_agent_responses_task(integration_id: int, external_ids: list[str]) -> None:
    """Read the Responses API content of received Agents SDK traces (agents_responses)."""
    from traces.agents_responses import read_responses

    read_responses(integration_id=integration_id, external_ids=external_ids)
