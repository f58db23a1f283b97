"""A new secret shown once, on the page a form's POST redirects to (Post/Redirect/Get).

Rendered in the POST's own response, a refresh re-sends the form and makes another secret
(a second token, or a webhook secret that silently replaces the one just copied). Instead
the secret waits in the session for the one GET that shows it, and is gone after. Keep the
showing page ``never_cache``, and never log what is kept here.
"""

import time

from django.http import HttpRequest

_PREFIX = "shown_once:"
# The redirect follows at once; a secret never picked up (the tab closed) is not shown
# on some later visit, and does not stay in the session row for long.
MAX_AGE_SECONDS = 300


def keep_to_show(request: HttpRequest, key: str, secret: str) -> None:
    """Hold ``secret`` for the next page that takes ``key``."""
    request.session[_PREFIX + key] = {"secret": secret, "at": time.time()}


def take_to_show(request: HttpRequest, key: str) -> str | None:
    """Return the secret held under ``key`` and forget it; None when there is none (or it
    waited too long)."""
    kept = request.session.pop(_PREFIX + key, None)
    if not kept or time.time() - kept["at"] > MAX_AGE_SECONDS:
        return None
    return kept["secret"]
