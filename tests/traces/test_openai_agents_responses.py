"""Response spans of the Agents SDK (its default model, the Responses API) get their content.

The SDK exports a ``response`` span as its response id only. With an OpenAI key on the
receiving source, a worker reads the stored response (``GET /responses/{id}`` and its
``input_items``, from the fake OpenAI server on 127.0.0.1) and the trace page shows what
the user asked and what the model answered; a response OpenAI does not store, or a source
without a key, says so on the page in one line.
"""

import pytest
from agents.tracing import AgentSpanData, ResponseSpanData
from agents.tracing.processors import BackendSpanExporter
from agents.tracing.provider import DefaultTraceProvider
from django.urls import reverse
from openai.types.responses import Response

from integrations.adapters.base import AdapterError
from integrations.adapters.openai_agents import ResponseReader
from integrations.models import Integration
from tests.conftest import wait_for
from tests.fakes.openai_store_server import FakeOpenAIStore
from tests.traces.test_openai_agents_exporter import PATH, Collector
from traces.models import Trace
from workspaces.models import Membership
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db(transaction=True)


def record_responses_run(*response_ids: str) -> tuple[str, list]:
    """One agent turn per response, recorded by the SDK's provider as its Runner does."""
    provider = DefaultTraceProvider()
    collector = Collector()
    provider.set_processors([collector])
    trace = provider.create_trace("Support agent")
    trace.start()
    agent = provider.create_span(AgentSpanData(name="Triage"), parent=trace)
    agent.start()
    for rid in response_ids:
        # What the SDK keeps of a response: with the default settings, only its id.
        response = Response.model_construct(id=rid, output=[], usage=None)
        span = provider.create_span(ResponseSpanData(response=response), parent=agent)
        span.start()
        span.finish()
    agent.finish()
    trace.finish()
    return trace.trace_id, collector.items


@pytest.fixture
def store():
    with FakeOpenAIStore() as server:
        yield server


def _export(live_server, workspace, owner, items):
    _, key = issue_token(
        workspace=workspace, name="agents", created_by=owner, role=Membership.Role.MEMBER
    )
    exporter = BackendSpanExporter(api_key=key, endpoint=live_server.url + PATH, max_retries=0)
    exporter.export(items)
    exporter.close()


def _source(workspace, **fields) -> Integration:
    return Integration.objects.create(
        workspace=workspace,
        kind=Integration.Kind.OPENAI_AGENTS,
        name="OpenAI Agents SDK",
        **fields,
    )


def _steps(row):
    return [s for s in row.data["steps"] if s["metadata"]["span_type"] == "response"]


def test_a_worker_fills_response_spans_from_the_responses_api(
    live_server, client, workspace, owner, store, celery_worker_process
):
    store.add_response("resp_1", user="Where is order 7?", answer="It ships tomorrow.")
    _source(workspace, host=store.base_url, secret_key=store.api_key)
    trace_id, items = record_responses_run("resp_1")

    _export(live_server, workspace, owner, items)

    def filled():
        row = Trace.objects.get(workspace=workspace, external_id=trace_id)
        return row if _steps(row)[0]["output"] else None

    row = wait_for(filled, message="the response content was never read")
    step = _steps(row)[0]
    assert step["model"] == "gpt-4.1"
    assert step["usage"] == {"input": 21, "output": 7}
    assert step["input"][0]["content"][0]["text"] == "Where is order 7?"
    assert step["output"][0]["content"][0]["text"] == "It ships tomorrow."
    assert [p for p, _ in store.requests] == [
        "/v1/responses/resp_1",
        "/v1/responses/resp_1/input_items",
    ]
    client.force_login(owner)
    page = client.get(reverse("traces:detail", args=[workspace.slug, row.pk])).content.decode()
    assert "Where is order 7?" in page and "It ships tomorrow." in page


def test_a_response_openai_does_not_store_is_left_empty_and_said_so(
    live_server, client, workspace, owner, store, celery_worker_process
):
    store.add_response("resp_kept", answer="Kept answer")
    _source(workspace, host=store.base_url, secret_key=store.api_key)
    trace_id, items = record_responses_run("resp_kept", "resp_gone")

    _export(live_server, workspace, owner, items)

    def read():
        row = Trace.objects.get(workspace=workspace, external_id=trace_id)
        return row if all(s["metadata"].get("response_content") for s in _steps(row)) else None

    row = wait_for(read, message="the responses were never read")
    gone, kept = sorted(_steps(row), key=lambda s: s["metadata"]["response_id"])
    assert kept["output"][0]["content"][0]["text"] == "Kept answer"
    assert gone["output"] is None and gone["input"] is None
    client.force_login(owner)
    page = client.get(reverse("traces:detail", args=[workspace.slug, row.pk])).content.decode()
    assert "1 response is not stored at OpenAI" in page


def test_a_rejected_key_shows_on_the_source(
    live_server, workspace, owner, store, celery_worker_process
):
    store.add_response("resp_1")
    source = _source(workspace, host=store.base_url, secret_key="sk-wrong")
    _, items = record_responses_run("resp_1")

    _export(live_server, workspace, owner, items)

    def failed():
        source.refresh_from_db()
        return source.status == Integration.Status.AUTH_FAILED

    wait_for(failed, message="the rejected key never showed")
    assert "OpenAI rejected the API key (HTTP 401)" in source.last_error
    assert "sk-wrong" not in source.last_error


def test_a_rejected_key_is_retried_with_back_off_then_reading_stops_until_the_key_changes(
    live_server, client, workspace, owner, store, monkeypatch
):
    """Before: every post queued a read that OpenAI answered 401 again, without end, and a
    read that failed was not tried again later at all."""
    from integrations.services import set_response_key
    from traces import agents_responses
    from traces.tasks import fill_agent_responses_task, reread_agent_responses_task

    queued = []
    monkeypatch.setattr(agents_responses, "enqueue", lambda *args: queued.append(args))
    retries = []
    retry = fill_agent_responses_task.retry

    def record_retry(*args, **kwargs):
        retries.append(kwargs["countdown"])
        return retry(*args, **kwargs)

    monkeypatch.setattr(fill_agent_responses_task, "retry", record_retry)
    # Full jitter waits a random time up to the back-off: here, the whole of it.
    monkeypatch.setattr("celery.utils.time.random.randrange", lambda stop: stop - 1)
    store.add_response("resp_1", answer="Shipped.")
    source = _source(workspace, host=store.base_url, secret_key="sk-wrong")
    trace_id, items = record_responses_run("resp_1")
    _export(live_server, workspace, owner, items)
    [(_, source_id, ids)] = queued

    # A worker runs the read; each 401 tries again later, each wait twice the last.
    fill_agent_responses_task.apply(args=(source_id, ids))

    reads = [p for p, _ in store.requests if p == "/v1/responses/resp_1"]
    assert len(reads) == agents_responses.MAX_KEY_REJECTIONS
    assert retries == [60, 120]
    source.refresh_from_db()
    assert source.status == Integration.Status.AUTH_FAILED
    assert "OpenAI rejected the API key (HTTP 401)" in source.last_error
    assert "Reading stopped after 3 rejections: save a new key to resume." in source.last_error
    client.force_login(owner)
    page = client.get(reverse("integrations:detail", args=[workspace.slug, source.pk]))
    assert "Reading stopped after 3 rejections" in page.content.decode()

    # Stopped: new posts queue no read, and a read queued before asks OpenAI nothing.
    _, more = record_responses_run("resp_1")
    _export(live_server, workspace, owner, more)
    assert len(queued) == 1
    requests = len(store.requests)
    fill_agent_responses_task.apply(args=(source_id, ids))
    assert len(store.requests) == requests

    # The trace whose read stopped and the one received since wait for a new key.
    assert agents_responses.waiting_count(source) == 2

    # A new key resumes reading, and reads them again in the background.
    set_response_key(integration=source, host=store.base_url, secret_key=store.api_key)
    assert queued[-1] == (agents_responses.REREAD_TASK, source_id)
    reread_agent_responses_task.apply(args=queued[-1][1:])
    row = Trace.objects.get(workspace=workspace, external_id=trace_id)
    assert _steps(row)[0]["output"][0]["content"][0]["text"] == "Shipped."
    assert agents_responses.waiting_count(source) == 0
    _export(live_server, workspace, owner, items)
    assert queued[-1][0] == agents_responses.FILL_TASK


def test_saving_a_new_key_reads_again_the_traces_received_while_reading_was_stopped(
    live_server, client, workspace, owner, store, celery_worker_process
):
    """Before: traces that arrived while reading was stopped (three 401s) kept their empty
    responses for good; a new key read only the traces received after it."""
    from traces.agents_responses import MAX_KEY_REJECTIONS

    store.add_response("resp_1", user="Where is order 7?", answer="It ships tomorrow.")
    store.add_response("resp_2", answer="Refunded.")
    source = _source(
        workspace,
        host=store.base_url,
        secret_key="sk-wrong",
        status=Integration.Status.AUTH_FAILED,
        response_key_rejections=MAX_KEY_REJECTIONS,
    )
    first, items = record_responses_run("resp_1")
    second, more = record_responses_run("resp_2")
    _export(live_server, workspace, owner, items)
    _export(live_server, workspace, owner, more)
    client.force_login(owner)
    page_url = reverse("integrations:detail", args=[workspace.slug, source.pk])
    assert store.requests == []  # stopped: OpenAI is not asked with the rejected key

    page = client.get(page_url).content.decode()
    assert "2 traces received while reading was stopped wait to be read again" in page

    saved = client.post(
        reverse("integrations:openai_agents_key", args=[workspace.slug, source.pk]),
        {"base_url": store.base_url, "api_key": store.api_key},
        follow=True,
    )
    assert "and that of the 2 received while reading was stopped" in saved.content.decode()

    def answered(trace_id):
        row = Trace.objects.get(workspace=workspace, external_id=trace_id)
        output = _steps(row)[0]["output"]
        return output[0]["content"][0]["text"] if output else None

    wait_for(
        lambda: answered(first) and answered(second),
        message="the traces received while reading was stopped were never read again",
    )
    assert (answered(first), answered(second)) == ("It ships tomorrow.", "Refunded.")
    wait_for(lambda: "responses-waiting" not in client.get(page_url).content.decode())
    reads = sorted(p for p, _ in store.requests)
    assert reads == [
        "/v1/responses/resp_1",
        "/v1/responses/resp_1/input_items",
        "/v1/responses/resp_2",
        "/v1/responses/resp_2/input_items",
    ]

    # Saving the key again reads nothing twice: nothing waits any more.
    client.post(
        reverse("integrations:openai_agents_key", args=[workspace.slug, source.pk]),
        {"base_url": store.base_url, "api_key": store.api_key},
    )
    assert celery_worker_process.wait_until_idle()
    assert len(store.requests) == 4


def test_without_a_key_the_trace_page_says_what_response_content_needs(
    live_server, client, workspace, owner
):
    trace_id, items = record_responses_run("resp_1")
    _export(live_server, workspace, owner, items)

    row = Trace.objects.get(workspace=workspace, external_id=trace_id)
    assert _steps(row)[0]["output"] is None
    client.force_login(owner)
    page = client.get(reverse("traces:detail", args=[workspace.slug, row.pk])).content.decode()
    assert "Response content needs an OpenAI API key on the" in page


def test_a_manager_sets_the_key_on_the_sources_page(client, workspace, owner, production):
    source = _source(workspace, host="")
    client.force_login(owner)
    url = reverse("integrations:openai_agents_key", args=[workspace.slug, source.pk])

    refused = client.post(url, {"base_url": "http://169.254.169.254/v1", "api_key": "sk-x1234"})
    assert refused.status_code == 400
    assert "169.254.169.254 is a link-local address" in refused.content.decode()
    source.refresh_from_db()
    assert source.secret_key == ""  # nothing half-written

    saved = client.post(url, {"base_url": "https://api.openai.com/v1", "api_key": "sk-live-9876"})
    assert saved.status_code == 302
    source.refresh_from_db()
    assert source.secret_key == "sk-live-9876" and source.host == "https://api.openai.com/v1"
    page = client.get(reverse("integrations:detail", args=[workspace.slug, source.pk]))
    text = page.content.decode()
    assert "Reading with the key ending in" in text and "sk-live-9876" not in text

    client.post(url, {"remove": "1"})
    source.refresh_from_db()
    assert source.secret_key == ""


def test_the_read_goes_through_the_outbound_guard(production):
    """A key's base URL on a private address is refused before any connection."""
    reader = ResponseReader(host="http://127.0.0.1:9/v1", secret_key="sk-x")

    with pytest.raises(AdapterError) as refused:
        reader.read("resp_1")

    assert refused.value.code == "unreachable"
    assert "127.0.0.1 is a loopback address" in refused.value.message
