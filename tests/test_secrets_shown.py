"""No page or API answer, to any role, shows a stored secret, nor any log line.

Secrets: an integration's secret key and webhook secret, the provider's API key, the
automation webhook's signing secret, API tokens (raw and digest) and invitation links
(raw and digest). The secrets made in the app are shown once, on the page after their
POST; after that showing, no page has them again.
"""

import logging
import re

import pytest
from django.core import mail
from django.db import transaction
from django.urls import reverse

from evals.models import ProviderSettings
from integrations.models import Integration
from tests.factories import MembershipFactory, UserFactory
from tests.test_tenancy import API_CASES, UI_CASES, _ui_url
from workspaces.models import ApiToken, Invitation

ROLES = ["owner", "admin", "member", "viewer"]
INTEGRATION_SECRET = "sk-lf-INTEGRATIONSECRETMIDDLE-9f3a"
PROVIDER_KEY = "sk-ant-PROVIDERKEYMIDDLE-77b1"


def _with_secrets(workspace, url: str) -> str:
    """Give every integration of the workspace a secret key (the cases make their own,
    when their URL is built); return ``url``."""
    for integration in Integration.objects.for_workspace(workspace):
        integration.secret_key = INTEGRATION_SECRET
        integration.save(update_fields=["secret_key"])
    return url


def _shown_once(client, workspace, django_capture_on_commit_callbacks) -> list[str]:
    """Make each secret the app shows once, as an owner, and see it shown; return them."""
    slug = workspace.slug
    made = []
    tokens_url = reverse("workspaces:tokens", kwargs={"slug": slug})
    page = client.post(tokens_url, {"name": "ci", "role": "member"}, follow=True)
    made.append(re.search(r"iof_[A-Za-z0-9_-]{20,}", page.content.decode()).group(0))

    integration = Integration.objects.create(
        workspace=workspace, name="hook", host="http://127.0.0.1:9", public_key="pk-1"
    )
    url = reverse("integrations:webhook_secret", kwargs={"slug": slug, "pk": integration.pk})
    page = client.post(url, {"confirmed": "yes"}, follow=True)
    made.append(re.search(r"whsec_[A-Za-z0-9_-]{20,}", page.content.decode()).group(0))

    url = reverse("evals:automation", kwargs={"slug": slug})
    body = {"monthly_refinements": 2, "webhook_url": "https://hooks.example.com/iofold"}
    page = client.post(url, body, follow=True)
    made.append(re.search(r"whsec_[A-Za-z0-9_-]{20,}", page.content.decode()).group(0))

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("workspaces:invite", kwargs={"slug": slug}),
            {"email": "new@example.com", "role": "member"},
        )
    made.append(re.search(r"/invitations/([A-Za-z0-9_-]+)", mail.outbox[-1].body).group(1))
    return made


def _secrets(workspace, shown: list[str]) -> list[str]:
    stored = [
        *ApiToken.objects.for_workspace(workspace).values_list("digest", flat=True),
        *Invitation.objects.for_workspace(workspace).values_list("token_digest", flat=True),
    ]
    # Hints show a secret's last four characters: look for the rest.
    return [s[:-4] for s in [INTEGRATION_SECRET, PROVIDER_KEY, *shown]] + stored


@pytest.fixture
def world(client, workspace, django_capture_on_commit_callbacks):
    users = {
        role: MembershipFactory(
            workspace=workspace, user=UserFactory(email=f"{role}@acme.test"), role=role
        ).user
        for role in ROLES
    }
    ProviderSettings.objects.create(
        workspace=workspace, provider="anthropic", model="claude", api_key=PROVIDER_KEY
    )
    client.force_login(users["owner"])
    shown = _shown_once(client, workspace, django_capture_on_commit_callbacks)
    return users, shown


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def _sweep(cases, url, get, workspace, shown) -> dict:
    """GET every case's URL; return the secrets found in each answer, by case."""
    leaks = {}
    for case in cases:
        if case.method != "get":
            continue
        # Each case makes its objects; roll them back after its page.
        with transaction.atomic():
            response = get(url(case))
            found = _leaks(response.content.decode(errors="replace"), _secrets(workspace, shown))
            if found:
                leaks[str(case)] = found
            transaction.set_rollback(True)
    return leaks


@pytest.mark.parametrize("role", ROLES)
def test_no_page_shows_a_secret_to_any_role(role, client, workspace, world, caplog):
    users, shown = world
    client.force_login(users[role])
    caplog.set_level(logging.DEBUG)

    def url(case):
        return _with_secrets(workspace, _ui_url(case, workspace))

    leaks = _sweep(UI_CASES, url, lambda u: client.get(u, follow=True), workspace, shown)

    assert leaks == {}
    assert _leaks(caplog.text, _secrets(workspace, shown)) == []


@pytest.mark.parametrize("role", ROLES)
def test_no_api_answer_shows_a_secret_to_any_role(role, api_client, workspace, world, caplog):
    users, shown = world
    api_client.force_login(users[role])
    caplog.set_level(logging.DEBUG)

    def url(case):
        return _with_secrets(workspace, reverse(case.name, kwargs=case.kwargs(workspace)))

    def get(url):
        return api_client.get(url, headers={"X-Workspace": workspace.slug})

    assert _sweep(API_CASES, url, get, workspace, shown) == {}
    assert _leaks(caplog.text, _secrets(workspace, shown)) == []


def test_making_the_secrets_logs_none_of_them(
    client, workspace, caplog, django_capture_on_commit_callbacks
):
    owner = MembershipFactory(workspace=workspace, role="owner").user
    client.force_login(owner)
    caplog.set_level(logging.DEBUG)

    shown = _shown_once(client, workspace, django_capture_on_commit_callbacks)

    assert len(shown) == 4
    assert _leaks(caplog.text, _secrets(workspace, shown)) == []
