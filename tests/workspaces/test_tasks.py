"""Workspace deletion runs in a real worker through the real broker."""

import pytest

from tests.conftest import wait_for
from workspaces.models import ApiToken, Membership, Workspace
from workspaces.services import issue_token, request_workspace_deletion
from workspaces.tasks import delete_workspace_task


@pytest.mark.worker
def test_worker_deletes_a_workspace_its_owner_deleted(
    celery_worker_process, transactional_db, workspace, owner, member, outsider
):
    issue_token(workspace=workspace, name="ci", created_by=owner, role="member")
    request_workspace_deletion(workspace=workspace)
    # Hidden from its members at once, before the worker gets to it.
    assert not Workspace.objects.for_user(member).exists()

    wait_for(
        lambda: not Workspace.objects.filter(pk=workspace.pk).exists(),
        timeout=60,
        message=f"workspace not deleted; worker log:\n{celery_worker_process.log_path.read_text()}",
    )
    assert not Membership.objects.filter(workspace_id=workspace.pk).exists()
    assert not ApiToken.objects.filter(workspace_id=workspace.pk).exists()
    log = celery_worker_process.log_path.read_text()
    assert "workspaces.tasks.delete_workspace_task" in log
    # Other tenants are untouched.
    assert Workspace.objects.filter(slug="globex").exists()


def test_task_ignores_a_workspace_without_a_deletion_request(db, workspace):
    delete_workspace_task(workspace.pk)
    assert Workspace.objects.filter(pk=workspace.pk).exists()


def test_task_is_quiet_when_the_workspace_is_already_gone(db):
    delete_workspace_task(987654)
