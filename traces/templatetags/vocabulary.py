"""Template filters for the one vocabulary (``traces.vocabulary``): labels, verdicts, dates,
and the noun for what an eval set reviews."""

from datetime import timedelta

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.timesince import timesince
from django.utils.timezone import localtime

from traces import vocabulary

register = template.Library()


@register.filter
def label_word(rating) -> str:
    """``positive`` → good, ``negative`` → bad, ``neutral`` → neutral."""
    return vocabulary.label_word(rating)


@register.filter
def verdict_word(passed) -> str:
    """True → pass, False → fail, None → error."""
    return vocabulary.verdict_word(passed)


@register.filter
def when(value) -> str:
    """The one date-and-time format: ``2026-11-20 14:05``."""
    if not value:
        return ""
    if hasattr(value, "tzinfo") and value.tzinfo is not None:
        value = localtime(value)
    return date_format(value, vocabulary.WHEN_FORMAT)


@register.filter
def ago(value) -> str:
    """``3 minutes ago``; ``just now`` within a minute, where Django's ``timesince`` says
    ``0 minutes``."""
    if not value:
        return ""
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def unit_noun(value, count="one") -> str:
    """What an eval set (or its ``unit``) reviews: ``{{ eval_set|unit_noun }}`` → trace or
    conversation; ``{{ eval_set|unit_noun:"plural" }}`` or ``{{ eval_set|unit_noun:n }}``
    → the plural unless ``n`` is 1. Every page naming a set's items goes through here."""
    unit = getattr(value, "unit", value)
    if count == "one":
        count = 1
    elif count == "plural":
        count = None
    return vocabulary.unit_noun(unit, count)


@register.filter
def labelled_count(progress, unit="trace") -> str:
    """``3 traces labelled good or bad, of the 10 targeted`` below the target, ``43 labelled
    good or bad (target 12 reached)`` at it: the count is toward the target, not out of the
    set's traces. Only good and bad majorities count: the eval learns from nothing else
    (``not_counted`` says how many neutral or tied ones were left out).

    A conversation eval set (``unit``: the set or its unit) counts conversations.
    """
    done, target = progress.decided, progress.target
    if done >= target:
        return f"{done} labelled good or bad (target {target} reached)"
    return f"{done} {unit_noun(unit, done)} labelled good or bad, of the {target} targeted"


@register.filter
def not_counted(progress, unit="trace") -> str:
    """``2 more traces have a neutral or tied label: not counted, the eval learns only from
    good and bad``; empty when there are none."""
    n = progress.not_counted
    if not n:
        return ""
    has = "has" if n == 1 else "have"
    return (
        f"{n} more {unit_noun(unit, n)} {has} a neutral or tied label: not counted, "
        "the eval learns only from good and bad."
    )
