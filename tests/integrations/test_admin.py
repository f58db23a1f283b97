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
