"""A new secret shown once, on the page a form's POST redirects to (Post/Redirect/Get).

Rendered in the POST's own response, a refresh re-sends the form and makes another secret
(a second token, or a webhook secret that silently replaces the one just copied). Instead
the secret waits in the session for the one GET that shows it, and is gone after. Keep the
showing page ``never_cache``, and never log what is kept here.
"""

from django.http import HttpRequest

from iofold.lib import crypto

_PREFIX = "shown_once:"
# The redirect follows at once; a secret never picked up (the tab closed) is not shown
# on some later visit.
MAX_AGE_SECONDS = 300


def keep_to_show(request: HttpRequest, key: str, secret: str) -> None:
    """Hold ``secret`` for the next page that takes ``key``.

    Encrypted like every stored secret: sessions are rows in the database (and the cache),
    and one never picked up stays there until the session ends.
    """
    request.session[_PREFIX + key] = crypto.encrypt(secret)


def take_to_show(request: HttpRequest, key: str) -> str | None:
    """Return the secret held under ``key`` and forget it; None when there is none (or it
    waited too long)."""
    kept = request.session.pop(_PREFIX + key, None)
    if not kept:
        return None
    try:
        return crypto.decrypt(kept, ttl=MAX_AGE_SECONDS)
    except crypto.DecryptionError:
        return None
