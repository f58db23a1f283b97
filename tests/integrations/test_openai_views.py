"""OpenAI pages: connect, test the key, edit, sync now with progress; the Agents SDK setup."""

import html
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations import services
from integrations.models import Integration, SyncRun
from tests.fakes.openai_store_server import API_KEY

pytestmark = pytest.mark.django_db


def test_connect_test_edit_and_sync_an_openai_source(
    login, owner, workspace, openai_store, django_capture_on_commit_callbacks
):
    created = int((timezone.now() - timedelta(hours=1)).timestamp())
    for i in range(7):
        openai_store.add(
            f"chatcmpl-{i}", created=created + i, metadata={"app": "a" if i < 5 else "b"}
        )
    client = login(owner)
    listing = client.get(reverse("integrations:list", args=[workspace.slug])).content.decode()
    assert "Connect OpenAI" in listing and "OpenAI Agents SDK" in listing

    form = {
        "name": "OpenAI prod",
        "base_url": openai_store.base_url,
        "api_key": "sk-wrong",
        "metadata_filter": "app=a",
        "model_filter": "",
        "sync_interval_minutes": "",
    }
    tested = client.post(
        reverse("integrations:test_new", args=[workspace.slug]),
        {**form, "kind": "openai"},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert "OpenAI rejected the API key" in tested
    form["api_key"] = API_KEY
    tested = client.post(
        reverse("integrations:test_new", args=[workspace.slug]), {**form, "kind": "openai"}
    ).content.decode()
    assert "Connected to OpenAI at http://127.0.0.1:" in tested
    assert "can read its stored chat completions." in tested
    assert "Connected to project" not in tested
    bad = client.post(
        reverse("integrations:create", args=[workspace.slug]) + "?kind=openai",
        {**form, "metadata_filter": "no equals sign"},
    )
    assert "is not key=value" in bad.content.decode()

    response = client.post(
        reverse("integrations:create", args=[workspace.slug]) + "?kind=openai", form
    )
    integration = Integration.objects.get(name="OpenAI prod")
    assert response.status_code == 302
    assert (integration.kind, integration.host, integration.options) == (
        "openai",
        openai_store.base_url,
        {"metadata": {"app": "a"}},
    )
    assert integration.secret_key == API_KEY
    detail = client.get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    page = detail.content.decode()
    assert "OpenAI has no API for scores" in page
    assert "<code>app=a</code>" in page

    edit_url = reverse("integrations:edit", args=[workspace.slug, integration.pk])
    assert "app=a" in client.get(edit_url).content.decode()
    edited = client.post(edit_url, {**form, "api_key": "", "model_filter": "gpt-4o-mini"})
    assert edited.status_code == 302
    integration.refresh_from_db()
    assert integration.options == {"metadata": {"app": "a"}, "model": "gpt-4o-mini"}
    assert integration.secret_key == API_KEY  # empty keeps the stored key
    tested = client.post(
        reverse("integrations:test_edit", args=[workspace.slug, integration.pk]),
        {**form, "api_key": ""},
    ).content.decode()
    assert "Connected" in tested

    with django_capture_on_commit_callbacks():
        client.post(reverse("integrations:sync", args=[workspace.slug, integration.pk]))
    run = SyncRun.objects.get(integration=integration)
    services.run_sync(run_id=run.pk)
    progress = client.get(
        reverse("integrations:run_progress", args=[workspace.slug, integration.pk, run.pk]),
        headers={"HX-Request": "true"},
    )
    assert "5 new" in progress.content.decode()

    # A key revoked later: the sync fails and the page says why.
    integration.secret_key = "sk-revoked"
    integration.save()
    with django_capture_on_commit_callbacks():
        client.post(reverse("integrations:sync", args=[workspace.slug, integration.pk]))
    services.run_sync(run_id=SyncRun.objects.filter(integration=integration).first().pk)
    page = client.get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    assert "OpenAI rejected the API key (HTTP 401)" in page.content.decode()


def test_the_agents_sdk_page_shows_the_endpoint_and_a_setup_example(login, member, workspace):
    page = login(member).get(reverse("integrations:openai_agents", args=[workspace.slug]))
    body = html.unescape(page.content.decode())
    assert "http://testserver/api/v1/openai/traces/ingest" in body
    assert 'BackendSpanExporter(api_key="iof_…", endpoint="http://testserver/' in body
    assert "set_trace_processors" in body


def test_the_api_reports_the_agents_sdk_source(api_client, workspace):
    from tests.integrations.otlp_helpers import api_token

    url = reverse("api-openai-agents-source")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token(workspace, 'member')}")
    assert api_client.post(url).status_code == 403  # members send traces; admins configure
    admin = api_token(workspace, "admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {admin}")

    before = api_client.get(url).json()
    created = api_client.post(url)
    again = api_client.post(url)
    trace = {"object": "trace", "id": "trace_" + "a" * 32, "workflow_name": "Support"}
    posted = api_client.post(reverse("api-openai-agents-ingest"), {"data": [trace]}, format="json")
    after = api_client.get(url).json()

    endpoint = "http://testserver/api/v1/openai/traces/ingest"
    assert before["integration"] is None and before["endpoint"] == endpoint
    assert f'BackendSpanExporter(api_key="iof_…", endpoint="{endpoint}")' in before["example"]
    assert (created.status_code, again.status_code) == (201, 200)
    assert again.json()["integration"] == created.json()["integration"]
    assert posted.status_code == 200, posted.content
    assert after["integration"] == created.json()["integration"]
    assert (after["traces"], after["status"], after["enabled"]) == (1, "ok", True)
    assert after["last_received_at"] is not None
    source = Integration.objects.get(pk=after["integration"])
    assert source.kind == Integration.Kind.OPENAI_AGENTS


def test_a_wrong_openai_key_is_reported_when_saved_and_kept(login, owner, workspace, openai_store):
    """Before: saved without a word, found only at the first sync."""
    client = login(owner)
    form = {"name": "OpenAI prod", "base_url": openai_store.base_url, "api_key": "sk-wrong-key"}

    page = client.post(
        reverse("integrations:create", args=[workspace.slug]) + "?kind=openai", form, follow=True
    )

    text = page.content.decode()
    assert "“OpenAI prod” saved, but the connection failed: OpenAI rejected the API key" in text
    assert "sk-wrong-key" not in text
    assert Integration.objects.for_workspace(workspace).get().secret_key == "sk-wrong-key"
