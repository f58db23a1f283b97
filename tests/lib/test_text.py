"""clip() cuts text as the ``truncatechars`` filter does; escape_text() escapes as ``escape``."""

from django.template.defaultfilters import truncatechars
from django.utils.html import escape

from iofold.lib.text import clip, escape_text


def test_text_that_fits_is_shown_whole():
    assert clip("Refund request", 32) == "Refund request"
    assert clip("x" * 32, 32) == "x" * 32


def test_longer_text_is_cut_with_an_ellipsis_like_truncatechars():
    text = "The customer asked where their refund went, twice"
    assert clip(text, 32) == truncatechars(text, 32)
    assert len(clip(text, 32)) == 32
    assert clip(text, 32).endswith("…")


def test_escape_text_escapes_as_djangos_escape():
    for text in ["plain", "<b>\"quoted\" & 'single'</b>", "a&amp;b", "", "ümlaut → ✓"]:
        assert escape_text(text) == escape(text)
