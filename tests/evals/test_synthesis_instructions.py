"""The synthesiser reads instructions the input states and checks the output against them.

Known rules recovered from synthetic instruction-following traces, the parser on general
phrasings, and the emitted code (which inlines constraints.py) judging as .predict does.
"""

import ast
import inspect
import random

import pytest

from evals.datasets import LabelledExample
from evals.synthesis import constraints, fit, runtime
from evals.synthesis.features import priors_from_text
from tests.evals.synthesis_checks import assert_code_matches

TOPICS = [
    "Describe the harbor at dawn.",
    "Explain how a violin is tuned.",
    "Tell me about copper mining.",
    "Write about a walk in the meadow.",
    "Summarise the history of the canyon.",
    "Describe a thunderstorm over the island.",
]
WORDS = [
    "river",
    "mountain",
    "lamp",
    "orange",
    "quiet",
    "garden",
    "window",
    "paper",
    "bridge",
    "cloud",
    "forest",
    "copper",
] + [
    "violin",
    "marble",
    "tiger",
    "harbor",
    "candle",
    "pepper",
    "silver",
    "meadow",
    "rocket",
    "puzzle",
    "canyon",
    "velvet",
    "anchor",
]


def _text(rng: random.Random, n: int, *, commas: bool = False, lower: bool = False) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    if commas and n > 3:
        words[1] += ","
    text = " ".join(words)
    return (text if lower else text.capitalize()) + "."


def _instruction(rng: random.Random, kind: str, keep: bool) -> tuple[str, str]:
    """Return (instruction, output) of one kind, the output keeping it or not."""
    n = rng.randint(8, 30)
    if kind == "max_words":
        limit = rng.randint(10, 40)
        size = rng.randint(max(3, limit - 8), limit) if keep else rng.randint(limit + 1, limit + 12)
        return f"Answer in no more than {limit} words.", _text(rng, size)
    if kind == "lowercase":
        return "Your entire response must be in lowercase letters.", _text(rng, n, lower=keep)
    if kind == "commas":
        return "Do not use any commas in your answer.", _text(rng, n, commas=not keep)
    if kind == "keyword":
        word = rng.choice(["lantern", "saffron", "glacier"])
        text = _text(rng, n)
        return f"Include the keyword '{word}'.", (text + f" The {word} glows." if keep else text)
    phrase = "Is there anything else?"
    text = _text(rng, n)
    return f'End your response with "{phrase}"', (text + " " + phrase if keep else text)


KINDS = ("max_words", "lowercase", "commas", "keyword", "ends_with")


def _instruction_set(seed: int, kinds=KINDS, n: int = 40) -> list[LabelledExample]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        keep = rng.random() < 0.5
        instruction, output = _instruction(rng, kinds[i % len(kinds)], keep)
        trace = {
            "id": f"if{i:03d}",
            "input": {"prompt": rng.choice(TOPICS) + " " + instruction},
            "output": {"response": output},
            "steps": [],
        }
        examples.append(LabelledExample(trace=trace, label="positive" if keep else "negative"))
    return examples


def test_recovers_a_broken_instruction_across_kinds_of_instruction():
    # Five kinds of instruction, each kept by half of the outputs: no single length,
    # shape or word separates the labels, the aggregate "breaks an instruction" does.
    examples = _instruction_set(21)
    fitted = fit(examples)
    assert len(fitted.decision.rules) == 1, fitted.rules
    (rule,) = fitted.decision.rules
    assert [lit.feature.args for lit in rule.literals] == [("breaks_instruction",)]
    assert fitted.rules[0].startswith(
        "1. The trace is bad when output breaks an instruction the input states"
    )
    assert_code_matches(fitted, [e.trace for e in examples])
    # An instruction kind the labels never showed is checked all the same.
    unseen = {"input": "Reply in ALL CAPITAL LETTERS.", "output": "Sure, here it is."}
    assert fitted.predict(unseen) == (
        False,
        "Output breaks an instruction the input states ('uppercase')",
    )
    kept = {"input": "Write at most 5 words.", "output": "Short and sweet."}
    assert fitted.predict(kept)[0] is True


def test_recovers_a_broken_length_limit_whatever_the_limit():
    # Limits differ per prompt, so no fixed output length separates the labels.
    examples = _instruction_set(22, kinds=("max_words",))
    fitted = fit(examples)
    (rule,) = fitted.decision.rules
    assert [lit.feature.args for lit in rule.literals] == [("breaks_length_limit",)]
    assert fitted.rules[0].startswith(
        "1. The trace is bad when output breaks a length limit the input states"
    )
    verdict, reason = fitted.predict(
        {"input": "Use fewer than 4 words.", "output": "This answer has five words."}
    )
    assert verdict is False
    assert reason == "Output breaks a length limit the input states ('fewer than 4 words: 5')"
    assert_code_matches(fitted, [e.trace for e in examples])


def test_recovers_an_answer_in_another_script_than_the_question():
    rng = random.Random(23)
    examples = []
    for i in range(24):
        bad = i % 3 == 0
        answer = "Это ответ на ваш вопрос о реке." if bad else _text(rng, rng.randint(5, 9))
        trace = {"id": f"s{i:03d}", "input": rng.choice(TOPICS), "output": answer}
        examples.append(LabelledExample(trace=trace, label="negative" if bad else "positive"))
    fitted = fit(examples)
    (rule,) = fitted.decision.rules
    assert [lit.feature.args for lit in rule.literals] == [("other_script",)]
    assert fitted.predict({"input": "What is a river?", "output": "Река."}) == (
        False,
        "Output is written in another script than the input ('Cyrillic, not Latin')",
    )
    assert_code_matches(fitted, [e.trace for e in examples])


def test_same_instruction_examples_give_the_same_code():
    examples = _instruction_set(24)
    assert fit(examples).code == fit(list(reversed(examples))).code


@pytest.mark.parametrize(
    ("prompt", "output", "broken"),
    [
        ("Answer in at most 3 words.", "One two three four.", "at most 3 words: 4"),
        ("Keep it under 20 characters.", "A reply longer than twenty.", "under 20 characters: 27"),
        (
            "Write between 2 and 3 sentences.",
            "One. Two. Three. Four.",
            "between 2 and 3 sentences: 4",
        ),
        (
            "Give exactly two bullet points.",
            "* one\n* two\n* three",
            "exactly two bullet points: 3",
        ),
        ("Write at least 3 paragraphs.", "One.\n\nTwo.", "at least 3 paragraphs: 2"),
        ("Respond in all lowercase.", "Hello there.", "lowercase"),
        ("Please answer without using any commas.", "Yes, indeed.", "no commas"),
        ("Do not use the word 'basically'.", "It is basically fine.", "uses 'basically'"),
        ('Include the keywords "alpha" and "beta".', "Only alpha here.", "missing 'beta'"),
        ('Finish your response with "Any questions?"', "Done.", "end with 'Any questions?'"),
        ("Wrap your entire response in JSON format.", "not json", "format"),
        ("Add a postscript starting with P.S.", "Bye.", "format"),
        ("Please answer in Japanese.", "In English.", "format"),
        # How often a word or letter must appear: a count the input states, not met.
        (
            "Include keyword cloud once in your response, and keyword dawn three times.",
            "A cloud at dawn, then dawn again.",
            "keyword dawn three times: 2",
        ),
        (
            "The word river should appear at least 4 times.",
            "River, river, river.",
            "word river should appear at least 4 times: 3",
        ),
        ("Use the word alpha at most twice.", "alpha alpha alpha", "word alpha at most twice: 3"),
        (
            "In your answer, the letter q should appear at least 3 times.",
            "A quick quip.",
            "letter q should appear at least 3 times: 2",
        ),
    ],
)
def test_instruction_checks_on_general_phrasings(prompt, output, broken):
    numbers, flags = constraints.instruction_facts(prompt, output)
    assert flags["breaks_instruction"] == broken
    assert numbers["broken_instructions"] >= 1
    assert not flags["keeps_checked_instructions"]


@pytest.mark.parametrize(
    ("prompt", "output"),
    [
        ("Answer in at most 5 words.", "Five words are right here."),
        ("Respond in all lowercase.", "hello there."),
        ('Include the keyword "alpha".', "Alpha is here."),
        ('End your answer with "Bye."', "See you. Bye."),
        ("Return the result as JSON.", '```json\n{"a": 1}\n```'),
        ("Write a title wrapped in double angular brackets, like <<title>>.", "<<Rain>> It rains."),
        ("The word river should appear at least 3 times.", "River, river and riverbank, river."),
        ("Include keyword cloud twice in your response.", "A cloud, then another cloud."),
        ("In your answer, the letter q should appear at least 2 times.", "A quick quip."),
    ],
)
def test_kept_instructions_are_counted_as_kept(prompt, output):
    numbers, flags = constraints.instruction_facts(prompt, output)
    assert flags["breaks_instruction"] == ""
    assert flags["keeps_checked_instructions"]
    assert numbers["checked_instructions"] >= 1


@pytest.mark.parametrize(
    ("prompt", "output", "broken"),
    [
        # A count with no other cue in its sentence ("use the word X 3 times"), a verb of
        # use before a bare or quoted word, "N or more", and bounds from above.
        (
            "Write a poem. Use the word 'banana' 3 times.",
            "A banana poem.",
            "word 'banana' 3 times: 1",
        ),
        (
            "Describe a market. Mention apples at least twice.",
            "It sells apples and pears.",
            "Mention apples at least twice: 1",
        ),
        ("Include fresh at least twice.", "Fresh fish.", "Include fresh at least twice: 1"),
        (
            "Describe a market. Mention the word fresh exactly 2 times.",
            "Fresh fish, fresh bread, fresh milk.",
            "word fresh exactly 2 times: 3",
        ),
        ("Use 'tide' 3 or more times.", "The tide, the tide.", "Use 'tide' 3 or more times: 2"),
        (
            "Make sure 'tide' appears at least twice.",
            "The tide.",
            "'tide' appears at least twice: 1",
        ),
        (
            "Say hello. Do not mention apples more than twice.",
            "Apples, apples, apples.",
            "mention apples more than twice: 3",
        ),
    ],
)
def test_how_often_to_use_a_word_in_other_words(prompt, output, broken):
    numbers, flags = constraints.instruction_facts(prompt, output)
    assert flags["breaks_instruction"] == broken
    assert numbers["stated_instructions"] >= 1


@pytest.mark.parametrize(
    ("prompt", "output"),
    [
        ("Write a poem. Use the word 'banana' 3 times.", "Banana, banana, banana."),
        ("Describe a market. Mention apples at least twice.", "Apples here, apples there."),
        # A bound from above permits the word: it is not forbidden.
        ("Say hello. Do not mention apples more than twice.", "Hello, apples."),
        ("Name a fruit. Mention apples only once.", "An apple, or apples."),
    ],
)
def test_a_word_used_as_often_as_asked_keeps_the_instruction(prompt, output):
    numbers, flags = constraints.instruction_facts(prompt, output)
    assert flags["breaks_instruction"] == ""
    assert flags["keeps_checked_instructions"]


def test_a_count_in_a_sentence_that_asks_for_nothing_is_no_instruction():
    numbers, _ = constraints.instruction_facts("I tried 3 times to log in, twice today.", "Ok.")
    assert numbers["stated_instructions"] == 0
    # "use it twice", "use commas 3 times": no word to count.
    numbers, _ = constraints.instruction_facts("Use it twice. Use commas 3 times.", "Ok, ok.")
    assert numbers["checked_instructions"] == 0


def test_limits_on_each_item_and_instructions_on_every_word_are_told_apart():
    prompt = "List ten palindromes, each at least 5 characters long. Every word must rhyme."
    numbers, flags = constraints.instruction_facts(prompt, "Level.")
    # "each at least 5 characters" limits every item, not the answer: nothing to check.
    assert numbers["checked_instructions"] == 0
    assert flags["per_unit_instruction"] == "Every word"
    assert numbers["stated_instructions"] == 2
    # A prompt with no instruction states none.
    assert constraints.instruction_facts("What is a river?", "Water.")[0] == {
        "stated_instructions": 0.0,
        "checked_instructions": 0.0,
        "broken_instructions": 0.0,
        "required_terms_used": None,
    }


@pytest.mark.parametrize(
    ("prompt", "output", "per_unit"),
    [
        (
            "Include keyword giggle in the 22-nd sentence of your response.",
            "We giggle.",
            "in the 22-nd sentence",
        ),
        (
            "Respond with three sentences, all with the same number of words.",
            "One two. Three four five. Six.",
            "the same number of words",
        ),
    ],
)
def test_output_keeping_the_checked_part_does_not_keep_an_instruction_on_every_sentence(
    prompt, output, per_unit
):
    # The keyword is there and there are three sentences, but where the keyword sits or
    # how long each sentence is no check reads: the output is not said to keep it all.
    numbers, flags = constraints.instruction_facts(prompt, output)
    assert numbers["checked_instructions"] >= 1
    assert flags["breaks_instruction"] == ""
    assert flags["per_unit_instruction"] == per_unit
    assert not flags["keeps_checked_instructions"]


def _keyword_count_set(seed: int, n: int = 30) -> list[LabelledExample]:
    """Outputs asked to use a word a number of times, half of them using it too rarely."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        keep = i % 2 == 0
        word = rng.choice(["lantern", "saffron", "glacier", "harbor"])
        times = rng.randint(2, 5)
        used = rng.randint(times, times + 2) if keep else rng.randint(0, times - 1)
        words = [rng.choice(WORDS) for _ in range(rng.randint(10, 30))] + [word] * used
        rng.shuffle(words)
        trace = {
            "id": f"kc{i:03d}",
            "input": rng.choice(TOPICS) + f" Include the keyword {word} {times} times.",
            "output": " ".join(words).capitalize() + ".",
        }
        examples.append(LabelledExample(trace=trace, label="positive" if keep else "negative"))
    return examples


def test_recovers_a_word_used_fewer_times_than_the_input_asks():
    # Most outputs use the keyword, so "uses the keyword" separates little;
    # the count the input states against the output's count does.
    examples = _keyword_count_set(31)
    fitted = fit(examples)
    (rule,) = fitted.decision.rules
    assert [lit.feature.args for lit in rule.literals] == [("breaks_instruction",)]
    assert fitted.predict(
        {"input": "The word tide should appear 3 times.", "output": "The tide, the tide."}
    ) == (
        False,
        "Output breaks an instruction the input states ('word tide should appear 3 times: 2')",
    )
    assert fitted.predict({"input": "Include the word tide twice.", "output": "Tide, tide."})[0]
    assert_code_matches(fitted, [e.trace for e in examples])


def test_inlined_constraints_do_not_clash_with_runtime_names():
    # codegen pastes constraints.py after runtime.py into one module: a name defined in
    # both would silently change one of them in emitted code.
    def top_level(module) -> set[str]:
        names = set()
        for node in ast.parse(inspect.getsource(module)).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        return names

    assert top_level(runtime) & top_level(constraints) == set()


def test_a_note_about_instructions_makes_the_instruction_facts_believed_first():
    assert "instructions" in priors_from_text("Ignored the word limit the user gave")
    assert "instructions" in priors_from_text("Did not follow the formatting constraints")
    assert "instructions" not in priors_from_text("The agent cancelled the wrong order")
