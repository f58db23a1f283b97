"""clip() cuts text as the ``truncatechars`` filter does."""

from django.template.defaultfilters import truncatechars

from iofold.lib.text import clip


def test_text_that_fits_is_shown_whole():
    assert clip("Refund request", 32) == "Refund request"
    assert clip("x" * 32, 32) == "x" * 32


def test_longer_text_is_cut_with_an_ellipsis_like_truncatechars():
    text = "The customer asked where their refund went, twice"
    assert clip(text, 32) == truncatechars(text, 32)
    assert len(clip(text, 32)) == 32
    assert clip(text, 32).endswith("…")
