import pytest
from django.test import RequestFactory

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
