"""Deleting an eval set or traces: hidden at once, deleted in batches by a DeletionRun."""

import pytest
from django.urls import reverse

from evals.models import Eval, EvalExecution
from tests.conftest import dead_owner
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import deletions
from traces.models import (
    Conversation,
    DeletionRun,
    EvalSet,
    EvalSetTrace,
    Feedback,
    Trace,
)
from workspaces.services import issue_token


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Two rows per batch, so a handful of rows takes several batches."""
    monkeypatch.setattr(deletions, "BATCH", 2)


@pytest.fixture
def labelled_set(workspace, owner):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner, name="Support answers")
    traces = [TraceFactory(workspace=workspace) for _ in range(5)]
    for trace in traces:
        EvalSetTrace.objects.create(workspace=workspace, eval_set=eval_set, trace=trace)
        Feedback.objects.create(
            workspace=workspace, eval_set=eval_set, trace=trace, user=owner, rating="positive"
        )
    version = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code="def eval_fn(t):\n    return True, ''\n",
    )
    for trace in traces:
        EvalExecution.objects.create(workspace=workspace, eval=version, trace=trace, passed=True)
    return eval_set, traces


def test_eval_set_is_hidden_at_once_and_deleted_by_the_run(labelled_set, workspace, owner):
    eval_set, traces = labelled_set

    run = deletions.request_eval_set_deletion(eval_set=eval_set, user=owner)

    assert run.status == DeletionRun.Status.QUEUED
    assert not EvalSet.objects.for_workspace(workspace).filter(pk=eval_set.pk).exists()
    assert Feedback.objects.filter(eval_set=eval_set).count() == 5  # nothing deleted yet
    batches = []
    run = deletions.execute_deletion(run_id=run.pk, on_batch=batches.append)
    assert run.status == DeletionRun.Status.SUCCEEDED
    assert run.done == run.total == 11  # 5 labels, 5 picks and the set itself
    assert len(batches) > 5  # in batches, not one transaction
    assert not EvalSet.objects.filter(pk=eval_set.pk).exists()
    assert not Feedback.objects.filter(workspace=workspace).exists()
    assert not Eval.objects.filter(workspace=workspace).exists()
    assert not EvalExecution.objects.filter(workspace=workspace).exists()
    assert Trace.objects.filter(pk__in=[t.pk for t in traces]).count() == 5  # traces stay


def test_a_second_request_returns_the_same_deletion(labelled_set, owner):
    eval_set, _ = labelled_set

    first = deletions.request_eval_set_deletion(eval_set=eval_set, user=owner)
    second = deletions.request_eval_set_deletion(eval_set=eval_set, user=owner)

    assert second.pk == first.pk
    assert DeletionRun.objects.count() == 1


def test_a_failed_deletion_asked_again_carries_on_from_what_is_left(
    labelled_set, owner, monkeypatch
):
    eval_set, _ = labelled_set
    run = deletions.request_eval_set_deletion(eval_set=eval_set, user=owner)
    real_delete = deletions._delete_ids
    calls = []

    def dies_on_a_later_batch(rows):
        calls.append(1)
        if len(calls) == 5:  # after one empty batch each of history and assignments
            raise RuntimeError("worker killed")
        return real_delete(rows)

    monkeypatch.setattr(deletions, "_delete_ids", dies_on_a_later_batch)
    with pytest.raises(RuntimeError):
        deletions.execute_deletion(run_id=run.pk)
    DeletionRun.objects.filter(pk=run.pk).fail("The worker stopped.")
    assert Feedback.objects.filter(eval_set=eval_set).count() == 1  # two batches were kept
    monkeypatch.setattr(deletions, "_delete_ids", real_delete)

    again = deletions.request_eval_set_deletion(eval_set=eval_set, user=owner)

    assert again.pk == run.pk and again.status == DeletionRun.Status.QUEUED
    done = deletions.execute_deletion(run_id=run.pk)
    assert done.status == DeletionRun.Status.SUCCEEDED
    assert done.done == done.total == 11
    assert not EvalSet.objects.filter(pk=eval_set.pk).exists()


def test_a_deletion_whose_worker_died_is_taken_over(labelled_set, owner):
    eval_set, _ = labelled_set
    run = deletions.request_eval_set_deletion(eval_set=eval_set, user=owner)
    DeletionRun.objects.filter(pk=run.pk).update(status="running", owner=dead_owner())

    done = deletions.execute_deletion(run_id=run.pk)

    assert done.status == DeletionRun.Status.SUCCEEDED and done.takeovers == 1
    assert not EvalSet.objects.filter(pk=eval_set.pk).exists()


def test_traces_are_hidden_at_once_and_deleted_with_their_labels(labelled_set, workspace, owner):
    eval_set, traces = labelled_set
    doomed, kept = traces[:3], traces[3:]
    conversation = Conversation.objects.create(
        workspace=workspace,
        source="upload",
        source_key="upload",
        external_id="s1",
        started_at=doomed[0].timestamp,
        last_activity_at=kept[0].timestamp,
        turn_count=2,
        anchor=doomed[0],
    )
    Trace.objects.filter(pk__in=[doomed[0].pk, kept[0].pk]).update(conversation=conversation)

    run = deletions.request_traces_deletion(
        workspace=workspace, trace_ids=[t.pk for t in doomed], user=owner
    )

    assert run.name == "3 traces" and run.total == 3
    assert set(Trace.objects.for_workspace(workspace).present()) == set(kept)
    assert Trace.objects.in_eval_set(eval_set).count() == 2
    run = deletions.execute_deletion(run_id=run.pk)
    assert run.status == DeletionRun.Status.SUCCEEDED and run.done == 3
    assert set(Trace.objects.for_workspace(workspace)) == set(kept)
    assert Feedback.objects.filter(eval_set=eval_set).count() == 2
    assert EvalExecution.objects.filter(workspace=workspace).count() == 2
    conversation.refresh_from_db()
    assert conversation.turn_count == 1 and conversation.anchor_id == kept[0].pk


def test_traces_already_being_deleted_return_their_deletion(workspace, owner):
    traces = [TraceFactory(workspace=workspace) for _ in range(2)]
    first = deletions.request_traces_deletion(
        workspace=workspace, trace_ids=[t.pk for t in traces], user=owner
    )

    second = deletions.request_traces_deletion(
        workspace=workspace, trace_ids=[t.pk for t in traces], user=owner
    )

    assert second.pk == first.pk
    assert DeletionRun.objects.count() == 1


def test_another_workspaces_traces_are_never_marked(workspace, other_workspace, owner):
    theirs = TraceFactory(workspace=other_workspace)
    mine = TraceFactory(workspace=workspace)

    run = deletions.request_traces_deletion(
        workspace=workspace, trace_ids=[theirs.pk, mine.pk], user=owner
    )
    deletions.execute_deletion(run_id=run.pk)

    assert run.total == 1
    assert Trace.objects.filter(pk=theirs.pk, deletion__isnull=True).exists()
    assert not Trace.objects.filter(pk=mine.pk).exists()
    with pytest.raises(deletions.TraceError, match="None of these traces"):
        deletions.request_traces_deletion(workspace=workspace, trace_ids=[theirs.pk], user=owner)


# --- pages ---------------------------------------------------------------------------------


def test_delete_page_asks_then_shows_progress_and_the_outcome(
    login, labelled_set, workspace, owner
):
    eval_set, _ = labelled_set
    client = login(owner)
    url = reverse("traces:evalset_delete", args=[workspace.slug, eval_set.pk])

    asked = client.post(url)
    assert asked.status_code == 200 and "Delete Support answers for good?" in asked.content.decode()
    assert EvalSet.objects.for_workspace(workspace).filter(pk=eval_set.pk).exists()

    response = client.post(url, {"confirmed": "yes"})
    run = DeletionRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("traces:deletion", args=[workspace.slug, run.pk])
    assert client.post(url, {"confirmed": "yes"})["Location"] == response["Location"]
    listed = client.get(reverse("traces:evalset_list", args=[workspace.slug])).content.decode()
    assert "Deleting eval set “Support answers”" in listed
    assert reverse("traces:evalset_detail", args=[workspace.slug, eval_set.pk]) not in listed
    assert client.get(eval_set.get_absolute_url()).status_code == 404
    page = client.get(response["Location"]).content.decode()
    assert "waiting for a worker" in page and 'hx-trigger="every 1s"' in page

    deletions.execute_deletion(run_id=run.pk)

    poll = client.get(response["Location"], headers={"HX-Request": "true"})
    assert poll.status_code == 286  # htmx stops polling
    assert "Deleted eval set “Support answers”." in poll.content.decode()


def test_members_cannot_delete_an_eval_set(login, labelled_set, workspace, member):
    eval_set, _ = labelled_set
    response = login(member).post(
        reverse("traces:evalset_delete", args=[workspace.slug, eval_set.pk]), {"confirmed": "yes"}
    )
    assert response.status_code == 403
    assert not DeletionRun.objects.exists()


def test_selected_traces_are_deleted_after_a_question(login, workspace, owner):
    traces = [TraceFactory(workspace=workspace) for _ in range(3)]
    client = login(owner)
    url = reverse("traces:delete_selected", args=[workspace.slug])
    ids = [traces[0].pk, traces[1].pk]

    asked = client.post(url, {"trace": ids})
    page = asked.content.decode()
    assert "Delete 2 traces for good?" in page
    assert f'name="trace" value="{ids[0]}"' in page  # the selection goes with the answer

    response = client.post(url, {"trace": ids, "confirmed": "yes"})

    run = DeletionRun.objects.get()
    assert response["Location"] == reverse("traces:deletion", args=[workspace.slug, run.pk])
    listed = client.get(reverse("traces:list", args=[workspace.slug])).content.decode()
    link = reverse("traces:detail", args=[workspace.slug, 0]).removesuffix("0/")
    assert f'{link}{traces[0].pk}/"' not in listed and f'{link}{traces[2].pk}/"' in listed
    assert client.get(reverse("traces:detail", args=[workspace.slug, ids[0]])).status_code == 404


def test_a_failed_deletion_can_be_carried_on_from_its_page(login, labelled_set, workspace, owner):
    eval_set, _ = labelled_set
    run = deletions.request_eval_set_deletion(eval_set=eval_set, user=owner)
    DeletionRun.objects.filter(pk=run.pk).fail("The worker stopped responding; delete again.")
    client = login(owner)
    page = client.get(reverse("traces:deletion", args=[workspace.slug, run.pk])).content.decode()
    assert "The worker stopped responding" in page and "Carry on deleting" in page

    client.post(reverse("traces:deletion_resume", args=[workspace.slug, run.pk]))

    assert DeletionRun.objects.get(pk=run.pk).status == DeletionRun.Status.QUEUED


# --- API -----------------------------------------------------------------------------------


def _token(workspace, owner, role="admin"):
    return issue_token(workspace=workspace, name="ci", created_by=owner, role=role)[1]


def test_api_deletes_an_eval_set_in_the_background(api_client, labelled_set, workspace, owner):
    eval_set, _ = labelled_set
    headers = {"Authorization": f"Bearer {_token(workspace, owner)}"}

    response = api_client.post(
        "/api/v1/deletions/", {"eval_set": eval_set.pk}, format="json", headers=headers
    )

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["kind"] == "eval_set"
    assert response["Location"] == body["url"] == f"/api/v1/deletions/{body['id']}/"
    assert api_client.get(f"/api/v1/eval-sets/{eval_set.pk}/", headers=headers).status_code == 404
    again = api_client.post(
        "/api/v1/deletions/", {"eval_set": eval_set.pk}, format="json", headers=headers
    )
    assert again.status_code == 202 and again.json()["id"] == body["id"]

    deletions.execute_deletion(run_id=body["id"])

    done = api_client.get(body["url"], headers=headers).json()
    assert done["status"] == "succeeded" and done["done"] == done["total"] == 11


def test_api_deletes_traces_and_hides_them(api_client, workspace, owner):
    traces = [TraceFactory(workspace=workspace) for _ in range(3)]
    headers = {"Authorization": f"Bearer {_token(workspace, owner)}"}

    response = api_client.post(
        "/api/v1/deletions/", {"trace_ids": [traces[0].pk]}, format="json", headers=headers
    )

    assert response.status_code == 202 and response.json()["total"] == 1
    assert api_client.get(f"/api/v1/traces/{traces[0].pk}/", headers=headers).status_code == 404
    listed = api_client.get("/api/v1/traces/", headers=headers).json()["results"]
    assert traces[0].pk not in [t["id"] for t in listed]


@pytest.mark.parametrize(
    "data",
    [{}, {"eval_set": 1, "trace_ids": [1]}, {"trace_ids": []}, {"trace_ids": ["x"]}],
    ids=["nothing", "both", "empty", "not-ids"],
)
def test_api_refuses_a_request_that_names_nothing_to_delete(api_client, workspace, owner, data):
    headers = {"Authorization": f"Bearer {_token(workspace, owner)}"}
    response = api_client.post("/api/v1/deletions/", data, format="json", headers=headers)
    assert response.status_code == 400
    assert not DeletionRun.objects.exists()


def test_api_members_tokens_cannot_delete(api_client, labelled_set, workspace, owner):
    eval_set, _ = labelled_set
    headers = {"Authorization": f"Bearer {_token(workspace, owner, role='member')}"}
    response = api_client.post(
        "/api/v1/deletions/", {"eval_set": eval_set.pk}, format="json", headers=headers
    )
    assert response.status_code == 403
    assert not DeletionRun.objects.exists()
