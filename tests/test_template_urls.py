"""``{% url %}`` remembers the URLs it reversed (iofold.lib.cached_url): the same links as
Django's own tag."""

import pytest
from django.http import HttpResponse
from django.template import Context, Template
from django.test import override_settings
from django.urls import NoReverseMatch, include, path


def _view(request, slug):  # pragma: no cover - only reversed, never called
    return HttpResponse()


# A URL configuration of this test's own, under which "workspaces:home" lives elsewhere.
urlpatterns = [
    path("elsewhere/", include(([path("<slug:slug>/", _view, name="home")], "workspaces")))
]


def render(source: str, **context) -> str:
    return Template(source).render(Context(context))


def test_each_workspace_links_to_its_own_pages():
    link = "{% url 'workspaces:home' slug %} {% url 'workspaces:home' slug=slug %}"
    assert render(link, slug="acme") == "/w/acme/ /w/acme/"
    assert render(link, slug="globex") == "/w/globex/ /w/globex/"
    assert render("{% url 'traces:detail' 'acme' 7 %}") == "/w/acme/traces/7/"


def test_unknown_names_fail_as_with_djangos_tag():
    with pytest.raises(NoReverseMatch):
        render("{% url 'workspaces:nope' 'acme' %}")
    assert render("{% url 'workspaces:nope' 'acme' as link %}[{{ link }}]") == "[]"


def test_a_changed_url_configuration_gives_its_own_urls():
    link = "{% url 'workspaces:home' 'acme' %}"
    assert render(link) == "/w/acme/"
    with override_settings(ROOT_URLCONF=__name__):
        assert render(link) == "/elsewhere/acme/"
    assert render(link) == "/w/acme/"
