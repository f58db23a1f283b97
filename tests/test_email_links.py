"""Every email's links are under SITE_URL when it is set, not under the host the request came
in on (behind a proxy, an internal name the recipient cannot reach): invitations, mentions,
automatic refinements and allauth's own emails (confirmation, password reset, the ones that
answer for an address that exists or does not)."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from evals.generation import automatic
from evals.generation.worker import run_generation
from tests.evals.builders import labelled_set, make_eval
from tests.evals.test_automatic_refinement import _drifting, _opt_in
from tests.factories import EmailAddressFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

SITE_URL = "https://iofold.example.com"
INTERNAL_HOST = "iofold-web.internal:8000"
PASSWORD = "a long and unusual passphrase 42"


@pytest.fixture(autouse=True)
def _site_url_behind_a_proxy(settings):
    settings.SITE_URL = SITE_URL
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "iofold-web.internal"]


def _links_of_the_only_email():
    [email] = mail.outbox
    links = re.findall(r"https?://\S+", email.body)
    assert links, email.body
    assert [link for link in links if not link.startswith(SITE_URL + "/")] == [], email.body
    assert "internal" not in email.body
    return links


def _post(client, name, data, args=()):
    return client.post(reverse(name, args=args), data, HTTP_HOST=INTERNAL_HOST)


def test_sign_up_confirmation(client):
    signup = {"email": "ada@example.com", "password1": PASSWORD, "password2": PASSWORD}
    _post(client, "account_signup", signup)
    assert any("/confirm-email/" in link for link in _links_of_the_only_email())


def test_sign_up_with_an_address_that_has_an_account(client, owner):
    EmailAddressFactory(user=owner, email=owner.email)
    signup = {"email": owner.email, "password1": PASSWORD, "password2": PASSWORD}
    _post(client, "account_signup", signup)
    assert any("/password/reset/" in link for link in _links_of_the_only_email())


def test_password_reset(client, owner):
    EmailAddressFactory(user=owner, email=owner.email)
    _post(client, "account_reset_password", {"email": owner.email})
    assert any("/password/reset/key/" in link for link in _links_of_the_only_email())


def test_password_reset_for_an_unknown_address(client):
    _post(client, "account_reset_password", {"email": "nobody@example.com"})
    assert any("/signup/" in link for link in _links_of_the_only_email())


def test_invitation(client, workspace, owner, django_capture_on_commit_callbacks):
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        invite = {"email": "new@example.com", "role": "member"}
        _post(client, "workspaces:invite", invite, args=[workspace.slug])
    assert any("/invitations/" in link for link in _links_of_the_only_email())


def test_mention(client, workspace, owner, django_capture_on_commit_callbacks):
    eval_set, _ = labelled_set(workspace)
    version = make_eval(eval_set, version=1)
    MembershipFactory(workspace=workspace, user=UserFactory(email="alice@acme.test"))
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, "evals:comment", {"body": "@alice look"}, args=[workspace.slug, version.pk])
    assert _links_of_the_only_email() == [
        f"{SITE_URL}{reverse('evals:detail', args=[workspace.slug, version.pk])}"
    ]


def test_automatic_refinement(workspace, owner):
    # Sent by a worker, with no request: without SITE_URL its link was a bare path.
    _opt_in(workspace)
    _drifting(workspace)
    [auto] = automatic.sweep(enqueue=False)
    run_generation(generation_id=auto.generation_id)
    assert any("/shadow" in link for link in _links_of_the_only_email())
