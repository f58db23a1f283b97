"""Scores a team gave in Langfuse become labels of the eval set's synced traces."""

import pytest
from django.urls import reverse

from integrations import services as integration_services
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401 - fixtures
from tests.traces.factories import EvalSetFactory
from traces.label_import import execute_score_import, parse_mapping
from traces.models import Feedback, ScoreImportRun, Trace
from traces.services import add_traces_to_eval_set


@pytest.fixture
def synced(workspace, owner, fake_langfuse, make_integration):  # noqa: F811
    fake = fake_langfuse(traces=4)
    integration = make_integration(fake)
    run = integration_services.start_sync(integration=integration)
    integration_services.run_sync(run_id=run.pk)
    traces = list(Trace.objects.filter(integration=integration).order_by("external_id"))
    assert len(traces) == 4
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    return fake, integration, eval_set, traces


def _import(client, eval_set, integration, **data):
    url = reverse(
        "traces:evalset_import_scores",
        kwargs={"slug": eval_set.workspace.slug, "pk": eval_set.pk},
    )
    response = client.post(url, {"integration": integration.pk, **data})
    if response.status_code != 302:
        return response
    # The request only queues the import (the test's transaction never commits, so nothing
    # is sent to a broker); carry it out here as the worker's task would, then read the page.
    run = ScoreImportRun.objects.latest("pk")
    assert run.status == "queued"
    execute_score_import(run_id=run.pk)
    return client.get(response["Location"])


def _report(response) -> dict:
    return response.context["run"].report


def test_boolean_and_categorical_scores_become_labels(login, owner, synced):
    fake, integration, eval_set, traces = synced
    fake.add_score(traces[0].external_id, "correct", True, comment="right order")
    fake.add_score(traces[1].external_id, "correct", False)
    fake.add_score(traces[2].external_id, "helpfulness", "meh", data_type="CATEGORICAL")
    # A score on one step is not a verdict on the trace.
    fake.add_score(traces[3].external_id, "correct", True, observation_id="obs-1")
    client = login(owner)

    response = _import(
        client, eval_set, integration, score_name="correct", mapping="true=good, false=bad"
    )
    assert response.status_code == 200
    assert _report(response)["labelled"] == 2
    labels = {
        f.trace_id: (f.rating, f.note, f.origin) for f in Feedback.objects.filter(eval_set=eval_set)
    }
    assert labels == {
        traces[0].pk: ("positive", "right order", "langfuse"),
        traces[1].pk: ("negative", "", "langfuse"),
    }

    response = _import(
        client, eval_set, integration, score_name="helpfulness", mapping="great=good, bad=bad"
    )
    assert _report(response)["unmapped"] == {"meh": 1}
    response = _import(
        client, eval_set, integration, score_name="helpfulness", mapping="meh=neutral"
    )
    assert Feedback.objects.get(trace=traces[2]).rating == "neutral"
    page = client.get(eval_set.get_absolute_url()).content.decode()
    assert "Langfuse score: 3" in page


def test_the_same_import_sent_twice_is_one_run(login, owner, synced):
    """A double click or a retried request while the import waits for a worker."""
    fake, integration, eval_set, traces = synced
    client = login(owner)
    url = reverse("traces:evalset_import_scores", args=[eval_set.workspace.slug, eval_set.pk])
    data = {"integration": integration.pk, "score_name": "correct", "mapping": "true=good"}

    first, second = client.post(url, data), client.post(url, data)

    assert first.status_code == second.status_code == 302
    assert second["Location"] == first["Location"]
    assert ScoreImportRun.objects.count() == 1
    execute_score_import(run_id=ScoreImportRun.objects.get().pk)
    client.post(url, data)  # finished: importing again is a new run
    assert ScoreImportRun.objects.count() == 2


def test_a_bad_mapping_is_a_400_and_writes_nothing(login, owner, synced):
    fake, integration, eval_set, traces = synced
    fake.add_score(traces[0].external_id, "correct", True)
    response = _import(
        login(owner), eval_set, integration, score_name="correct", mapping="true=great"
    )
    assert response.status_code == 400
    assert "not value=label" in response.content.decode()
    assert not Feedback.objects.exists()
    assert not ScoreImportRun.objects.exists()


def test_a_source_that_fails_is_reported_not_a_500(login, owner, synced):
    fake, integration, eval_set, traces = synced
    fake.html_mode = True  # a proxy's error page where Langfuse should answer
    response = _import(
        login(owner), eval_set, integration, score_name="correct", mapping="true=good"
    )
    assert response.status_code == 200
    assert response.context["run"].status == "failed"
    assert "could not be read" in response.content.decode()


def test_mapping_parser():
    assert parse_mapping("true=good,\nfalse = bad, 0.5=neutral") == {
        "true": "positive",
        "false": "negative",
        "0.5": "neutral",
    }


def test_langsmith_feedback_becomes_labels(login, workspace, owner):
    from tests.fakes.langsmith_server import FakeLangSmith
    from tests.integrations.test_langsmith import connect

    fake = FakeLangSmith(traces=3).start()
    try:
        integration = connect(workspace, fake)
        run = integration_services.start_sync(integration=integration)
        integration_services.run_sync(run_id=run.pk)
        traces = list(Trace.objects.filter(integration=integration).order_by("external_id"))
        eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
        add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
        fake.add_feedback(traces[0].external_id, "user_score", score=1, comment="thumbs up")
        fake.add_feedback(traces[1].external_id, "user_score", score=0)
        fake.add_feedback(traces[2].external_id, "tone", value="rude")
        client = login(owner)
        response = _import(
            client, eval_set, integration, score_name="user_score", mapping="1=good, 0=bad"
        )
        assert _report(response)["labelled"] == 2
        _import(client, eval_set, integration, score_name="tone", mapping="rude=bad")
    finally:
        fake.stop()
    labels = {
        f.trace_id: (f.rating, f.note, f.origin) for f in Feedback.objects.filter(eval_set=eval_set)
    }
    assert labels == {
        traces[0].pk: ("positive", "thumbs up", "langsmith"),
        traces[1].pk: ("negative", "", "langsmith"),
        traces[2].pk: ("negative", "", "langsmith"),
    }


def test_a_queued_import_polls_and_a_dead_workers_import_is_enqueued_again(
    db,
    login,
    owner,
    workspace,
    fake_langfuse,  # noqa: F811
    make_integration,  # noqa: F811
):
    from tests.conftest import dead_owner
    from traces.label_import import recover_score_imports

    integration = make_integration(fake_langfuse(traces=1))
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    run = ScoreImportRun.objects.create(
        workspace=workspace, eval_set=eval_set, integration=integration, user=owner,
        score_name="correct", mapping="true=good",
    )  # fmt: skip
    url = reverse("traces:evalset_import_scores_run", args=[workspace.slug, eval_set.pk, run.pk])
    poll = login(owner).get(url, headers={"HX-Request": "true"})
    assert poll.status_code == 200
    assert "Waiting for a worker" in poll.content.decode()
    assert 'hx-trigger="every 1s"' in poll.content.decode()

    ScoreImportRun.objects.filter(pk=run.pk).update(status="running", owner=dead_owner())
    assert recover_score_imports() == 1
    assert ScoreImportRun.objects.get(pk=run.pk).status == "queued"


def test_a_comment_no_text_column_stores_skips_its_label_not_the_import(login, owner, synced):
    """A Langfuse comment holding a NUL or a lone surrogate (which PostgreSQL refuses) is
    that one label's skip, told on the page; the other scores, in any script, still land."""
    fake, integration, eval_set, traces = synced
    fake.add_score(traces[0].external_id, "correct", True, comment="ok\x00bad")
    fake.add_score(traces[1].external_id, "correct", False, comment="x\ud800y")
    fake.add_score(traces[2].external_id, "correct", True, comment="مرحبا 👍 日本語 e\u0301")
    client = login(owner)

    response = _import(
        client, eval_set, integration, score_name="correct", mapping="true=good, false=bad"
    )
    assert response.context["run"].status == "succeeded"
    report = _report(response)
    assert report["labelled"] == 1
    notes = dict(Feedback.objects.filter(eval_set=eval_set).values_list("trace_id", "note"))
    assert notes == {traces[2].pk: "مرحبا 👍 日本語 e\u0301"}
    page = response.content.decode()
    assert f"{traces[0].external_id} (The note contains a NUL character" in page
    assert f"{traces[1].external_id} (The note contains a lone surrogate" in page
