"""Celery tasks of the ``sync`` queue; each one calls a service."""

import logging

from celery import shared_task
from django.db import OperationalError

from integrations.models import SyncRun, UploadRun
from iofold.lib.tasks import RunTask

logger = logging.getLogger(__name__)


# No automatic retry: the adapter already retries rate limits, 5xx and timeouts per request,
# and a run that still fails keeps its cursor, so the next run (schedule or "Sync now")
# resumes where it stopped instead of a retry racing a half-finished run.
@shared_task(acks_late=True, base=RunTask, run_model=SyncRun)
def sync_integration_task(run_id: int) -> None:
    """Run one queued sync."""
    from integrations.services import run_sync

    run_sync(run_id=run_id)


@shared_task(acks_late=True, base=RunTask, run_model=UploadRun)
def ingest_upload_task(run_id: int) -> None:
    """Ingest one uploaded JSONL file."""
    from integrations.uploads import execute_upload

    execute_upload(run_id=run_id)


@shared_task(
    autoretry_for=(OperationalError,), retry_backoff=True, retry_jitter=True, max_retries=5
)
def sync_integration_on_schedule_task(integration_id: int) -> None:
    """Queue a sync from the integration's beat schedule (skipped when one is active)."""
    from integrations.exceptions import IntegrationError
    from integrations.models import Integration
    from integrations.services import start_sync

    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is None or not integration.enabled:
        return
    if integration.status == Integration.Status.AUTH_FAILED:
        logger.info("scheduled sync skipped integration=%s reason=auth_failed", integration_id)
        return
    try:
        start_sync(integration=integration, trigger="schedule")
    except IntegrationError as exc:
        logger.info("scheduled sync skipped integration=%s reason=%s", integration_id, exc.code)
