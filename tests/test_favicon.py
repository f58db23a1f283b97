"""The site's icon: a static file linked from every page, and /favicon.ico for the rest."""

from django.urls import reverse


def test_favicon_ico_is_served_without_login(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content).startswith(b"\x00\x00\x01\x00")


def test_pages_link_the_static_icon(client, settings, owner):
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    for url in [reverse("account_login"), reverse("admin:login")]:
        assert '<link rel="icon" href="/static/favicon.svg"' in client.get(url).content.decode()
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200
    assert icon["Content-Type"].startswith("image/svg+xml")
