"""Reviewers' notes (and the criteria) as evidence for phrases.

A note that quotes the offending words ("used 'delve' again") or names them ("mentions
the competitor Acme") adds that phrase as a candidate believed like a named family: it
needs less held-out proof than a word the learner found by itself, but it must still beat
the majority verdict under the same cross-validation.
"""

import random

from evals.datasets import LabelledExample
from evals.synthesis import fit, learner, runtime
from evals.synthesis.features import build_noted, note_phrases
from tests.evals.synthesis_checks import assert_code_matches

WORDS = [
    "river",
    "lamp",
    "orange",
    "garden",
    "window",
    "paper",
    "bridge",
    "cloud",
    "copper",
    "stone",
    "field",
    "music",
    "candle",
    "harbor",
    "letter",
    "forest",
]


def _output(rng: random.Random, phrase: str = "") -> str:
    """Return random words, the phrase among them; its words replace others (no longer)."""
    said = phrase.split()
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 14) - len(said))]
    at = rng.randint(1, len(words) - 1)
    words[at:at] = said
    return " ".join(words).capitalize() + "."


def _phrase_set(seed, *, bad_with=7, good_with=2, note="used '{}' again", phrase="delve"):
    """25 traces, 10 bad: `bad_with` bad and `good_with` good outputs use the phrase.

    Each bad trace that uses it carries a note quoting it, the other bad ones a vague one.
    """
    rng = random.Random(seed)
    examples = []
    for i in range(25):
        bad = i < 10
        uses = i < bad_with if bad else i - 10 < good_with
        trace = {
            "id": f"t{i:03d}",
            "input": "Write a short note.",
            "output": _output(rng, phrase if uses else ""),
        }
        said = (note.format(phrase) if uses else "boring") if bad else ""
        label = "negative" if bad else "positive"
        examples.append(LabelledExample(trace=trace, label=label, note=said))
    return examples


def _without_notes(examples):
    return [LabelledExample(trace=e.trace, label=e.label) for e in examples]


def test_a_phrase_the_notes_quote_is_recovered_where_the_labels_alone_find_nothing():
    # Seven of ten bad outputs and two of fifteen good ones say "delve": from 25 labels
    # the word does not clear the bar for words the learner finds by itself.
    for seed in (0, 1, 2, 3):
        examples = _phrase_set(seed)
        assert not fit(_without_notes(examples)).reliable
        noted = fit(examples)
        (rule,) = noted.decision.rules
        assert rule.feature.args == ("out", "delve")
        assert noted.rules[0].startswith(
            "1. The trace is bad when output contains 'delve', which reviewers' notes quote ("
        )
        # A verdict's reason is the match, or its absence, as for any phrase.
        assert noted.predict({"output": "Let us delve in."}) == (
            False,
            "Output contains 'delve'",
        )
        assert noted.predict({"output": "Plain words."}) == (
            True,
            "Judged good: output does not contain 'delve'",
        )
        assert_code_matches(noted, [e.trace for e in examples])


def test_a_quoted_phrase_that_does_not_separate_the_labels_yields_no_eval():
    # Half the bad and half the good outputs say it; every bad one that does is noted.
    for seed in (0, 1, 2):
        examples = _phrase_set(seed, bad_with=5, good_with=8, phrase="as an ai language model")
        fitted = fit(examples)
        assert not fitted.reliable, fitted.rules
        assert "language model" not in fitted.code


def test_notes_that_name_a_phrase_without_quotes_point_to_it():
    examples = _phrase_set(4, note="mentions the competitor {} again", phrase="Acme")
    (rule,) = fit(examples).decision.rules
    assert rule.feature.args == ("out", "acme")
    assert rule.describe().startswith(
        "The trace is bad when output contains 'acme', which reviewers' notes name ("
    )


def test_the_criteria_quote_a_phrase_for_every_fold():
    examples = _without_notes(_phrase_set(1))
    assert not fit(examples).reliable
    fitted = fit(examples, criteria="The reply must never say 'delve'.")
    (rule,) = fitted.decision.rules
    assert rule.feature.args == ("out", "delve")
    assert "which the criteria quote" in fitted.rules[0]
    assert_code_matches(fitted, [e.trace for e in examples])


def test_a_note_on_a_good_trace_can_explain_what_made_it_good():
    # Good outputs close with "hope this helps" (most of them), bad ones never; reviewers
    # said so on the good ones.
    rng = random.Random(7)
    examples = []
    for i in range(25):
        good = i >= 10
        closes = good and i < 22
        trace = {
            "id": f"g{i:03d}",
            "input": "q",
            "output": _output(rng) + (" Hope this helps!" if closes else ""),
        }
        note = 'Friendly, ends with "Hope this helps!"' if closes else ""
        label = "positive" if good else "negative"
        examples.append(LabelledExample(trace=trace, label=label, note=note))
    (rule,) = fit(examples).decision.rules
    assert rule.feature.args == ("out", "hope this helps") and not rule.literals[0].holds
    assert "does not contain 'hope this helps', which reviewers' notes quote" in rule.describe()


def test_a_fold_cannot_use_a_phrase_only_its_held_out_notes_point_to():
    examples = _phrase_set(0)
    views = [runtime.view(e.trace) for e in examples]
    labels = [e.label == "positive" for e in examples]
    notes = [e.note for e in examples]
    notes = [e.note if i < 3 else "" for i, e in enumerate(examples)]
    search = learner.prepare(views, labels, notes=notes)
    (noted,) = [c for c in search.structural if c.feature.family == "noted"]
    assert noted.known == 0b111  # the notes on traces 0-2 quote it
    # Without traces 0-2 the phrase still separates the rest (bad 3-6 use it), but no
    # training note points to it there: a fold holding them out cannot know of it.
    assert search.fit("one", search.full).literals[0][0] is noted
    assert search.fit("one", search.full & ~0b110).literals[0][0] is noted
    assert search.fit("one", search.full & ~0b111).literals[0][0] is not noted


def test_phrases_read_from_notes():
    view = runtime.view(
        {
            "input": "Write to the client about the Acme merger.",
            "output": "As an AI language model, I can't say. Best regards, Sam",
        }
    )
    assert note_phrases("says 'As an AI language model' again", view) == [
        ("out", "as an ai language model", True)
    ]
    # Apostrophes inside a quoted span do not end it; curly quotes count.
    assert note_phrases("wrote \u2018I can\u2019t say\u2019", view) == [
        ("out", "i can't say", True)
    ]
    assert note_phrases("signs off with Best regards", view) == [("out", "best regards", False)]
    # A named word found only in the input points to the input.
    assert note_phrases("ignored the merger", view) == [("in", "merger", False)]
    # Words about the output, and words the trace does not contain, point nowhere.
    assert note_phrases("the answer is too long and rude", view) == []


def test_phrases_are_deterministic_and_ranked_by_how_many_notes_point_to_them():
    examples = _phrase_set(2)
    views = [runtime.view(e.trace) for e in examples]
    notes = [e.note for e in examples]
    first = build_noted(views, notes)
    again = build_noted(list(reversed(views)), list(reversed(notes)))
    assert [c.feature for c in first] == [c.feature for c in again]
    shuffled = list(examples)
    random.Random(3).shuffle(shuffled)
    assert fit(shuffled).code == fit(examples).code
