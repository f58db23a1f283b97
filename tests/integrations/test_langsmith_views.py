"""LangSmith in the pages, the API and the admin: connect, test, sync, never show the key."""

import pytest
from django.urls import reverse

from integrations.models import Integration, SyncRun
from tests.fakes.langsmith_server import API_KEY, FakeLangSmith
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake():
    server = FakeLangSmith(traces=4).start()
    yield server
    server.stop()


@pytest.fixture
def token_client(api_client, workspace, owner):
    _, raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api_client


def form_data(fake, **overrides):
    return {
        "kind": "langsmith",
        "name": "LangSmith prod",
        "region": "self",
        "custom_host": fake.url,
        "api_key": API_KEY,
        "project": "default",
        "tenant_id": "",
        **overrides,
    }


def create_url(workspace):
    return reverse("integrations:create", args=[workspace.slug]) + "?kind=langsmith"


def test_the_connect_page_offers_every_kind(login, owner, workspace):
    client = login(owner)
    page = client.get(reverse("integrations:create", args=[workspace.slug])).content.decode()
    assert "Connect Langfuse" in page and "?kind=langsmith" in page
    page = client.get(create_url(workspace)).content.decode()
    assert "Connect LangSmith" in page and 'name="project"' in page and 'name="api_key"' in page
    missing = client.get(reverse("integrations:create", args=[workspace.slug]) + "?kind=nope")
    assert missing.status_code == 404


def test_admin_connects_langsmith_and_the_key_is_never_rendered_again(
    login, owner, workspace, fake
):
    client = login(owner)
    response = client.post(create_url(workspace), form_data(fake))
    assert response.status_code == 302
    integration = Integration.objects.for_workspace(workspace).get()
    assert integration.kind == "langsmith" and integration.secret_key == API_KEY
    assert integration.options == {"project": "default"}
    for name in ("integrations:detail", "integrations:edit"):
        page = client.get(reverse(name, args=[workspace.slug, integration.pk])).content.decode()
        assert API_KEY not in page
        assert "••••fake" in page
    detail = client.get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    assert 'data-testid="option-project">default<' in detail.content.decode()


def test_editing_without_a_key_keeps_the_stored_one(login, owner, workspace, fake):
    client = login(owner)
    client.post(create_url(workspace), form_data(fake))
    integration = Integration.objects.get()
    response = client.post(
        reverse("integrations:edit", args=[workspace.slug, integration.pk]),
        form_data(fake, api_key="", project="other"),
    )
    assert response.status_code == 302
    integration.refresh_from_db()
    assert (integration.secret_key, integration.options["project"]) == (API_KEY, "other")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"api_key": "lsv2_pt_wrong"}, "LangSmith rejected the API key (401)"),
        ({"project": "nope"}, "No LangSmith project is named “nope”"),
        ({}, "Connected to project “default”."),
    ],
)
def test_test_connection_explains_the_outcome(login, owner, workspace, fake, change, expected):
    client = login(owner)
    response = client.post(
        reverse("integrations:test_new", args=[workspace.slug]), form_data(fake, **change)
    )
    assert expected in response.content.decode()


def test_sync_now_and_the_last_error_on_the_page(login, owner, workspace, fake):
    from integrations import services

    client = login(owner)
    client.post(create_url(workspace), form_data(fake))
    integration = Integration.objects.get()
    run = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert run.status == SyncRun.Status.SUCCEEDED and run.created_count == 4
    Integration.objects.filter(pk=integration.pk).update(secret_key="lsv2_pt_wrong")
    integration.refresh_from_db()
    failed = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert failed.status == SyncRun.Status.FAILED
    page = client.get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    assert "LangSmith rejected the API key (401)" in page.content.decode()


def test_the_api_creates_and_updates_a_langsmith_source(token_client, fake):
    created = token_client.post(
        reverse("api-integrations"),
        {
            "kind": "langsmith",
            "name": "ls",
            "host": fake.url,
            "secret_key": API_KEY,
            "options": {"project": "default"},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["kind"] == "langsmith" and body["options"] == {"project": "default"}
    assert API_KEY not in created.content.decode()
    pk = body["id"]
    updated = token_client.patch(
        reverse("api-integration", args=[pk]), {"options": {"project": "b"}}, format="json"
    )
    assert updated.status_code == 200 and updated.json()["options"] == {"project": "b"}
    assert Integration.objects.get(pk=pk).secret_key == API_KEY
    refused = token_client.post(
        reverse("api-integrations"),
        {"kind": "langsmith", "name": "x", "host": fake.url, "secret_key": API_KEY},
        format="json",
    )
    assert refused.status_code == 400
    assert "Enter the LangSmith project" in refused.content.decode()


def test_the_admin_checks_options_with_the_kinds_adapter(
    client, fake, workspace, django_user_model
):
    from integrations import services

    integration = services.create_integration(
        workspace=workspace,
        kind="langsmith",
        name="ls",
        host=fake.url,
        secret_key=API_KEY,
        public_key="",
        options={"project": "default"},
    )
    admin = django_user_model.objects.create_superuser("root@example.com", "pw")
    client.force_login(admin)
    url = reverse("admin:integrations_integration_change", args=[integration.pk])
    page = client.get(url)
    assert page.status_code == 200 and API_KEY not in page.content.decode()


def test_a_wrong_langsmith_key_is_reported_when_saved_and_kept(login, owner, workspace, fake):
    """Before: saved without a word, found only at the first sync."""
    client = login(owner)

    page = client.post(create_url(workspace), form_data(fake, api_key="lsv2_wrong"), follow=True)

    text = page.content.decode()
    assert "“LangSmith prod” saved, but the connection failed:" in text
    assert "lsv2_wrong" not in text
    integration = Integration.objects.for_workspace(workspace).get()
    assert integration.secret_key == "lsv2_wrong"
    assert integration.status == Integration.Status.AUTH_FAILED
