"""A run's task that stops on an error nobody expected ends the run at once, with a message."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from integrations.models import UploadRun
from integrations.services import create_integration
from integrations.tasks import ingest_upload_task
from integrations.uploads import start_upload
from iofold.lib.runs import RunStatus
from tests.traces.factories import EvalSetFactory
from traces.models import ScoreImportRun
from traces.tasks import import_scores_task


@pytest.fixture
def queued_upload(workspace, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VAR_DIR = tmp_path
    uploaded = SimpleUploadedFile("traces.jsonl", b'{"id": "t1", "input": "hi"}\n')
    with django_capture_on_commit_callbacks(execute=False):  # the test runs the task itself
        return start_upload(workspace=workspace, uploaded=uploaded)


def test_an_upload_whose_ingestion_crashes_is_failed_at_once_and_its_file_deleted(
    queued_upload, monkeypatch, django_capture_on_commit_callbacks
):
    """Before: the run stayed "running" (a spinner) until the reaper took it over as if its
    worker had died, crashed again, and after four rounds said the worker kept stopping."""

    def crash(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("integrations.uploads.ingest_jsonl", crash)

    with django_capture_on_commit_callbacks(execute=True):
        ingest_upload_task.apply(args=[queued_upload.pk])

    run = UploadRun.objects.get(pk=queued_upload.pk)
    assert run.status == RunStatus.FAILED
    assert "internal error" in run.error and "a bug" not in run.error
    assert run.finished_at is not None
    assert not Path(run.path).exists()


def test_a_score_import_whose_import_crashes_is_failed_at_once(workspace, owner, monkeypatch):
    integration = create_integration(
        workspace=workspace, name="lf", host="http://127.0.0.1:9", public_key="pk", secret_key="sk"
    )
    run = ScoreImportRun.objects.create(
        workspace=workspace,
        eval_set=EvalSetFactory(workspace=workspace),
        integration=integration,
        user=owner,
        score_name="quality",
        mapping="x",
    )

    def crash(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("traces.label_import.import_source_scores", crash)

    import_scores_task.apply(args=[run.pk])

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "internal error" in run.error


def test_a_run_task_for_a_deleted_run_fails_quietly(db, monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("integrations.uploads.execute_upload", crash)

    result = ingest_upload_task.apply(args=[987654])

    assert isinstance(result.result, RuntimeError)  # on_failure itself did not raise
