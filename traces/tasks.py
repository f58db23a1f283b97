"""Celery entry points of the traces app (thin: the work is in the services)."""

from celery import shared_task


@shared_task(acks_late=True)
def import_scores_task(run_id: int) -> None:
    """Turn a source's scores into an eval set's labels (traces.label_import)."""
    from traces.label_import import execute_score_import

    execute_score_import(run_id=run_id)
