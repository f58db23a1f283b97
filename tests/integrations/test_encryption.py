"""Credentials at rest: encrypted in the column, rotated under a new key by the command."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from integrations import services
from integrations.models import Integration

pytestmark = pytest.mark.django_db

SECRET = "sk-lf-0123456789-very-secret"


def raw_secret_column(integration) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_key FROM integrations_integration WHERE id = %s", [integration.pk]
        )
        return cursor.fetchone()[0]


@pytest.fixture
def integration(workspace):
    return services.create_integration(
        workspace=workspace,
        name="prod",
        host="https://cloud.langfuse.com",
        public_key="pk-lf-123",
        secret_key=SECRET,
    )


def test_the_raw_column_holds_no_plaintext(integration):
    raw = raw_secret_column(integration)

    assert SECRET not in raw
    assert "very-secret" not in raw
    assert Integration.objects.get(pk=integration.pk).secret_key == SECRET


def test_rotation_reencrypts_under_the_new_key_and_old_key_can_go(integration, settings):
    old_key = settings.IOFOLD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    before = raw_secret_column(integration)
    settings.IOFOLD_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    after = raw_secret_column(integration)
    assert after != before
    assert SECRET not in after
    assert Fernet(new_key.encode()).decrypt(after.encode()).decode() == SECRET
    settings.IOFOLD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert Integration.objects.get(pk=integration.pk).secret_key == SECRET


def test_rotation_refuses_when_a_secret_matches_no_key(integration, settings):
    from django.core.management.base import CommandError

    settings.IOFOLD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_encryption_keys")


def test_secret_is_not_in_repr_or_logs(integration, caplog):
    caplog.set_level("DEBUG")
    services.update_integration(integration=integration, secret_key="sk-lf-another-secret-9999")

    assert "sk-lf" not in repr(integration)
    assert "another-secret" not in caplog.text
    assert integration.secret_hint == "••••9999"


def test_a_secret_no_configured_key_opens_leaves_the_pages_working(
    integration, settings, client, owner, caplog
):
    """A database restored without its keys (docs/operations.md): each workspace enters
    its keys again, so its integration pages must open, not fail with a 500."""
    from django.urls import reverse

    old_keys = settings.IOFOLD_ENCRYPTION_KEYS
    stored = raw_secret_column(integration)
    settings.IOFOLD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    client.force_login(owner)
    slug = integration.workspace.slug
    for name in ("list", "detail", "edit"):
        args = [slug] if name == "list" else [slug, integration.pk]
        assert client.get(reverse(f"integrations:{name}", args=args)).status_code == 200
    assert client.get("/api/v1/integrations/").status_code == 200
    # The operator is told which secret is unreadable, never its value.
    assert "integrations.Integration.secret_key cannot be decrypted" in caplog.text
    assert stored not in caplog.text
    # Saving the integration without a new key keeps what is stored: once the right key is
    # back, the secret is there again.
    services.update_integration(integration=Integration.objects.get(pk=integration.pk), name="x")
    assert raw_secret_column(integration) == stored
    settings.IOFOLD_ENCRYPTION_KEYS = old_keys
    assert Integration.objects.get(pk=integration.pk).secret_key == SECRET
    # A key entered again is stored under the key now configured.
    settings.IOFOLD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    services.update_integration(
        integration=Integration.objects.get(pk=integration.pk), secret_key="sk-lf-new-one-4321"
    )
    assert Integration.objects.get(pk=integration.pk).secret_key == "sk-lf-new-one-4321"
