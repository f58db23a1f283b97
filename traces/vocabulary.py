"""The one vocabulary of every page, export and API description.

People label traces **good**, **bad** or **neutral**; an eval's verdict on a trace is
**pass** or **fail** (or an **error** when it could not decide). Stored values stay what
they are (``positive``/``negative``/``neutral``, ``passed`` true/false): these are the
words shown for them. Dates and times read ``2026-11-20 14:05`` (UTC) everywhere.
"""

from typing import Any

LABEL_WORDS = {"positive": "good", "negative": "bad", "neutral": "neutral"}
LABEL_SYMBOLS = {"positive": "✓", "negative": "✗", "neutral": "–"}
VERDICT_WORDS = {True: "pass", False: "fail", None: "error"}
# What a page may never say for a label or a verdict (checked by tests/test_vocabulary.py).
OTHER_VERDICT_WORDS = (
    "positive",
    "negative",
    "thumbs up",
    "thumbs down",
    "thumbs-up",
    "thumbs-down",
    "passed",
    "incorrect",
    # A verdict called by a label's word (a confusion table's column).
    "eval: good",
    "eval: bad",
)
# What an eval set reviews and judges (``EvalSet.unit``), singular and plural.
UNIT_NOUNS = {"trace": ("trace", "traces"), "conversation": ("conversation", "conversations")}
WHEN_FORMAT = "Y-m-d H:i"  # Django date format
WHEN_STRFTIME = "%Y-%m-%d %H:%M"


# What a label in a file may say (the word shown, the stored value, or a boolean).
RATINGS_BY_LABEL = {
    "good": "positive",
    "positive": "positive",
    "bad": "negative",
    "negative": "negative",
    "neutral": "neutral",
    True: "positive",
    False: "negative",
}


def rating_for(value: Any) -> str | None:
    """The rating a label value names, or None when it names none."""
    if isinstance(value, bool):
        return RATINGS_BY_LABEL[value]
    if isinstance(value, str):
        return RATINGS_BY_LABEL.get(value.strip().lower())
    return None


def label_word(rating: str | None) -> str:
    return LABEL_WORDS.get(rating or "", "no label")


def verdict_word(passed: bool | None) -> str:
    return VERDICT_WORDS.get(passed, "error")


def unit_noun(unit: str | None, count: int | None = 1) -> str:
    """``trace``/``conversation`` for one, ``traces``/``conversations`` for any other count."""
    singular, plural = UNIT_NOUNS.get(unit or "", UNIT_NOUNS["trace"])
    return singular if count == 1 else plural
