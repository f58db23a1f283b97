"""Celery entry points of the traces app (thin: the work is in the services)."""

from celery import shared_task

from iofold.lib.tasks import RunTask
from traces.models import ScoreImportRun


@shared_task(acks_late=True, base=RunTask, run_model=ScoreImportRun)
def import_scores_task(run_id: int) -> None:
    """Turn a source's scores into an eval set's labels (traces.label_import)."""
    from traces.label_import import execute_score_import

    execute_score_import(run_id=run_id)
