"""What an integration or an upload owns outside the database goes with it, however deleted."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from integrations import services
from integrations.models import Integration
from integrations.tasks import sync_integration_on_schedule_task
from integrations.uploads import start_upload
from tests.integrations.helpers import unreachable_langfuse
from workspaces.services import delete_workspace, request_workspace_deletion


@pytest.fixture
def scheduled(workspace):
    integration = unreachable_langfuse(workspace, sync_interval_minutes=60)
    assert PeriodicTask.objects.filter(pk=integration.periodic_task_id).exists()
    return integration


def test_deleting_the_workspace_deletes_its_integrations_schedules(
    scheduled, workspace, django_capture_on_commit_callbacks
):
    """Before: beat kept a "Sync integration" row per deleted integration, firing for ever."""
    with django_capture_on_commit_callbacks(execute=False):  # the test deletes it itself
        request_workspace_deletion(workspace=workspace)

    assert delete_workspace(workspace_id=workspace.pk)

    assert not PeriodicTask.objects.filter(task=services.SCHEDULED_TASK).exists()


def test_an_integration_deleted_in_the_admin_takes_its_schedule_along(scheduled, client):
    client.force_login(get_user_model().objects.create_superuser("root@example.com", "pw"))

    response = client.post(
        reverse("admin:integrations_integration_changelist"),
        {"action": "delete_selected", "_selected_action": [scheduled.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert not Integration.objects.exists()
    assert not PeriodicTask.objects.filter(task=services.SCHEDULED_TASK).exists()


def test_a_schedule_firing_for_a_deleted_integration_does_nothing(db):
    sync_integration_on_schedule_task.apply(args=[987654]).get()


def test_deleting_the_workspace_deletes_its_waiting_uploads_files(
    workspace, settings, tmp_path, django_capture_on_commit_callbacks
):
    """Before: a file uploaded but not yet ingested stayed on the disk for ever."""
    settings.VAR_DIR = tmp_path
    with django_capture_on_commit_callbacks(execute=False):  # no worker gets to it
        run = start_upload(workspace=workspace, uploaded=SimpleUploadedFile("t.jsonl", b"{}\n"))
        request_workspace_deletion(workspace=workspace)
    assert Path(run.path).exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert delete_workspace(workspace_id=workspace.pk)

    assert not Path(run.path).exists()


def test_a_schedule_firing_after_the_workspace_deletion_was_requested_syncs_nothing(
    scheduled, workspace, django_capture_on_commit_callbacks
):
    """Before: beat kept queueing syncs (and calling the platform) until the delete ran."""
    with django_capture_on_commit_callbacks(execute=False):  # the deletion has not run yet
        request_workspace_deletion(workspace=workspace)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        sync_integration_on_schedule_task.apply(args=[scheduled.pk]).get()

    assert not scheduled.runs.exists()
    assert not callbacks
