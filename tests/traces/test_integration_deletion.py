"""Deleting an integration: hidden at once, then a DeletionRun unlinks its traces (kept,
with their labels) and deletes it."""

import logging

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from integrations import services
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from tests.conftest import dead_owner
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import deletions
from traces.label_import import score_sources
from traces.models import DeletionRun, EvalSetTrace, Feedback, Trace
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Two rows per batch, so a handful of traces takes several batches."""
    monkeypatch.setattr(deletions, "BATCH", 2)


@pytest.fixture
def synced(workspace, owner):
    """A scheduled Langfuse integration with five synced traces, one of them labelled."""
    integration = Integration.objects.create(
        workspace=workspace,
        name="Langfuse prod",
        host="http://127.0.0.1:9",
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
        sync_interval_minutes=60,
    )
    services.schedule_sync(integration=integration)
    SyncRun.objects.create(workspace=workspace, integration=integration, status="succeeded")
    traces = [
        TraceFactory(
            workspace=workspace, integration=integration, source="langfuse", source_key="i1"
        )
        for _ in range(5)
    ]
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    EvalSetTrace.objects.create(workspace=workspace, eval_set=eval_set, trace=traces[0])
    Feedback.objects.create(
        workspace=workspace, eval_set=eval_set, trace=traces[0], user=owner, rating="positive"
    )
    integration.refresh_from_db()
    return integration, traces, eval_set


def test_an_integration_is_hidden_at_once_and_its_traces_are_kept_with_their_labels(
    synced, workspace, owner
):
    integration, traces, eval_set = synced
    uploaded = TraceFactory(workspace=workspace)

    run = deletions.request_integration_deletion(integration=integration, user=owner)

    assert run.status == DeletionRun.Status.QUEUED and run.kind == "integration"
    assert not Integration.objects.for_workspace(workspace).present().exists()
    # Its traces stay in the list and the eval set while the run is under way.
    assert Trace.objects.for_workspace(workspace).present().count() == 6
    assert list(Trace.objects.in_eval_set(eval_set)) == [traces[0]]
    assert not PeriodicTask.objects.filter(args=f"[{integration.pk}]").exists()
    with pytest.raises(IntegrationError, match="being deleted"):
        services.start_sync(integration=integration)

    batches = []
    run = deletions.execute_deletion(run_id=run.pk, on_batch=batches.append)

    assert run.status == DeletionRun.Status.SUCCEEDED
    assert run.done == run.total == 6  # five traces unlinked and the integration
    assert len(batches) > 3  # in batches, not one transaction
    assert not Integration.objects.filter(pk=integration.pk).exists()
    kept = Trace.objects.for_workspace(workspace).present()
    assert set(kept) == {*traces, uploaded}
    assert not kept.filter(integration__isnull=False).exists()  # unlinked
    assert Feedback.objects.get(workspace=workspace).trace == traces[0]  # the label kept
    assert list(Trace.objects.in_eval_set(eval_set)) == [traces[0]]
    assert not SyncRun.objects.filter(workspace=workspace).exists()


def test_a_second_request_returns_the_same_integration_deletion(synced, owner):
    integration, _, _ = synced

    first = deletions.request_integration_deletion(integration=integration, user=owner)
    second = deletions.request_integration_deletion(integration=integration, user=owner)

    assert second.pk == first.pk
    assert DeletionRun.objects.count() == 1


def test_an_integration_deletion_whose_worker_died_carries_on(synced, workspace, owner):
    integration, traces, _ = synced
    run = deletions.request_integration_deletion(integration=integration, user=owner)
    # The dead worker had unlinked two traces and counted them.
    Trace.objects.filter(pk__in=[t.pk for t in traces[:2]]).update(integration=None)
    DeletionRun.objects.filter(pk=run.pk).update(status="running", owner=dead_owner(), done=2)

    done = deletions.execute_deletion(run_id=run.pk)

    assert done.status == DeletionRun.Status.SUCCEEDED and done.takeovers == 1
    assert done.done == done.total == 6
    assert not Integration.objects.filter(pk=integration.pk).exists()
    assert Trace.objects.filter(workspace=workspace, integration__isnull=True).count() == 5


def test_scores_for_an_integration_being_deleted_are_not_sent(synced, owner):
    integration, _, _ = synced
    deletions.request_integration_deletion(integration=integration, user=owner)

    delivery = services.deliver_scores(integration=integration, scores=[object()])

    assert delivery.delivered == [] and "being deleted" in delivery.failed[0]


# --- page and API ----------------------------------------------------------------------------


def test_the_page_returns_before_the_traces_are_gone_and_shows_the_progress(
    login, synced, workspace, owner, caplog
):
    integration, _, _ = synced
    client = login(owner)
    url = reverse("integrations:delete", args=[workspace.slug, integration.pk])
    caplog.set_level(logging.DEBUG)

    asked = client.get(url)
    assert "Its traces are kept" in asked.content.decode()
    response = client.post(url, {"confirmed": "yes"})

    run = DeletionRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("traces:deletion", args=[workspace.slug, run.pk])
    assert Trace.objects.filter(integration=integration).count() == 5  # the worker's job
    page = client.get(response["Location"]).content.decode()
    assert "its traces are kept" in page
    assert "Deleting integration “Langfuse prod”" in page
    listed = client.get(reverse("integrations:list", args=[workspace.slug])).content.decode()
    assert "Langfuse prod" not in listed
    detail = reverse("integrations:detail", args=[workspace.slug, integration.pk])
    assert client.get(detail).status_code == 404
    sync = reverse("integrations:sync", args=[workspace.slug, integration.pk])
    assert client.post(sync).status_code == 404
    assert client.post(url, {"confirmed": "yes"})["Location"] == response["Location"]
    assert DeletionRun.objects.count() == 1

    deletions.execute_deletion(run_id=run.pk)
    done = client.get(response["Location"], headers={"HX-Request": "true"})
    assert done.status_code == 286
    assert "Deleted integration “Langfuse prod”." in done.content.decode()
    assert SECRET_KEY not in caplog.text


def test_the_api_answers_202_with_the_deletion_and_never_the_secret(
    api_client, synced, workspace, owner, caplog
):
    integration, _, _ = synced
    raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="admin")[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    url = reverse("api-integration", args=[integration.pk])
    caplog.set_level(logging.DEBUG)

    response = api_client.delete(url)

    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == body["url"] == f"/api/v1/deletions/{body['id']}/"
    assert body["kind"] == "integration" and body["status"] == "queued"
    assert Trace.objects.filter(integration=integration).count() == 5
    assert api_client.get(url).status_code == 404
    assert api_client.patch(url, {"name": "x"}, format="json").status_code == 404
    sync = reverse("api-integration-sync", args=[integration.pk])
    assert api_client.post(sync).status_code == 404
    assert integration.name not in api_client.get(reverse("api-integrations")).content.decode()
    again = api_client.delete(url)
    assert again.status_code == 202 and again.json()["id"] == body["id"]

    deletions.execute_deletion(run_id=body["id"])
    polled = api_client.get(response["Location"])
    assert polled.json()["status"] == "succeeded"
    assert api_client.delete(url).status_code == 404
    for text in (response.content, again.content, polled.content, caplog.text):
        assert SECRET_KEY not in str(text)


def test_another_workspace_can_neither_see_nor_start_the_deletion(
    api_client, synced, other_workspace, outsider, owner
):
    integration, _, _ = synced
    run = deletions.request_integration_deletion(integration=integration, user=owner)
    raw = issue_token(workspace=other_workspace, name="ci", created_by=outsider, role="admin")[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert api_client.delete(reverse("api-integration", args=[integration.pk])).status_code == 404
    assert api_client.get(f"/api/v1/deletions/{run.pk}/").status_code == 404
    assert DeletionRun.objects.count() == 1


def test_an_integration_being_deleted_is_no_longer_offered_to_import_labels_from(
    synced, workspace, owner
):
    integration, _, _ = synced
    assert score_sources(workspace) == [integration]

    deletions.request_integration_deletion(integration=integration, user=owner)

    assert score_sources(workspace) == []


# --- deleting its traces too, when asked ---------------------------------------------------


def test_asked_to_delete_its_traces_too_they_are_hidden_at_once_then_deleted(
    synced, workspace, owner
):
    integration, _, eval_set = synced
    uploaded = TraceFactory(workspace=workspace)

    run = deletions.request_integration_deletion(
        integration=integration, user=owner, delete_traces=True
    )

    assert list(Trace.objects.for_workspace(workspace).present()) == [uploaded]
    assert not Trace.objects.in_eval_set(eval_set).exists()
    run = deletions.execute_deletion(run_id=run.pk)
    assert run.status == DeletionRun.Status.SUCCEEDED and run.done == run.total == 6
    assert not Integration.objects.filter(pk=integration.pk).exists()
    assert list(Trace.objects.filter(workspace=workspace)) == [uploaded]
    assert not Feedback.objects.filter(workspace=workspace).exists()


def test_the_api_deletes_its_traces_only_when_asked(api_client, synced, workspace, owner):
    integration, _, _ = synced
    raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="admin")[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    url = reverse("api-integration", args=[integration.pk])

    bad = api_client.delete(f"{url}?traces=drop")
    assert bad.status_code == 400 and "traces" in bad.json()
    assert Integration.objects.present().filter(pk=integration.pk).exists()
    response = api_client.delete(f"{url}?traces=delete")

    assert response.status_code == 202
    deletions.execute_deletion(run_id=response.json()["id"])
    assert not Trace.objects.filter(workspace=workspace).exists()


def test_the_page_asks_before_deleting_its_traces_too(login, synced, workspace, owner):
    integration, _, _ = synced
    client = login(owner)
    url = reverse("integrations:delete", args=[workspace.slug, integration.pk])
    detail = reverse("integrations:detail", args=[workspace.slug, integration.pk])
    assert 'name="traces" value="delete"' in client.get(detail).content.decode()

    asked = client.post(url, {"traces": "delete"}).content.decode()
    assert "Its traces are deleted with it" in asked and 'value="delete"' in asked
    client.post(url, {"traces": "delete", "confirmed": "yes"})

    deletions.execute_deletion(run_id=DeletionRun.objects.get().pk)
    assert not Trace.objects.filter(workspace=workspace).exists()
