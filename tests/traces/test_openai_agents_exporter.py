"""The real Agents SDK ``BackendSpanExporter`` posting to the receiver on the live server.

``test_openai_agents_ingest`` checks payloads built the way the SDK builds them; this runs
the SDK itself (``openai-agents``, pinned in requirements-dev.txt): a trace with agent,
generation, function and handoff spans, recorded by the SDK's own provider and exported
with an iofold token as the key and the receiver as the endpoint.
"""

import pytest
from agents.tracing import (
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    HandoffSpanData,
    TracingProcessor,
)
from agents.tracing.processors import BackendSpanExporter
from agents.tracing.provider import DefaultTraceProvider

from traces.models import Trace
from workspaces.models import Membership
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/api/v1/openai/traces/ingest"


class Collector(TracingProcessor):
    """Keep what the SDK hands a processor: the trace when it starts, spans as they end."""

    def __init__(self):
        self.items = []

    def on_trace_start(self, trace):
        self.items.append(trace)

    def on_trace_end(self, trace):
        pass

    def on_span_start(self, span):
        pass

    def on_span_end(self, span):
        self.items.append(span)

    def shutdown(self, timeout=None):
        pass

    def force_flush(self):
        pass


def record_agent_run() -> tuple[str, list]:
    """Run one triage agent through the SDK's tracing: it calls a tool and hands off."""
    provider = DefaultTraceProvider()
    collector = Collector()
    provider.set_processors([collector])
    trace = provider.create_trace(
        "Support agent", group_id="thread-42", metadata={"customer": "acme"}
    )
    trace.start()
    agent = provider.create_span(
        AgentSpanData(name="Triage", handoffs=["Billing"], tools=["lookup_order"]), parent=trace
    )
    agent.start()
    for data in (
        GenerationSpanData(
            input=[{"role": "user", "content": "Where is order 7?"}],
            output=[{"role": "assistant", "content": "It ships tomorrow."}],
            model="gpt-4o",
            usage={"input_tokens": 30, "output_tokens": 8},
        ),
        FunctionSpanData(name="lookup_order", input='{"order": 7}', output="shipped"),
        HandoffSpanData(from_agent="Triage", to_agent="Billing"),
    ):
        span = provider.create_span(data, parent=agent)
        span.start()
        span.finish()
    agent.finish()
    trace.finish()
    return trace.trace_id, collector.items


def test_the_sdk_exporter_delivers_a_trace_with_its_steps(live_server, workspace, owner):
    _, key = issue_token(
        workspace=workspace, name="agents", created_by=owner, role=Membership.Role.MEMBER
    )
    trace_id, items = record_agent_run()
    exporter = BackendSpanExporter(api_key=key, endpoint=live_server.url + PATH, max_retries=0)

    exporter.export(items)  # the SDK logs a failed post instead of raising

    row = Trace.objects.get(workspace=workspace, external_id=trace_id)
    assert row.source == Trace.Source.OPENAI
    data = row.data
    assert data["name"] == "Support agent"
    assert data["session_id"] == "thread-42"
    assert data["metadata"]["customer"] == "acme"
    by_kind = {s["metadata"]["span_type"]: s for s in data["steps"]}
    assert {k: v["type"] for k, v in by_kind.items()} == {
        "agent": "agent",
        "generation": "llm",
        "function": "tool",
        "handoff": "event",
    }
    agent_id = by_kind["agent"]["id"]
    assert all(s["parent_id"] == agent_id for k, s in by_kind.items() if k != "agent")
    assert by_kind["generation"]["model"] == "gpt-4o"
    assert by_kind["generation"]["usage"] == {"input": 30, "output": 8}
    assert by_kind["function"]["input"] == {"order": 7}
    assert by_kind["handoff"]["name"] == "handoff to Billing"
    assert data["input"] == [{"role": "user", "content": "Where is order 7?"}]
    assert data["output"] == [{"role": "assistant", "content": "It ships tomorrow."}]

    exporter.export(items)  # a retry of the same batch stores nothing new
    assert Trace.objects.filter(workspace=workspace, external_id=trace_id).count() == 1
    exporter.close()


def test_the_exporter_post_shows_on_the_sources_page(live_server, client, workspace, owner):
    """The first post creates the Agents SDK source; its page shows when, how much, what failed."""
    from django.urls import reverse

    from integrations.models import Integration

    _, key = issue_token(
        workspace=workspace, name="agents", created_by=owner, role=Membership.Role.MEMBER
    )
    trace_id, items = record_agent_run()
    exporter = BackendSpanExporter(api_key=key, endpoint=live_server.url + PATH, max_retries=0)
    exporter.export(items)
    exporter.close()

    source = Integration.objects.get(workspace=workspace, kind=Integration.Kind.OPENAI_AGENTS)
    assert source.status == Integration.Status.OK and source.last_synced_at is not None
    assert Trace.objects.get(external_id=trace_id).integration == source
    client.force_login(owner)
    setup = client.get(reverse("integrations:openai_agents", args=[workspace.slug]))
    page = client.get(setup.url).content.decode()
    assert setup.url == reverse("integrations:detail", args=[workspace.slug, source.pk])
    assert 'data-testid="trace-count">1<' in page
    assert 'data-testid="span-count">4<' in page  # agent, generation, function, handoff
    assert "(just now)" in page  # last received, seconds ago
    listing = client.get(reverse("integrations:list", args=[workspace.slug])).content.decode()
    assert "receives at /api/v1/openai/traces/ingest" in listing

    # A post with an item the receiver refuses: the source keeps the reason, dated.
    bad = client.post(
        PATH,
        {"data": [{"object": "trace.span", "id": "span_1"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert bad.status_code == 400
    source.refresh_from_db()
    assert source.status == Integration.Status.ERROR
    assert "1 of 1 items rejected" in source.last_error
    page = client.get(reverse("integrations:detail", args=[workspace.slug, source.pk]))
    assert "1 of 1 items rejected" in page.content.decode()
