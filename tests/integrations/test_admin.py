"""The integrations admin: credentials never rendered, whichever secret it is."""

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from integrations.models import Integration
from iofold.lib.fields import EncryptedTextField

WEBHOOK_SECRET = "whsec_abcdefghijklmnopqrstuvwxyz0123456789"
SECRET_KEY = "sk-lf-0123456789abcdef0123456789abcdef"


@pytest.fixture
def superuser(db):
    from accounts.models import User

    return User.objects.create_superuser("root@example.com", "pw")


def test_change_page_shows_neither_secret_only_their_last_characters(client, workspace, superuser):
    integration = Integration.objects.create(
        workspace=workspace,
        name="Langfuse",
        host="https://cloud.langfuse.com",
        public_key="pk-lf-0123",
        secret_key=SECRET_KEY,
        webhook_secret=WEBHOOK_SECRET,
    )
    client.force_login(superuser)
    for url in [
        reverse("admin:integrations_integration_changelist"),
        reverse("admin:integrations_integration_change", args=[integration.pk]),
    ]:
        html = client.get(url).content.decode()
        assert WEBHOOK_SECRET not in html
        assert SECRET_KEY not in html
    assert "••••6789" in html  # the webhook secret's hint, as on the integration's page


@pytest.mark.parametrize(
    "model", list(admin.site._registry), ids=lambda m: f"{m._meta.app_label}.{m.__name__}"
)
def test_no_admin_form_has_an_encrypted_field(superuser, model):
    """Every encrypted field (keys, webhook secrets) stays out of every admin form."""
    request = RequestFactory().get("/")
    request.user = superuser
    model_admin = admin.site._registry[model]
    encrypted = {f.name for f in model._meta.fields if isinstance(f, EncryptedTextField)}
    assert encrypted.isdisjoint(model_admin.get_form(request).base_fields)
    assert encrypted.isdisjoint(model_admin.get_list_display(request))


def test_an_openai_source_in_the_admin_has_its_options_checked(workspace, superuser):
    from integrations.admin import IntegrationAdmin

    integration = Integration.objects.create(
        workspace=workspace,
        name="OpenAI",
        kind=Integration.Kind.OPENAI,
        host="https://api.openai.com/v1",
        secret_key="sk-proj-secret",
        options={"metadata": {"app": "a"}},
    )
    request = RequestFactory().get("/")
    request.user = superuser
    model_admin = IntegrationAdmin(Integration, admin.site)
    form_class = model_admin.get_form(request, integration)
    base = {
        "workspace": workspace.pk,
        "name": "OpenAI",
        "kind": "openai",
        "host": "https://api.openai.com/v1",
        "enabled": "on",
        "filter_names": "[]",
        "filter_tags": "[]",
        "filter_environments": "[]",
        "score_push_failures": "0",
        "scores_pushed_count": "0",
    }
    good = form_class(
        {**base, "options": '{"metadata": "app=b", "model": "gpt-4o"}'}, instance=integration
    )
    assert good.is_valid(), good.errors
    assert good.cleaned_data["options"] == {"metadata": {"app": "b"}, "model": "gpt-4o"}
    bad = form_class({**base, "options": '{"metadata": [1]}'}, instance=integration)
    assert not bad.is_valid()
    assert "metadata filter" in str(bad.errors)
