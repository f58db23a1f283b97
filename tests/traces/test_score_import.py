"""Scores a team gave in Langfuse become labels of the eval set's synced traces."""

import pytest
from django.urls import reverse

from integrations import services as integration_services
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401 - fixtures
from tests.traces.factories import EvalSetFactory
from traces.label_import import parse_mapping
from traces.models import Feedback, Trace
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
    return client.post(url, {"integration": integration.pk, **data})


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
    assert response.context["score_report"].labelled == 2
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
    assert response.context["score_report"].unmapped == {"meh": 1}
    response = _import(
        client, eval_set, integration, score_name="helpfulness", mapping="meh=neutral"
    )
    assert Feedback.objects.get(trace=traces[2]).rating == "neutral"
    page = client.get(eval_set.get_absolute_url()).content.decode()
    assert "Langfuse score: 3" in page


def test_a_bad_mapping_is_a_400_and_writes_nothing(login, owner, synced):
    fake, integration, eval_set, traces = synced
    fake.add_score(traces[0].external_id, "correct", True)
    response = _import(
        login(owner), eval_set, integration, score_name="correct", mapping="true=great"
    )
    assert response.status_code == 400
    assert "not value=label" in response.content.decode()
    assert not Feedback.objects.exists()


def test_a_source_that_fails_is_reported_not_a_500(login, owner, synced):
    fake, integration, eval_set, traces = synced
    fake.html_mode = True  # a proxy's error page where Langfuse should answer
    response = _import(
        login(owner), eval_set, integration, score_name="correct", mapping="true=good"
    )
    assert response.status_code == 400
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
        assert response.context["score_report"].labelled == 2
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
