from urllib.parse import urlencode

import pytest
from django.test import RequestFactory
from django.urls import reverse

from iofold.lib.redirects import safe_next

FALLBACK = "/fallback/"

OFF_SITE = [
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "https://evil.example/w/x/",
    "http://testserver/w/x/",  # absolute, even to this host: only paths are accepted
    "javascript:alert(1)",
    "evil.example",
    " //evil.example",
    "",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_off_site_or_absolute_targets_fall_back(target):
    request = RequestFactory().post("/", {"next": target})
    assert safe_next(request, FALLBACK) == FALLBACK


@pytest.mark.parametrize("target", ["/w/acme/traces/?tag=a&cursor=x", "/w/other/evals/3/"])
def test_same_site_paths_are_kept(target):
    assert safe_next(RequestFactory().post("/", {"next": target}), FALLBACK) == target
    assert safe_next(RequestFactory().get("/", {"next": target}), FALLBACK) == target


def test_missing_next_falls_back():
    assert safe_next(RequestFactory().post("/"), FALLBACK) == FALLBACK


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example/", "https://evil.example/"])
def test_login_ignores_an_off_site_next(client, target):
    """allauth checks its own `next` (url_has_allowed_host_and_scheme); keep it that way."""
    from allauth.account.models import EmailAddress

    from tests.factories import UserFactory

    user = UserFactory(email="ada@example.com")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    response = client.post(
        reverse("account_login") + "?" + urlencode({"next": target}),
        {"login": user.email, "password": "correct horse battery staple", "next": target},
    )
    assert response.status_code == 302
    assert response.url.startswith("/") and not response.url.startswith(("//", "/\\"))
