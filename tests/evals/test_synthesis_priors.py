"""The criteria and reviewers' notes steer which feature families the synthesiser tries first.

Synthetic agent conversations where two facts split the labels alike: the wording decides
which one the rule names, the emitted code still judges as .predict does, and a prior that
names most candidates earns no lower bar. Inside cross-validation a fold believes only the
notes on its own training traces.
"""

import random

from evals.datasets import LabelledExample
from evals.synthesis import fit, learner, runtime
from evals.synthesis.features import priors_from_text
from sandbox import validate

WORDS = ["river", "lamp", "orange", "garden", "window", "paper", "bridge", "cloud", "copper"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _conversation(i: int, rng: random.Random, *, reads: int, cancelled: bool, output: str):
    order = f"W{1000 + i}"
    steps = [{"type": "span", "name": "user", "output": f"Please cancel order {order}."}]
    for _ in range(reads):
        steps.append(
            {"type": "tool", "name": "get_order_details", "input": {"id": order}, "output": "ok"}
        )
    steps.append({"type": "llm", "name": "agent", "output": {"content": _text(rng, 5)}})
    if cancelled:
        steps.append(
            {"type": "tool", "name": "cancel_order", "input": {"id": order}, "output": "ok"}
        )
    return {"id": f"c{i:03d}", "input": "Help the customer", "output": output, "steps": steps}


def _fitted(examples, **kwargs):
    fitted = fit(examples, **kwargs)
    assert validate(fitted.code) == []
    assert len(fitted.decision.rules) == 1, fitted.rules
    namespace: dict = {}
    exec(compile(fitted.code, "<eval>", "exec"), namespace)  # noqa: S102 - our own output
    for e in examples:
        assert tuple(namespace["eval_fn"](e.trace)) == fitted.predict(e.trace)
    return fitted, fitted.decision.rules[0]


def _bulleted_failures(n=24, seed=3):
    """Bad: no change was made, and (by accident of this set) the answer is a list."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        bad = i % 3 == 0
        output = "- " + _text(rng, 4) + "\n- " + _text(rng, 4) if bad else _text(rng, 9)
        trace = _conversation(i, rng, reads=1, cancelled=not bad, output=output)
        examples.append(LabelledExample(trace=trace, label="negative" if bad else "positive"))
    return examples


def test_criteria_wording_decides_which_of_two_equal_facts_the_rule_names():
    examples = _bulleted_failures()
    # No wording: the cheaper text shape wins the tie.
    _, plain = _fitted(examples)
    assert plain.feature.args == ("out_bullet_list",)
    # Task-completion wording points at the work the agent did: no change succeeded.
    fitted, rule = _fitted(examples, criteria="The agent completed the customer's task")
    assert rule.feature.args == ("changes", 1.0) and not rule.literals[0].holds, fitted.rules
    # Formatting wording keeps the list.
    _, listed = _fitted(examples, criteria="Answers are formatted as a bulleted list")
    assert listed.feature.args == ("out_bullet_list",)


def test_a_note_about_checking_points_at_the_count_of_lookups():
    # Bad: one lookup instead of two; every bad answer also happens to use bold text.
    rng = random.Random(5)
    examples = []
    for i in range(24):
        bad = i % 3 == 0
        output = f"Here is **{rng.choice(WORDS)}** for you." if bad else _text(rng, 6)
        trace = _conversation(i, rng, reads=1 if bad else 2, cancelled=True, output=output)
        note = "The agent answered without checking first" if bad else ""
        label = "negative" if bad else "positive"
        examples.append(LabelledExample(trace=trace, label=label, note=note))
    plain = [LabelledExample(trace=e.trace, label=e.label) for e in examples]
    assert _fitted(plain)[1].feature.args == ("out_bold",)
    fitted, rule = _fitted(examples)
    assert rule.feature.args == ("read_calls", 2.0) and not rule.literals[0].holds, fitted.rules
    verdict, reason = fitted.predict(examples[0].trace)
    assert verdict is False and reason == "Trace made fewer than 2 read-only tool calls"


def test_task_wording_names_the_step_families_and_safety_wording_the_refusals():
    # Task wording names the counts of work done, not whole families of facts.
    task = priors_from_text("task completed")
    assert set(task) == {"read_calls", "write_calls", "changes", "tool_errors"}
    assert "refusal" in priors_from_text("appropriate response")
    assert set(priors_from_text("never looked up anything")) >= {"read_calls"}
    # "assistant" is not a hint of "assist": most criteria name the assistant.
    assert priors_from_text("The assistant answers in French") == {}


def test_a_hint_inside_another_word_names_nothing():
    # "turn" inside "returned", "time" inside "times", and wrong "details" (wrong values)
    # said nothing about turns, latency or length, yet steered the fit towards them.
    returned = priors_from_text("Never returned the delivered items")
    assert "write_calls" in returned and not {"turns", "steps"} & set(returned)
    assert "latency" not in priors_from_text("Didn't use each keyword the number of times asked")
    assert "length" not in priors_from_text("Cancelled the order with the wrong details")
    # Stems still match where a word starts, and the plain wording still counts.
    assert {"turns", "refusal"} <= set(priors_from_text("Turned the user away, refused"))
    assert "length" in priors_from_text("Far too much detail")
    assert "latency" in priors_from_text("The response time was awful")


def _evidence(*, named_share: float) -> learner.Evidence:
    levels = learner.LEVELS
    disagree = {(a, b): 0.0 for i, a in enumerate(levels) for b in levels[i + 1 :]}
    for level in levels[1:]:
        disagree[("constant", level)] = 16.0  # standard error 4
    correct = {"constant": 15.0, "one": 19.0, "two": 19.0, "words": 19.0}  # one SE better
    named = dict.fromkeys(levels[1:], True)
    return learner.Evidence(25, 5, correct, disagree, 0, named, named_share=named_share)


def test_a_prior_that_names_most_candidates_earns_no_lower_bar():
    # Four traces better with a standard error of 4: enough at 0.84 standard errors (a
    # note naming a few facts), not at 1.1 (the bar for any rule).
    assert learner.choose(_evidence(named_share=0.05), learner.Bars())[0] == "one"
    assert learner.choose(_evidence(named_share=0.9), learner.Bars())[0] == "constant"


def _long_or_loud(noted_rows=(), note="too long"):
    """25 outputs, 10 bad; two facts split them alike, each missing four.

    Long (30 words instead of 10): bad 0-7 and good 10-11. An exclamation mark: bad 2-9
    and good 12-13. Bad 2-7 have both, so a note on them fits either fact.
    """
    rng = random.Random(11)
    examples = []
    for i in range(25):
        long, loud = i < 8 or i in (10, 11), 2 <= i < 10 or i in (12, 13)
        output = _text(rng, 30 if long else 10)[:-1] + ("!" if loud else ".")
        trace = {"id": f"t{i:03d}", "input": "Describe the view.", "output": output}
        label = "negative" if i < 10 else "positive"
        said = note if i in noted_rows else ""
        examples.append(LabelledExample(trace=trace, label=label, note=said))
    return examples


def _search(examples):
    views = [runtime.view(e.trace) for e in examples]
    labels = [e.label == "positive" for e in examples]
    return learner.prepare(views, labels, notes=[e.note for e in examples])


def _family(search, rows):
    (literal,) = search.fit("one", rows).literals
    return literal[0].feature.family


def test_a_fold_cannot_believe_a_family_only_its_held_out_notes_name():
    search = _search(_long_or_loud(noted_rows=(2, 3, 4)))
    # On every label the note tips the tie between the two facts towards length.
    assert _family(search, search.full) == "length"
    # A fold holding out traces 2-4 has the same tie on its own labels, but no note on
    # them: the length that only the held-out traces' notes name is credited nothing,
    # and the cheaper fact wins, as without notes.
    assert _family(search, search.full & ~0b11100) == "shape"
    assert _family(_search(_long_or_loud()), search.full & ~0b11100) == "shape"


def test_notes_on_a_folds_training_traces_still_steer_it():
    search = _search(_long_or_loud(noted_rows=(2, 3, 4)))
    # Traces 2 and 3 held out, the note on trace 4 still names length.
    assert _family(search, search.full & ~0b1100) == "length"
    # And the whole fit: the length rule with notes, the exclamation mark without.
    assert _fitted(_long_or_loud())[1].feature.args == ("out_exclamation",)
    fitted, rule = _fitted(_long_or_loud(noted_rows=range(8)))
    assert rule.feature.family == "length", fitted.rules


def test_the_criteria_name_a_family_for_every_fold():
    examples = _long_or_loud()
    views = [runtime.view(e.trace) for e in examples]
    labels = [e.label == "positive" for e in examples]
    search = learner.prepare(views, labels, criteria="Answers must not be too long")
    assert _family(search, search.full & ~0b11100) == "length"


QUESTIONS = [
    "How do I reset my password?",
    "Can I change my delivery date?",
    "Where is my invoice?",
    "How do I cancel my plan?",
    "Do you ship to Canada?",
    "How long does a refund take?",
]
ANSWERS = [
    "Use the reset link on the sign-in page.",
    "Yes, from the Orders page until it ships.",
    "Invoices are under Billing in your account.",
    "Open Settings, then Plan, then Cancel.",
    "Yes, we ship to Canada in five to seven days.",
    "Refunds reach your card within a week.",
]
FILLER = [
    "Thank you so much for reaching out to us today with this question.",
    "This is a very common question and we are always happy to help with it.",
    "Before I answer, let me give you a little background on how this works.",
    "Our team has worked hard over the years to make this process smooth.",
    "Many customers ask about this, so you are certainly not alone in wondering.",
    "There are several things worth keeping in mind as you go through this.",
    "I hope this explanation has been clear and useful for you.",
]
CUSTOMERS = [
    ("Dana Kim", "dana.kim@example.com"),
    ("Luis Ortega", "l.ortega@example.org"),
    ("Priya Nair", "priya.n@example.net"),
]


def _long_winded(answer: str, rng: random.Random) -> str:
    return " ".join(rng.sample(FILLER, 5)) + " " + answer


def _leaky(answer: str, rng: random.Random) -> str:
    name, email = rng.choice(CUSTOMERS)
    return f"{answer} I have the account of {name} open here, email {email}."


def _support_answers(fault, notes=()):
    """25 support answers, 10 bad, where two causes explain the labels equally well.

    Bad 0-7 have `fault`, bad 2-9 sign off with an exclamation mark; good 10-11 are the
    same answers as bad 0-1 and good 12-13 as bad 8-9 (reviewers disagree). Neither cause
    clears the bar from the labels alone. `notes`, in turn, on the bad answers with the fault.
    """
    rng = random.Random(7)
    examples = []
    for i in range(25):
        twin = {10: 0, 11: 1, 12: 8, 13: 9}.get(i)
        if twin is not None:
            trace = dict(examples[twin].trace, id=f"s{i:02d}")
        else:
            k = i % len(QUESTIONS)
            output = fault(ANSWERS[k], rng) if i < 8 else ANSWERS[k]
            output += " Have a great day" + ("!" if 2 <= i < 10 else ".")
            trace = {"id": f"s{i:02d}", "input": QUESTIONS[k], "output": output}
        note = notes[i % len(notes)] if notes and i < 8 else ""
        label = "negative" if i < 10 else "positive"
        examples.append(LabelledExample(trace=trace, label=label, note=note))
    return examples


def test_reviewers_words_for_long_winded_answers_find_the_length_rule():
    assert not fit(_support_answers(_long_winded)).reliable
    # "Wordy" and "rambling" are how reviewers say it; neither named length before.
    for notes in (("way too wordy", "rambling"), ("padded with filler", "wall of text")):
        fitted, rule = _fitted(_support_answers(_long_winded, notes))
        assert fitted.reliable and rule.feature.family == "length", (notes, fitted.rules)
        assert rule.literals[0].holds and rule.feature.args[0] == "output_chars"


def test_reviewers_words_for_a_leak_find_the_personal_data_rule():
    assert not fit(_support_answers(_leaky)).reliable
    notes = ("exposed the customer's contact details", "doxxed the customer")
    fitted, rule = _fitted(_support_answers(_leaky, notes))
    assert rule.feature.args == ("out_email",), fitted.rules
    verdict, reason = fitted.predict(_support_answers(_leaky)[0].trace)
    assert verdict is False and "('l.ortega@example.org')" in reason


def test_reviewers_words_name_the_family_a_careful_engineer_would_check():
    named = {
        "length": ["way too wordy", "rambling", "so much verbosity", "cut off mid-sentence"],
        "tone": ["preachy", "lecturing the user", "moralizing", "unnecessary caveats"],
        "refusal": ["preachy", "dodged the question", "unhelpful"],
        "compare": ["off-topic", "irrelevant", "didn't address the question", "hallucinated"],
        "ids": ["invented a booking code", "made-up order number", "printed the api key"],
        "pii": ["leaked the customer's email", "exposed her phone number", "doxxed the user"],
    }
    for family, notes in named.items():
        for note in notes:
            assert family in priors_from_text(note), (family, note)


def test_a_hint_inside_a_false_friend_names_nothing():
    # "Address" the question is no street address, nor "the question" one to end with.
    assert not {"pii", "shape"} & set(priors_from_text("Didn't address the question"))
    assert "pii" in priors_from_text("Revealed the customer's home address")
    assert "tone" not in priors_from_text("Shared confidential details")
    assert "length" not in priors_from_text("Took too long to respond")
    assert "ids" not in priors_from_text("Checked the inventory")
    assert "shape" not in priors_from_text("Used yellow; didn't listen")
