"""Email accounts: the user model, sign-up, mandatory verification, password reset, login wall."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.workspaces.helpers import invitation_path
from workspaces.models import Membership, Workspace

User = get_user_model()
PASSWORD = "a long and unusual passphrase 42"


def test_create_user_normalises_email_and_hashes_password(db):
    user = User.objects.create_user("Ada@Example.COM", "s3cret-pass")
    assert user.email == "ada@example.com"
    assert user.check_password("s3cret-pass")
    assert user.password != "s3cret-pass"
    assert not user.is_staff
    assert not user.is_superuser


def test_create_user_requires_an_email(db):
    with pytest.raises(ValueError):
        User.objects.create_user("", "pw")


def test_create_superuser_is_staff_and_superuser(db):
    user = User.objects.create_superuser("root@example.com", "pw")
    assert user.is_staff
    assert user.is_superuser


def test_short_name_falls_back_to_the_email_local_part(db):
    assert User.objects.create_user("grace@example.com").get_short_name() == "grace"
    assert User(email="x@y.test", name="Grace").get_short_name() == "Grace"


def _sign_up(client, email="ada@example.com"):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": PASSWORD, "password2": PASSWORD},
    )


def test_sign_up_creates_a_workspace_owned_by_the_new_user(client, db):
    _sign_up(client)
    user = User.objects.get(email="ada@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert membership.workspace.name == "ada's workspace"
    assert Workspace.objects.count() == 1


def test_sign_up_requires_email_verification_before_login(client, db):
    response = _sign_up(client)
    assert response.status_code == 302
    assert response.url == reverse("account_email_verification_sent")
    assert "_auth_user_id" not in client.session
    assert len(mail.outbox) == 1
    assert "ada@example.com" in mail.outbox[0].to

    response = client.post(
        reverse("account_login"), {"login": "ada@example.com", "password": PASSWORD}
    )
    assert response.url == reverse("account_email_verification_sent")
    assert "_auth_user_id" not in client.session
    assert client.get("/w/").status_code == 302


def test_confirming_the_email_logs_in(client, db):
    _sign_up(client)
    link = next(word for word in mail.outbox[0].body.split() if "/confirm-email/" in word)
    path = link.split("testserver", 1)[1]
    assert client.get(path).status_code == 200
    response = client.post(path)
    assert response.status_code == 302
    assert client.get("/w/").status_code == 200


def _link_path(message, marker):
    link = next(word for word in message.body.split() if marker in word)
    return link.split("testserver", 1)[1]


def test_invitee_who_signs_up_from_the_link_lands_in_the_invited_workspace(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    path = invitation_path(workspace, owner, django_capture_on_commit_callbacks)
    signup = client.get(path).content.decode()
    assert f"{reverse('account_signup')}?next={path}" in signup

    client.post(
        f"{reverse('account_signup')}?next={path}",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    confirm = _link_path(mail.outbox[-1], "/confirm-email/")
    response = client.post(confirm, follow=True)

    assert response.redirect_chain[-1][0] == reverse("workspaces:home", kwargs={"slug": "acme"})
    assert "Welcome to Acme." in response.content.decode()
    user = User.objects.get(email="new@example.com")
    # No empty workspace of their own beside it, and nothing left pending.
    assert [m.workspace.slug for m in Membership.objects.filter(user=user)] == ["acme"]
    assert not workspace.invitation_set.pending().exists()


def test_invitee_who_confirms_in_another_browser_finds_the_workspace_at_log_in(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    from django.test import Client

    invitation_path(workspace, owner, django_capture_on_commit_callbacks)
    _sign_up(client, "new@example.com")
    Client().post(_link_path(mail.outbox[-1], "/confirm-email/"))

    response = client.post(
        reverse("account_login"), {"login": "new@example.com", "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("workspaces:home", kwargs={"slug": "acme"})


def test_password_reset_emails_a_link(client, db):
    User.objects.create_user("ada@example.com", PASSWORD)
    response = client.post(reverse("account_reset_password"), {"email": "ada@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/accounts/password/reset/key/" in mail.outbox[0].body


def test_password_reset_for_an_unknown_address_reveals_nothing(client, db):
    response = client.post(reverse("account_reset_password"), {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response.url == reverse("account_reset_password_done")


@pytest.mark.parametrize("path", ["/", "/w/", "/w/acme/", "/w/acme/members/", "/w/acme/tokens/"])
def test_pages_need_a_login(client, workspace, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


@pytest.mark.parametrize(
    "path",
    ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/api/schema/"],
)
def test_auth_pages_and_schema_are_public(client, db, path):
    assert client.get(path).status_code == 200


def test_static_files_are_public(client, settings):
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    response = client.get("/static/css/iofold.css")
    assert response.status_code == 200


def _patterns(resolver, prefix=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            namespace = f"{pattern.namespace}:" if pattern.namespace else prefix
            yield from _patterns(pattern, namespace)
        elif isinstance(pattern, URLPattern):
            yield f"{prefix}{pattern.name}", pattern.callback


# Views that may be reached without a session: allauth's own pages, the health probe,
# the API (which authenticates itself and answers 401/403), the admin (own login),
# invitation links (a sign-up entry point) and /metrics (a token or allowed networks).
PUBLIC_PREFIXES = ("account_", "api-", "admin:", "healthz", "accept_invitation", "metrics")


def test_only_auth_health_api_and_invitation_views_opt_out_of_the_login_wall():
    public = {
        name
        for name, view in _patterns(get_resolver())
        if getattr(view, "login_required", True) is False
    }
    assert public, "expected at least the auth pages to be public"
    offenders = sorted(n for n in public if not n.startswith(PUBLIC_PREFIXES))
    assert offenders == []
