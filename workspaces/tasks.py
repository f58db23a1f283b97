import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def delete_workspace_task(workspace_id: int) -> None:
    """Delete a workspace and everything in it (it can hold many thousands of rows)."""
    from workspaces.services import delete_workspace

    if delete_workspace(workspace_id=workspace_id):
        logger.info("workspace deleted workspace=%s", workspace_id)


@shared_task
def delete_due_workspaces_task() -> int:
    """Start the deletion of workspaces whose grace period ended (beat, hourly)."""
    from workspaces.services import request_due_deletions

    count = request_due_deletions()
    if count:
        logger.info("scheduled workspace deletions started count=%d", count)
    return count
