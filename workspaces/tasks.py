import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def delete_workspace_task(workspace_id: int) -> None:
    """Delete a workspace and everything in it (it can hold many thousands of rows)."""
    from workspaces.services import delete_workspace

    if delete_workspace(workspace_id=workspace_id):
        logger.info("workspace deleted workspace=%s", workspace_id)
