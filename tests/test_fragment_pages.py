"""A fragment's address opened on its own (reload, address bar, new tab) is a page in the
layout with the way back; htmx still gets the fragment alone."""

import pytest
from django.urls import reverse

from integrations import services as integration_services
from integrations.models import SyncRun
from iofold.pipeline import ingest_traces
from tests.traces.factories import TraceFactory, trace_data
from traces.models import Trace

pytestmark = pytest.mark.django_db


def _sync_run(workspace):
    integration = integration_services.create_integration(
        workspace=workspace,
        name="Langfuse prod",
        host="http://x.test",
        public_key="pk",
        secret_key="sk",
    )
    run = SyncRun.objects.create(workspace=workspace, integration=integration)
    url = reverse("integrations:run_progress", args=[workspace.slug, integration.pk, run.pk])
    back = reverse("integrations:detail", args=[workspace.slug, integration.pk])
    return url, back, "Back to Langfuse prod", 'data-testid="sync-progress"'


def _turn_steps(workspace):
    data = {**trace_data(1), "id": "turn-1", "session_id": "chat-1"}
    ingest_traces(workspace=workspace, source="upload", traces=[data])
    trace = Trace.objects.for_workspace(workspace).get(external_id="turn-1")
    conversation = trace.conversation_id
    url = reverse("traces:conversation_turn_steps", args=[workspace.slug, conversation, trace.pk])
    back = reverse("traces:conversation_detail", args=[workspace.slug, conversation])
    return url, back, "Back to the conversation", 'data-testid="step"'


def _trace_comments(workspace):
    trace = TraceFactory(workspace=workspace)
    url = reverse("evals:trace_comments", args=[workspace.slug, trace.pk])
    back = reverse("traces:detail", args=[workspace.slug, trace.pk])
    return url, back, "Back to the trace", 'data-testid="comments"'


FRAGMENTS = [_sync_run, _turn_steps, _trace_comments]


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda f: f.__name__.strip("_"))
def test_a_fragment_opened_on_its_own_is_a_page_with_the_way_back(
    client, owner, workspace, fragment
):
    url, back, back_label, content = fragment(workspace)
    client.force_login(owner)

    response = client.get(url)

    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().lower().startswith("<!doctype html>")  # the layout, not a bare fragment
    assert 'data-testid="fragment-page"' in page
    assert f'href="{back}"' in page and back_label in page
    assert content in page


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda f: f.__name__.strip("_"))
def test_htmx_still_gets_the_fragment_alone(client, owner, workspace, fragment):
    url, _, _, content = fragment(workspace)
    client.force_login(owner)

    response = client.get(url, headers={"HX-Request": "true"})

    page = response.content.decode()
    assert content in page
    assert "<html" not in page and 'data-testid="fragment-page"' not in page
