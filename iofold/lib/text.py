"""Text helpers for the pages that build their rows in Python."""

import html
import unicodedata

from django.utils.text import Truncator


def clip(text: str, length: int) -> str:
    """Return ``text`` cut to ``length`` characters with an ellipsis, as ``truncatechars``.

    Most values fit: they are returned as they are, without ``Truncator``, which looks up
    its translated ellipsis on every call (a table of 50 rows paid about a millisecond).
    """
    return text if len(text) <= length else Truncator(text).chars(length)


def escape_text(text: str) -> str:
    """Return ``text`` escaped for HTML, as Django's ``escape`` does, for a plain ``str``.

    Django's ``escape`` is this plus a wrapper that checks for lazy strings and a
    ``SafeString`` result: on a row builder's hundreds of calls a page, the wrapper cost more
    than the escaping. The caller marks the HTML it builds safe once.
    """
    return html.escape(text)


def has_nul(text: str) -> bool:
    """Whether ``text`` holds a NUL character, which PostgreSQL can neither store in a text
    column nor take in a query: a service refuses such a text, a filter drops it."""
    return "\x00" in text


def search_form(text: str) -> str:
    """Return ``text`` in the one form free-text search compares: NFKC, case folded.

    The stored search text and the query both pass here, so "café" typed as one code point
    finds "cafe" + a combining accent (as macOS and some SDKs send it) and the reverse.
    NFKC rather than NFC: it also folds compatibility forms a user cannot tell apart on
    screen (full-width "ｃａｆé", the "ﬁ" ligature, "①") into the letters they type; the
    search text is only ever searched, never shown, so what it loses costs nothing.
    Case folded (then NFKC again, as folding may leave a form NFKC would change) because
    the search's ``icontains`` is SQLite's LIKE there, which folds ASCII letters only:
    "ÉCOLE" did not find "école", nor "STRASSE" "Straße". ASCII is in every normal form
    already and its case is LIKE's to fold: skipped, as most traces are ASCII.
    """
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
