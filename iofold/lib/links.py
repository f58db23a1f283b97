"""Absolute links for emails: every email iofold or allauth sends builds its links here."""

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings


def email_link(url: str, origin: str = "") -> str:
    """Return ``url`` (a path, or an absolute URL built from a request) as an email link.

    Under ``SITE_URL`` when it is set, whatever host the request came in on: behind a
    proxy that host may be an internal name the recipient cannot reach. Otherwise under
    ``origin`` (the scheme and host of the request that sends the email); a path stays a
    path when there is neither (a background task with no ``SITE_URL``).
    """
    parts = urlsplit(url)
    base = settings.SITE_URL or ("" if parts.netloc else origin)
    if not base:
        return url
    return base.rstrip("/") + urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
