from types import SimpleNamespace

from traces.templatetags.vocabulary import label_word, labelled_count, verdict_word


def test_labelled_count_says_when_the_target_is_reached():
    assert labelled_count(SimpleNamespace(decided=3, target=12)) == (
        "3 traces labelled good or bad, of the 12 targeted"
    )
    assert labelled_count(SimpleNamespace(decided=43, target=12)) == (
        "43 labelled good or bad (target 12 reached)"
    )


def test_one_word_per_label_and_verdict():
    assert [label_word(r) for r in ("positive", "negative", "neutral")] == [
        "good",
        "bad",
        "neutral",
    ]
    assert [verdict_word(v) for v in (True, False, None)] == ["pass", "fail", "error"]


def test_unit_noun_names_what_a_set_reviews():
    from traces.templatetags.vocabulary import unit_noun

    chats = SimpleNamespace(unit="conversation")
    assert [unit_noun(chats), unit_noun(chats, "plural"), unit_noun(chats, 1)] == [
        "conversation",
        "conversations",
        "conversation",
    ]
    assert [unit_noun("trace", 0), unit_noun(None, 2), unit_noun("trace")] == [
        "traces",
        "traces",
        "trace",
    ]
    assert labelled_count(SimpleNamespace(decided=3, target=12), chats) == (
        "3 conversations labelled good or bad, of the 12 targeted"
    )
