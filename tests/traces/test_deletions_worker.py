"""An eval set and traces deleted by a real Celery worker while the page and the API poll."""

import pytest
from django.urls import reverse

from tests.conftest import wait_for
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces.models import DeletionRun, EvalSet, EvalSetTrace, Feedback, Trace
from workspaces.services import issue_token

pytestmark = pytest.mark.worker


def test_an_eval_set_is_deleted_by_the_worker_while_the_page_polls(
    celery_worker_process, transactional_db, login, owner, workspace
):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner, name="Refunds")
    for trace in [TraceFactory(workspace=workspace) for _ in range(3)]:
        EvalSetTrace.objects.create(workspace=workspace, eval_set=eval_set, trace=trace)
        Feedback.objects.create(
            workspace=workspace, eval_set=eval_set, trace=trace, user=owner, rating="negative"
        )
    client = login(owner)

    response = client.post(
        reverse("traces:evalset_delete", args=[workspace.slug, eval_set.pk]), {"confirmed": "yes"}
    )

    assert response.status_code == 302
    run = DeletionRun.objects.get()
    wait_for(
        lambda: DeletionRun.objects.get(pk=run.pk).is_final,
        timeout=90,
        message="eval set deletion not done on the worker",
    )
    poll = client.get(response["Location"], headers={"HX-Request": "true"})
    assert poll.status_code == 286
    assert "Deleted eval set “Refunds”." in poll.content.decode()
    assert not EvalSet.objects.filter(pk=eval_set.pk).exists()
    assert not Feedback.objects.filter(workspace=workspace).exists()
    assert Trace.objects.filter(workspace=workspace).count() == 3


def test_traces_are_deleted_by_the_worker_while_the_api_polls(
    celery_worker_process, transactional_db, api_client, owner, workspace
):
    traces = [TraceFactory(workspace=workspace) for _ in range(4)]
    raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="admin")[1]
    headers = {"Authorization": f"Bearer {raw}"}

    response = api_client.post(
        "/api/v1/deletions/",
        {"trace_ids": [t.pk for t in traces[:3]]},
        format="json",
        headers=headers,
    )

    assert response.status_code == 202
    url = response["Location"]
    done = wait_for(
        lambda: (
            (body := api_client.get(url, headers=headers).json())["status"]
            in ("succeeded", "failed")
            and body
        ),
        timeout=90,
        message="traces deletion not done on the worker",
    )
    assert done["status"] == "succeeded" and done["done"] == done["total"] == 3
    assert list(Trace.objects.filter(workspace=workspace)) == [traces[3]]


def test_an_integration_is_deleted_by_the_worker_and_its_traces_kept_unlinked(
    celery_worker_process, transactional_db, login, owner, workspace
):
    from integrations.models import Integration

    integration = Integration.objects.create(
        workspace=workspace, name="lf", host="http://127.0.0.1:9", secret_key="sk-lf-secret"
    )
    synced = [TraceFactory(workspace=workspace, integration=integration) for _ in range(5)]
    uploaded = TraceFactory(workspace=workspace)
    client = login(owner)

    response = client.post(
        reverse("integrations:delete", args=[workspace.slug, integration.pk]),
        {"confirmed": "yes"},
    )

    assert response.status_code == 302
    run = DeletionRun.objects.get()
    wait_for(
        lambda: DeletionRun.objects.get(pk=run.pk).is_final,
        timeout=90,
        message="integration deletion not done on the worker",
    )
    run.refresh_from_db()
    assert run.status == "succeeded" and run.done == run.total == 6, run.error
    assert not Integration.objects.filter(pk=integration.pk).exists()
    kept = Trace.objects.filter(workspace=workspace, integration__isnull=True)
    assert set(kept) == {*synced, uploaded}
    poll = client.get(response["Location"], headers={"HX-Request": "true"})
    assert "Deleted integration “lf”." in poll.content.decode()
