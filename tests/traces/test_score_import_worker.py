"""A Langfuse score import queued by the page and carried out by a real Celery worker."""

import pytest
from django.urls import reverse

from integrations import services as integration_services
from tests.conftest import wait_for
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401 - fixtures
from tests.traces.factories import EvalSetFactory
from traces.models import Feedback, ScoreImportRun, Trace
from traces.services import add_traces_to_eval_set

pytestmark = pytest.mark.worker


def test_scores_are_imported_by_the_worker_while_the_page_polls(
    celery_worker_process,
    transactional_db,
    login,
    owner,
    workspace,
    fake_langfuse,  # noqa: F811
    make_integration,  # noqa: F811
):
    fake = fake_langfuse(traces=3)
    integration = make_integration(fake)
    sync = integration_services.start_sync(integration=integration)  # the worker syncs it
    wait_for(lambda: type(sync).objects.get(pk=sync.pk).is_final, timeout=60, message="no sync")
    traces = list(Trace.objects.filter(integration=integration).order_by("external_id"))
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    fake.add_score(traces[0].external_id, "correct", True, comment="spot on")
    fake.add_score(traces[1].external_id, "correct", False)
    fake.add_score(traces[2].external_id, "correct", "maybe", data_type="CATEGORICAL")
    client = login(owner)

    response = client.post(
        reverse("traces:evalset_import_scores", args=[workspace.slug, eval_set.pk]),
        {"integration": integration.pk, "score_name": "correct", "mapping": "true=good, false=bad"},
    )

    assert response.status_code == 302
    run = ScoreImportRun.objects.get()
    wait_for(
        lambda: ScoreImportRun.objects.get(pk=run.pk).is_final,
        timeout=90,
        message="score import not done on the worker",
    )
    poll = client.get(response["Location"], headers={"HX-Request": "true"})
    assert poll.status_code == 286  # htmx stops polling a finished import
    page = poll.content.decode()
    assert "2 labels imported from 3 scores" in page
    assert "maybe (1)" in page
    assert {f.trace_id: f.rating for f in Feedback.objects.filter(eval_set=eval_set)} == {
        traces[0].pk: "positive",
        traces[1].pk: "negative",
    }
