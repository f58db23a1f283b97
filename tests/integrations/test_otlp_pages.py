"""The OpenTelemetry source in the UI, the API and the admin, and the README's example."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from integrations import services
from integrations.exceptions import IntegrationError
from integrations.models import Integration
from integrations.otlp.views import setup_example
from tests.integrations.otlp_helpers import (
    Recorder,
    api_token,
    older_genai_trace,
    openinference_trace,
    protobuf_body,
    semconv_agent_trace,
)
from traces.models import Trace

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def _receive(client, workspace, *, role="member"):
    recorder = Recorder()
    older_genai_trace(recorder)
    response = client.post(
        "/v1/traces",
        protobuf_body(recorder.take()),
        content_type="application/x-protobuf",
        HTTP_AUTHORIZATION=f"Bearer {api_token(workspace, role)}",
    )
    assert response.status_code == 200
    return Integration.objects.get(kind=Integration.Kind.OTLP)


def test_setup_page_shows_endpoint_and_five_line_example(login, workspace, member):
    response = login(member).get(reverse("integrations:otlp_setup", args=[workspace.slug]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "http://testserver/v1/traces" in page
    example = setup_example("http://testserver/v1/traces")
    assert len(example.splitlines()) == 5
    assert 'data-testid="otlp-create"' not in page  # members send; owners and admins create


def test_admin_creates_the_source_and_lands_on_its_page(login, workspace, admin_user):
    client = login(admin_user)
    url = reverse("integrations:otlp_setup", args=[workspace.slug])

    response = client.post(url)
    again = client.post(url)

    source = Integration.objects.get(kind=Integration.Kind.OTLP)
    detail = reverse("integrations:detail", args=[workspace.slug, source.pk])
    assert response.url == again.url == detail
    assert client.get(url).url == detail  # the set-up page sends to the existing source
    assert Integration.objects.count() == 1


def test_member_cannot_create_the_source_from_the_page(login, workspace, member):
    response = login(member).post(reverse("integrations:otlp_setup", args=[workspace.slug]))
    assert response.status_code == 403


def test_detail_page_shows_last_received_counts_and_last_error(
    client, login, workspace, owner, django_assert_max_num_queries
):
    source = _receive(client, workspace)
    Integration.objects.filter(pk=source.pk).update(
        status=Integration.Status.ERROR, last_error="1 of 3 spans rejected: no ids"
    )
    login(owner)

    with django_assert_max_num_queries(12):
        response = client.get(reverse("integrations:detail", args=[workspace.slug, source.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="trace-count">1<' in page
    assert 'data-testid="span-count">2<' in page
    assert "(just now)" in page  # last received, a moment ago
    assert "1 of 3 spans rejected: no ids" in page
    assert "http://testserver/v1/traces" in page
    listing = client.get(reverse("integrations:list", args=[workspace.slug])).content.decode()
    assert "receives at /v1/traces" in listing and "received " in listing
    # Its schedule is the exporter's: there is no sync to ask for.
    assert "Receives as sent" in listing and "Syncs when asked" not in listing


def test_a_receive_only_source_cannot_be_synced_or_tested(client, workspace):
    source = _receive(client, workspace)
    with pytest.raises(IntegrationError, match="nothing to sync"):
        services.start_sync(integration=source)
    with pytest.raises(IntegrationError, match="nothing to sync"):
        services.test_connection(integration=source)


def test_api_reports_the_source(client, api_client, workspace):
    token = api_token(workspace, "admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = reverse("api-otlp-source")

    before = api_client.get(url).json()
    created = api_client.post(url)
    _receive(client, workspace)
    after = api_client.get(url).json()

    assert before["integration"] is None and before["endpoint"] == "http://testserver/v1/traces"
    assert created.status_code == 201
    assert after["integration"] == created.json()["integration"]
    assert (after["traces"], after["spans"], after["status"]) == (1, 2, "ok")
    assert after["last_received_at"] is not None
    listed = api_client.get(reverse("api-integrations")).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["kind"] for r in rows] == ["otlp"]


@pytest.fixture
def superuser(db):
    from accounts.models import User

    return User.objects.create_superuser("root@example.com", "pw")


def test_admin_lists_the_source_and_does_not_sync_it(client, workspace, superuser):
    source = _receive(client, workspace)
    admin = type(client)()
    admin.force_login(superuser)
    changelist = reverse("admin:integrations_integration_changelist")

    listing = admin.get(changelist + "?kind=otlp")
    change = admin.get(reverse("admin:integrations_integration_change", args=[source.pk]))
    response = admin.post(
        changelist, {"action": "sync_now", "_selected_action": [source.pk]}, follow=True
    )

    assert listing.status_code == change.status_code == 200
    assert source.name in listing.content.decode()
    assert "0 sync(s) queued, 1 skipped" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_five_line_example_sends_a_trace(live_server, workspace):
    """Run the page's (and README's) example in a fresh interpreter against the server."""
    token = api_token(workspace)
    script = setup_example(f"{live_server.url}/v1/traces", token) + (
        "\nwith trace.get_tracer('demo').start_as_current_span('hello') as span:"
        "\n    span.set_attribute('gen_ai.operation.name', 'chat')"
        "\nprovider.shutdown()\n"
    )

    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=ROOT)

    assert Trace.objects.for_workspace(workspace).get().name == "hello"


def test_readme_documents_the_endpoint_with_the_same_example():
    readme = (ROOT / "README.md").read_text()
    assert "POST /v1/traces" in readme
    assert setup_example("https://iofold.example.com/v1/traces") in readme


def test_received_traces_show_in_the_trace_list_and_page(client, login, workspace, owner):
    recorder = Recorder()
    semconv_agent_trace(recorder)
    openinference_trace(recorder)
    client.post(
        "/v1/traces",
        protobuf_body(recorder.take()),
        content_type="application/x-protobuf",
        HTTP_AUTHORIZATION=f"Bearer {api_token(workspace)}",
    )
    login(owner)
    source = Integration.objects.get(kind=Integration.Kind.OTLP)

    listing = client.get(
        reverse("traces:list", args=[workspace.slug]) + f"?integration={source.pk}"
    )
    pages = [
        client.get(reverse("traces:detail", args=[workspace.slug, trace.pk]))
        for trace in Trace.objects.all()
    ]

    assert listing.status_code == 200
    assert "invoke_agent support" in listing.content.decode()
    assert [p.status_code for p in pages] == [200, 200]
    assert "lookup_order" in pages[0].content.decode() + pages[1].content.decode()


def test_admin_creates_the_agents_sdk_source_from_its_page(login, workspace, admin_user):
    client = login(admin_user)
    url = reverse("integrations:openai_agents", args=[workspace.slug])
    assert 'data-testid="openai-agents-create"' in client.get(url).content.decode()

    response = client.post(url)

    source = Integration.objects.get(kind=Integration.Kind.OPENAI_AGENTS)
    assert response.url == reverse("integrations:detail", args=[workspace.slug, source.pk])
    page = client.get(response.url).content.decode()
    assert 'data-testid="openai-agents-received"' in page and "nothing yet" in page
    with pytest.raises(IntegrationError, match="nothing to sync"):
        services.start_sync(integration=source)


def test_disabled_agents_sdk_source_refuses_posts(client, workspace):
    from integrations import receivers

    source = receivers.get_or_create_receiver(
        workspace=workspace, kind=Integration.Kind.OPENAI_AGENTS
    )
    Integration.objects.filter(pk=source.pk).update(enabled=False)
    response = client.post(
        "/api/v1/openai/traces/ingest",
        {"data": [{"object": "trace", "id": "trace_1", "workflow_name": "w"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token(workspace, 'member')}",
    )
    assert response.status_code == 403
    assert "disabled" in response.json()["detail"]
    assert not Trace.objects.exists()


def test_verdicts_are_not_sent_to_a_receiving_source(workspace):
    from integrations import receivers
    from integrations.adapters.base import ScoreIn

    source = receivers.get_or_create_receiver(
        workspace=workspace, kind=Integration.Kind.OPENAI_AGENTS
    )
    score = ScoreIn(id="s1", trace_id="trace_1", name="ok", value=True)

    delivery = services.deliver_scores(integration=source, scores=[score])

    assert delivery.delivered == []
    assert delivery.failed == {0: "OpenAI Agents SDK does not accept verdicts back."}
