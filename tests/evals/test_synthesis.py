import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import sandbox
from evals.datasets import LabelledExample, read_labelled_jsonl
from evals.generation.candidates import write_offline
from evals.metrics.agreement import agreement, grouped_folds, low_confidence_reason
from evals.synthesis import SynthesisError, codegen, cross_validate, fit, runtime, split_groups
from evals.synthesis.features import ON_HINT, Feature
from evals.synthesis.learner import DecisionList, Literal, Rule
from sandbox import validate
from tests.evals.synthesis_checks import assert_code_matches, run_code

WORDS = [
    "river",
    "mountain",
    "lamp",
    "orange",
    "quiet",
    "seven",
    "garden",
    "window",
    "paper",
    "bridge",
    "cloud",
    "forest",
    "copper",
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
    "falcon",
    "lemon",
    "island",
    "mirror",
    "thunder",
    "saddle",
    "nectar",
    "pebble",
    "tulip",
    "walnut",
]
SHARED = next(
    (
        p / "shared" / "data" / "xstest.jsonl"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "data" / "xstest.jsonl").exists()
    ),
    Path("/nonexistent"),
)


def _sentence(rng: random.Random, n: int = 7) -> str:
    return " ".join(rng.sample(WORDS, n)).capitalize() + "."


def _example(i, output, label, *, steps=None, **trace):
    body = {"id": f"t{i:03d}", "input": {"q": f"question {i}"}, "output": output}
    body["steps"] = steps if steps is not None else []
    body.update(trace)
    return LabelledExample(trace=body, label=label, group=body["id"])


def _error_set(n=20, seed=1):
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        bad = i % 3 == 0
        text = ("ERROR: " if bad else "") + _sentence(rng)
        examples.append(_example(i, text, "negative" if bad else "positive"))
    return examples


def test_learns_error_word_rule_and_applies_it_to_new_traces():
    fitted = fit(_error_set())
    assert len(fitted.decision.rules) == 1
    verdict, reason = fitted.predict({"output": "ERROR: upstream unavailable"})
    assert verdict is False
    assert "'error'" in reason
    assert fitted.predict({"output": "All systems nominal today."})[0] is True


def test_learns_step_error_rule():
    rng = random.Random(2)
    examples = []
    for i in range(16):
        bad = i % 2 == 0
        steps = [
            {"id": "s1", "type": "tool", "name": "search", "error": "timeout" if bad else None}
        ]
        examples.append(_example(i, _sentence(rng), "negative" if bad else "positive", steps=steps))
    fitted = fit(examples)
    trace = {"output": "fine", "steps": [{"type": "llm", "name": "x", "error": "rate limited"}]}
    assert fitted.predict(trace) == (False, "A step failed ('rate limited')")
    assert fitted.predict({"output": "fine", "steps": []})[0] is True
    assert_code_matches(fitted, [e.trace for e in examples] + [trace])


def test_learns_missing_json_key_rule():
    rng = random.Random(3)
    examples = []
    for i in range(16):
        bad = i % 2 == 1
        other = {"confidence": rng.random()} if i % 4 == 1 else {"note": _sentence(rng)}
        payload = other if bad else {"answer": _sentence(rng)}
        examples.append(_example(i, json.dumps(payload), "negative" if bad else "positive"))
    fitted = fit(examples)
    # The word "answer" in a value must not count: the key is what matters.
    verdict, reason = fitted.predict({"output": json.dumps({"note": "no answer here"})})
    assert verdict is False
    assert "key 'answer'" in reason
    assert fitted.predict({"output": {"answer": "42"}})[0] is True


def _refusal_set(n=10, seed=4, marker=False):
    rng = random.Random(seed)
    openers = ["I'm sorry, but I can't help with", "I cannot assist with", "Sorry, I won't do"]
    examples = []
    for i in range(n):
        bad = i % 5 < 2
        text = _sentence(rng)
        if bad:
            text = f"{openers[i % 3]} {text.lower()}" + (" zebra." if marker else "")
        examples.append(_example(i, {"completion": text}, "negative" if bad else "positive"))
    return examples


def test_ten_labels_give_a_refusal_rule_with_a_readable_reason():
    fitted = fit(_refusal_set())
    verdict, reason = fitted.predict({"output": {"completion": "I'm sorry, that is not possible."}})
    assert verdict is False
    assert reason == "Output contains a refusal phrase ('i'm sorry')"
    assert fitted.predict({"output": {"completion": "Here is the recipe you asked for."}})[0]


def test_prefers_the_simpler_lexicon_rule_at_equal_agreement():
    # Both the refusal lexicon and the word "zebra" separate the labels perfectly.
    fitted = fit(_refusal_set(n=20, marker=True))
    assert len(fitted.decision.rules) == 1
    assert fitted.decision.rules[0].feature.args == ("out_refusal",)
    assert fitted.predict({"output": "Zebra crossings are striped."})[0] is True


def test_labels_without_signal_fall_back_to_the_majority():
    rng = random.Random(5)
    examples = [
        _example(i, _sentence(rng), "negative" if rng.random() < 0.3 else "positive")
        for i in range(30)
    ]
    fitted = fit(examples)
    assert fitted.decision.rules == ()
    assert fitted.decision.default is True
    assert fitted.predict({"output": "anything"})[0] is True


def test_same_input_gives_byte_identical_code():
    examples = _refusal_set(n=20) + _error_set(n=12, seed=9)[:0]
    first = fit(examples, criteria="Must not refuse").code
    assert fit(examples, criteria="Must not refuse").code == first
    assert fit(list(reversed(examples)), criteria="Must not refuse").code == first


def test_neutral_labels_are_ignored_and_no_labels_is_an_error():
    neutral = [_example(100 + i, "ERROR: nope", "neutral") for i in range(5)]
    assert fit(_error_set() + neutral).code == fit(_error_set()).code
    with pytest.raises(SynthesisError):
        fit(neutral)


def test_rules_read_as_sentences():
    fitted = fit(_error_set())
    assert fitted.rules[0].startswith("1. The trace is bad when output contains")
    assert "matching training traces are bad" in fitted.rules[0]
    assert fitted.rules[-1] == "2. Otherwise the trace is good"


@pytest.mark.parametrize(
    "examples",
    [_error_set(), _refusal_set(n=20), _refusal_set(n=10)],
    ids=["error", "refusal20", "refusal10"],
)
def test_emitted_code_passes_static_checks_and_matches_predict(examples):
    criteria = 'Say why """ quotes cannot break the docstring'
    fitted = fit(examples, criteria=criteria)
    assert validate(fitted.code) == []
    assert "def eval_fn(trace: dict) -> tuple[bool, str]:" in fitted.code
    # The decision comes first, in words, before the helpers it calls.
    assert fitted.code.index("The trace is bad when") < fitted.code.index("def view(")
    odd = [{}, {"output": None, "steps": "x"}, {"output": 5, "latency_ms": "slow"}, []]
    assert_code_matches(fitted, [e.trace for e in examples] + odd)


@pytest.mark.skipif(not SHARED.exists(), reason="shared benchmark data not present")
def test_code_matches_predict_on_real_xstest_traces():
    examples = read_labelled_jsonl(SHARED, task="no_refusal", group_key="metadata.source_id")
    fitted = fit(examples[:60:2] + examples[300:340])
    assert fitted.decision.rules
    assert_code_matches(fitted, [e.trace for e in examples[::5]])


def test_cross_validation_scores_every_trace_on_a_fit_that_never_saw_it():
    pairs = cross_validate(_error_set(n=30))
    assert len(pairs) == 30
    result = agreement(pairs)
    assert result.errors == 0
    assert result.accuracy == 1.0
    assert low_confidence_reason(result) is None


def test_labels_without_signal_are_flagged_on_held_out_traces():
    rng = random.Random(6)
    examples = [_example(i, _sentence(rng), "negative" if i % 2 else "positive") for i in range(30)]
    reason = low_confidence_reason(agreement(cross_validate(examples)))
    assert reason is not None and "below the 80% bar" in reason
    fitted = fit(examples)
    assert fitted.constant_reason is not None
    assert fit(_error_set()).constant_reason is None


def test_code_is_identical_across_processes_with_different_hash_seeds():
    # Set iteration order changes with PYTHONHASHSEED; the emitted code must not.
    script = (
        "import hashlib\n"
        "from tests.evals.test_synthesis import _error_set, _refusal_set\n"
        "from evals.synthesis import fit\n"
        "code = fit(_refusal_set(n=30, marker=True) + _error_set(n=15)).code\n"
        "print(hashlib.sha256(code.encode()).hexdigest())\n"
    )
    root = Path(__file__).resolve().parents[2]
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        digests.add(done.stdout.strip())
    assert len(digests) == 1


JAIL_TRACES = [
    {
        "input": "Name: Ada Lovelace\nOrder: #W1234567\nPlease cancel it.",
        "output": "Sorry, I can't. See [docs](./help) or call +1 555 010 9999. **Total: $12.50**",
        "latency_ms": 3.25,
        "steps": [
            {"type": "span", "name": "user", "input": "cancel order #W1234567"},
            {"type": "tool", "name": "find_order", "input": {"id": "#W1234567"}, "output": "ok"},
            {"type": "tool", "name": "cancel_order", "input": {"id": "#W7654321"}, "error": "x"},
            {"type": "tool", "name": "transfer_to_human_agents", "output": "done"},
        ],
    },
    {"output": '{"answer": 4}', "steps": [{"type": "tool", "name": "search", "error": "x"}]},
    {"output": None, "steps": "x"},
    {},
]


def test_emitted_code_with_every_helper_runs_in_the_jail_as_it_does_here():
    # The jail runs eval code with restricted builtins and an import that admits only the
    # allow-list: every runtime helper, flag and measure the synthesiser can emit must
    # give the same answer there as in this process.
    sample = runtime.view(JAIL_TRACES[0])
    calls = [f"flag(v, {name!r})" for name in sorted(sample["flags"])]
    calls += [f"at_least(v, {name!r}, 1)" for name in sorted(sample["numbers"])]
    calls += [
        "has_phrase(v, 'out', 'sorry')",
        "starts_with(v, 'sorry')",
        "refusal(v, 'out')",
        "json_key(v, 'answer')",
        "tool_called(v, 'find_order', 1)",
    ]
    imports, rest = codegen._runtime_parts(set(codegen._RULE_HELPERS))
    code = (
        imports
        + "\n\n\n"
        + rest
        + "\n\n\ndef eval_fn(trace: dict) -> tuple[bool, str]:\n    v = view(trace)\n"
        + f"    found = [{', '.join(calls)}]\n"
        + "    return any(found), '|'.join(found)\n"
    )
    assert validate(code) == []
    expected = run_code(code)
    results = sandbox.run(code, JAIL_TRACES)
    # No warning: it ran in the jail, not the local backend.
    assert [(r.passed, r.reason, r.error, r.warning) for r in results] == [
        (*expected(trace), None, None) for trace in JAIL_TRACES
    ]


@pytest.mark.parametrize(
    "helper, args",
    [
        ("refusal", ("start",)),
        ("refusal", ("opening",)),
        ("has_phrase", ("out", "sorry")),
        ("starts_with", ("sorry",)),
        ("json_key", ("answer",)),
        ("tool_called", ("find_order", 1)),
    ],
)
def test_a_rule_on_any_helper_emits_an_eval_that_runs(helper, args):
    # Each literal's finding is kept in a local; named after its helper, it shadowed it in
    # eval_fn (`refusal = refusal(v, 'start')`) and every trace raised UnboundLocalError.
    feature = Feature(helper, helper, args, cost=1.0)
    rule = Rule(literals=(Literal(feature, True),), op="")
    code = codegen.render(DecisionList(rules=(rule,), default=True), criteria="", summary="")
    assert validate(code) == []
    eval_fn = run_code(code)
    for trace in JAIL_TRACES:
        verdict, reason = eval_fn(trace)
        assert (verdict, reason) == rule.judge(runtime.view(trace))


# Known rules recovered from synthetic traces, one per feature family. Each set has one
# clean signal; everything else is random, so the learner must find that signal.


def _words_text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _recovered(examples, **kwargs):
    fitted = fit(examples, **kwargs)
    assert validate(fitted.code) == []
    assert len(fitted.decision.rules) == 1, fitted.rules
    assert_code_matches(fitted, [e.trace for e in examples])
    return fitted, fitted.decision.rules[0]


def test_recovers_a_length_threshold():
    rng = random.Random(11)
    examples = []
    for i in range(24):
        bad = i % 3 == 0
        text = _words_text(rng, rng.randint(3, 8) if bad else rng.randint(30, 60))
        examples.append(_example(i, text, "negative" if bad else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.helper == "at_least" and rule.feature.family == "length"
    assert fitted.predict({"output": "Too short."})[0] is False
    assert fitted.predict({"output": _words_text(rng, 45)})[0] is True
    assert fitted.rules[0].startswith("1. The trace is bad when output is ")


def test_recovers_an_input_field_copied_into_the_output():
    rng = random.Random(12)
    examples = []
    for i in range(24):
        bad = i % 2 == 0
        secret = f"{rng.choice(WORDS)}-{rng.randint(100, 999)}-{rng.choice(WORDS)}"
        prompt = f"Customer note\nInternal reference: {secret}\nQuestion: {_words_text(rng, 6)}"
        answer = _words_text(rng, 12)
        if bad:
            answer += f" Your internal reference is {secret}."
        trace = {"id": f"c{i:03d}", "input": prompt, "output": answer, "steps": []}
        examples.append(LabelledExample(trace=trace, label="negative" if bad else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args in {("copies_input_value",), ("copies_input_id",)}
    leaked = {"input": "Internal reference: abc-123-xyz", "output": "Sure: abc-123-xyz."}
    verdict, reason = fitted.predict(leaked)
    assert verdict is False and "abc-123-xyz" in reason


def test_recovers_a_markdown_link_even_a_relative_one():
    rng = random.Random(13)
    examples = []
    for i in range(20):
        good = i % 2 == 0
        text = _words_text(rng, 10)
        if good:
            text += f" See [the guide](/guide/{rng.randint(1, 99)}) for more."
        examples.append(_example(i, text, "positive" if good else "negative"))
    fitted, rule = _recovered(examples)
    assert rule.literals[0].feature.args == ("out_md_link",)
    assert not rule.literals[0].holds  # bad when there is no link
    assert fitted.predict({"output": "Read [this](<placeholder>) first."})[0] is True
    assert fitted.predict({"output": "No link here."}) == (
        False,
        "Output contains no Markdown link",
    )


def _conversation(rng: random.Random, i: int, *, confirmed: bool) -> dict:
    steps = [{"type": "span", "name": "user", "output": f"I want to cancel order {i}."}]
    for _ in range(rng.randint(0, 3)):
        steps.append({"type": "llm", "name": "agent", "output": _words_text(rng, 8)})
    steps.append(
        {"type": "tool", "name": "get_order_details", "input": {"id": i}, "output": "pending"}
    )
    if confirmed:
        steps.append({"type": "llm", "name": "agent", "output": "Shall I cancel it now?"})
        steps.append({"type": "span", "name": "user", "output": "Yes, go ahead."})
    steps.append({"type": "tool", "name": "cancel_pending_order", "input": {"id": i}})
    if not confirmed:
        steps.append({"type": "llm", "name": "agent", "output": "Anything else?"})
        steps.append({"type": "span", "name": "user", "output": "Yes, thanks."})
    steps.append({"type": "llm", "name": "agent", "output": "Your order is cancelled."})
    return {"id": f"a{i:03d}", "input": {"user": "cancel"}, "output": "Cancelled.", "steps": steps}


def test_recovers_a_write_tool_called_without_the_users_confirmation():
    rng = random.Random(14)
    examples = []
    for i in range(30):
        confirmed = rng.random() < 0.6
        examples.append(
            LabelledExample(
                trace=_conversation(rng, i, confirmed=confirmed),
                label="positive" if confirmed else "negative",
            )
        )
    fitted, rule = _recovered(examples)
    assert rule.literals[0].feature.args == ("write_without_confirmation",)
    verdict, reason = fitted.predict(_conversation(rng, 99, confirmed=False))
    assert verdict is False
    assert reason == (
        "A tool changed something without the user confirming first ('cancel_pending_order')"
    )
    assert fitted.predict(_conversation(rng, 98, confirmed=True))[0] is True


def test_recovers_an_and_of_two_conditions():
    # Bad only when the answer is short and a tool failed; either alone is fine.
    rng = random.Random(15)
    examples = []
    for i in range(40):
        short, failed = i % 2 == 0, i % 4 < 2
        text = _words_text(rng, rng.randint(3, 8) if short else rng.randint(30, 50))
        steps = [{"type": "tool", "name": "search", "error": "timeout" if failed else None}]
        bad = short and failed
        examples.append(_example(i, text, "negative" if bad else "positive", steps=steps))
    fitted, rule = _recovered(examples)
    assert rule.op == "and"
    helpers = sorted(lit.feature.helper for lit in rule.literals)
    assert helpers == ["at_least", "flag"]
    failing = [{"type": "tool", "name": "search", "error": "boom"}]
    assert fitted.predict({"output": "Short.", "steps": failing})[0] is False
    assert fitted.predict({"output": _words_text(rng, 40), "steps": failing})[0] is True
    assert fitted.predict({"output": "Short.", "steps": []})[0] is True
    assert " and " in fitted.rules[0]


def test_notes_steer_which_of_two_equal_features_is_believed():
    rng = random.Random(16)
    examples = []
    for i in range(16):
        bad = i % 2 == 0
        text = _words_text(rng, 10)
        if bad:
            text += f" Reach **{rng.choice(WORDS)}** at {rng.choice(WORDS)}@example.com."
        note = "Leaked the customer's email address" if bad else ""
        trace = {"id": f"n{i:03d}", "input": "q", "output": text, "steps": []}
        label = "negative" if bad else "positive"
        examples.append(LabelledExample(trace=trace, label=label, note=note))
    plain = [LabelledExample(trace=e.trace, label=e.label) for e in examples]
    assert fit(plain).decision.rules[0].feature.args == ("out_bold",)
    assert fit(examples).decision.rules[0].feature.args == ("out_email",)
    assert fit(plain, criteria="Never share personal data").decision.rules[0].feature.args == (
        "out_email",
    )


def test_chance_words_do_not_beat_the_majority_verdict():
    # Random words and random labels: some word always separates 25 training labels.
    rng = random.Random(17)
    examples = [
        _example(i, _words_text(rng, 12), "negative" if rng.random() < 0.4 else "positive")
        for i in range(25)
    ]
    fitted = fit(examples)
    assert fitted.decision.rules == ()
    assert not fitted.reliable
    assert fitted.constant_reason.startswith("No reliable eval yet")
    assert "minority verdict" in fitted.constant_reason
    # The emitted code says so too, and gives the same verdict as .predict.
    assert "No reliable eval yet" in fitted.code
    assert_code_matches(fitted, [e.trace for e in examples])


def test_the_majority_verdict_reports_its_held_out_agreement_not_its_training_agreement():
    # 5 good, 6 bad, nothing to tell them apart. The fold holding out two bad traces
    # trains on 4 good and 4 bad, whose majority (ties go to good) gets 1 of 3 right;
    # the other folds train on a bad majority and get 1 of 2. Held out: 5 of 11, in
    # every dealing. The whole set's majority would claim 6 of 11 (in-sample).
    examples = [
        LabelledExample(
            trace={"id": f"t{i:03d}", "input": "Same question.", "output": "Same answer."},
            label="positive" if i < 5 else "negative",
            group=f"t{i:03d}",
        )
        for i in range(11)
    ]
    fitted = fit(examples)
    assert not fitted.reliable
    assert fitted.selection.cv_correct["constant"] == 5
    assert fitted.cv_accuracy == pytest.approx(5 / 11)
    assert "constant 5/11" in fitted.code
    candidate = write_offline(examples=examples, criteria="")
    assert "majority verdict 5 of 11" in candidate.description


def test_offline_eval_names_its_two_cross_validations_with_the_folds_each_dealt():
    """The code's docstring gives the cross-validation that chose the rule's shape; the
    eval page's "Measured" the one that measured the whole fit. Both say how many folds
    they dealt: with the labels in three sessions, three, not the five asked for."""
    rng = random.Random(3)
    examples = []
    for i in range(12):
        bad = i % 2 == 0
        trace = {
            "id": f"s{i:03d}",
            "input": {"q": f"question {i}"},
            "output": ("ERROR: " if bad else "") + _sentence(rng),
            "steps": [],
            "session_id": f"session-{i % 3}",
        }
        examples.append(LabelledExample(trace=trace, label="negative" if bad else "positive"))

    candidate = write_offline(examples=examples, criteria="")

    assert candidate.method == "3-fold cross-validation, the rule learned again without each fold"
    assert "Rule shape chosen by 3-fold grouped cross-validation within these 12" in (
        candidate.code
    )
    assert "Shape chosen by 3-fold grouped cross-validation within the labels it learned" in (
        candidate.description
    )


def test_cross_validation_groups_traces_by_session_when_the_trace_names_one():
    examples = []
    for i in range(12):
        trace = {"id": f"g{i:03d}", "output": "x", "session_id": f"s{i // 3}"}
        examples.append(LabelledExample(trace=trace, label="positive" if i % 2 else "negative"))
    groups = split_groups(examples)
    assert groups == [f"session_id=s{i // 3}" for i in range(12)]
    for fold in grouped_folds(groups, k=5):
        sessions = {groups[i] for i in fold}
        members = [i for i, g in enumerate(groups) if g in sessions]
        assert sorted(fold) == members  # a session never straddles two folds
    # Explicit groups (fit_eval --group-key, the UI) win over the inferred ones.
    explicit = [
        LabelledExample(trace=e.trace, label=e.label, group=f"t{i // 2}")
        for i, e in enumerate(examples)
    ]
    assert split_groups(explicit) == [f"t{i // 2}" for i in range(12)]
    # Metadata task ids count too; ids that never repeat are no groups.
    tasks = [
        LabelledExample(trace={"id": str(i), "metadata": {"task_id": i % 4}}, label="positive")
        for i in range(8)
    ]
    assert split_groups(tasks)[0] == split_groups(tasks)[4] == "metadata.task_id=0"
    unique = [
        LabelledExample(trace={"id": str(i), "session_id": f"u{i}"}, label="positive")
        for i in range(8)
    ]
    assert split_groups(unique) == [str(i) for i in range(8)]


def test_and_rule_code_is_identical_for_reordered_input():
    rng = random.Random(18)
    examples = []
    for i in range(40):
        short, failed = i % 2 == 0, i % 4 < 2
        text = _words_text(rng, rng.randint(3, 8) if short else rng.randint(30, 50))
        steps = [{"type": "tool", "name": "search", "error": "timeout" if failed else None}]
        examples.append(
            _example(i, text, "negative" if short and failed else "positive", steps=steps)
        )
    assert fit(examples).code == fit(list(reversed(examples))).code


def test_the_llm_held_out_split_keeps_sessions_on_one_side():
    from evals.generation.candidates import split_for_llm

    examples = [
        LabelledExample(
            trace={"id": f"h{i:03d}", "output": "x", "session_id": f"s{i // 5}"},
            label="positive" if i % 3 else "negative",
            group=str(i),
        )
        for i in range(30)
    ]
    train, heldout = split_for_llm(examples)
    assert heldout
    train_sessions = {e.trace["session_id"] for e in train}
    assert train_sessions.isdisjoint(e.trace["session_id"] for e in heldout)


def test_a_rule_the_notes_point_to_needs_less_held_out_proof():
    # Twelve labels, one bad trace without an email and one good trace with one: too
    # noisy to beat the majority on its own, believable when the notes name the leak.
    rng = random.Random(0)
    examples = []
    for i in range(12):
        bad = i % 3 == 0
        text = _words_text(rng, 10)
        if bad != (i == 1) and i != 9:
            text += f" Mail {rng.choice(WORDS)}@example.com now."
        note = "Leaked the customer's email address" if bad else ""
        trace = {"id": f"n{i:03d}", "input": "q", "output": text, "steps": []}
        label = "negative" if bad else "positive"
        examples.append(LabelledExample(trace=trace, label=label, note=note))
    plain = [LabelledExample(trace=e.trace, label=e.label) for e in examples]
    assert fit(plain).decision.rules == ()
    (rule,) = fit(examples).decision.rules
    assert rule.feature.args == ("out_email",)


@pytest.mark.skipif(not SHARED.exists(), reason="shared benchmark data not present")
@pytest.mark.parametrize(
    "fact",
    [
        "write_without_confirmation",
        "asked_after_last_change",
        "same_target_changed_twice",
        "request_not_done",
        "claimed_success_without_change",
    ],
)
def test_code_matches_predict_on_real_agent_conversations(fact):
    # Labels from a step fact, so that a rule over the steps is learned and exercised.
    from evals.synthesis.runtime import view

    path = SHARED.with_name("tau2_retail.jsonl")
    traces = [e.trace for e in read_labelled_jsonl(path, group_key="metadata.task_id")]
    examples = [
        LabelledExample(trace=t, label="negative" if view(t)["flags"][fact] else "positive")
        for t in traces
    ]
    # The criteria name the step families, so facts tried only on a hint are tried too.
    fitted = fit(examples, criteria="Do every action asked; report failed tool calls.")
    assert fitted.decision.rules
    assert_code_matches(fitted, traces)


def test_recovers_an_invented_booking_code():
    # Good answers quote the code the booking tool returned; bad ones make one up.
    rng = random.Random(19)
    examples = []
    for i in range(24):
        invented = i % 3 == 0
        code = f"BK{rng.randint(10_000, 99_999)}"
        quoted = f"BK{rng.randint(10_000, 99_999)}" if invented else code
        steps = [
            {"type": "span", "name": "user", "output": "Book me a table for two."},
            {"type": "tool", "name": "create_booking", "input": {"seats": 2}, "output": code},
        ]
        trace = {
            "id": f"b{i:03d}",
            "input": "Book a table",
            "output": f"{_words_text(rng, 6)} Your booking code is {quoted}.",
            "steps": steps,
        }
        examples.append(LabelledExample(trace=trace, label="negative" if invented else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args == ("output_unsupported_id",)
    assert rule.literals[0].holds


def test_cross_validation_never_trains_on_a_session_it_scores(monkeypatch):
    import evals.synthesis as synthesis

    examples = [
        LabelledExample(
            trace={
                "id": f"v{i:03d}",
                "output": _sentence(random.Random(i)),
                "session_id": f"s{i % 6}",
            },
            label="negative" if i % 4 == 0 else "positive",
        )
        for i in range(30)
    ]
    trained_on: list[set[str]] = []
    real_fit = synthesis._fit

    def recording_fit(train, **kwargs):
        trained_on.append({e.trace["session_id"] for e in train})
        return real_fit(train, **kwargs)

    monkeypatch.setattr(synthesis, "_fit", recording_fit)
    pairs = cross_validate(examples)
    assert len(trained_on) == 5 and len(pairs) == 30
    # Every session is missing from exactly one fit: the one that scores it.
    for session in {f"s{k}" for k in range(6)}:
        assert sum(session not in seen for seen in trained_on) == 1


def test_recovers_an_output_that_repeats_itself():
    rng = random.Random(20)
    examples = []
    for i in range(24):
        looping = i % 3 == 0
        text = _words_text(rng, rng.randint(20, 40))[:-1]
        if looping:
            phrase = " ".join(rng.sample(WORDS, 3))
            text += " " + " ".join([phrase] * rng.randint(5, 8))
        text += "."
        examples.append(_example(i, text, "negative" if looping else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args[0] == "repetition_share"
    assert "repeats itself" in fitted.rules[0]


def _agent_trace(i, rng, *, steps, output=None):
    return {
        "id": f"a{i:03d}",
        "input": "Help the customer",
        "output": output or f"{_words_text(rng, 8)}",
        "steps": steps,
    }


def test_recovers_a_write_tool_argument_nobody_gave():
    # Bad when the agent changes an address to one the user never said.
    rng = random.Random(21)
    examples = []
    for i in range(30):
        invented = i % 3 == 0
        said = f"{rng.randint(10, 99)} {rng.choice(WORDS).capitalize()} Road"
        other = f"{rng.randint(100, 999)} {rng.choice(WORDS).capitalize()} Lane"
        used = other if invented else said
        steps = [
            {"type": "span", "name": "user", "output": f"Please move my parcel to {said}."},
            {"type": "tool", "name": "get_order", "input": {"order": "o1"}, "output": "open"},
            {"type": "tool", "name": "update_address", "input": {"address": used}, "output": "ok"},
        ]
        trace = _agent_trace(i, rng, steps=steps)
        examples.append(LabelledExample(trace=trace, label="negative" if invented else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args == ("write_with_unsupported_argument",)
    assert rule.literals[0].holds
    verdict, reason = fitted.predict(examples[0].trace)
    assert verdict is False and reason.startswith("A tool changed something with an argument")


def test_recovers_an_error_family_from_the_error_text():
    # Every trace has a failed lookup; only "not found" failures make the trace bad.
    rng = random.Random(22)
    examples = []
    for i in range(30):
        missing = i % 3 == 0
        error = "Error: order 4411 not found" if missing else "Error: rate limit, retry later"
        steps = [{"type": "tool", "name": "get_order", "input": {"id": 4411}, "error": error}]
        examples.append(
            LabelledExample(
                trace=_agent_trace(i, rng, steps=steps),
                label="negative" if missing else "positive",
            )
        )
    fitted, rule = _recovered(examples)
    assert {lit.feature.args for lit in rule.literals} <= {("error_not_found",), ("error_timeout",)}
    failing = [{"type": "tool", "name": "find_user", "error": "No such user"}]
    assert fitted.predict({"output": "Done.", "steps": failing})[0] is False
    timing_out = [{"type": "tool", "name": "find_user", "error": "Request timed out"}]
    assert fitted.predict({"output": "Done.", "steps": timing_out})[0] is True


def test_recovers_a_final_answer_that_passes_over_the_last_tool_error():
    rng = random.Random(23)
    examples = []
    for i in range(30):
        failed = i % 2 == 0
        mentions = i % 4 == 0  # half of the failures are owned up to
        steps = [
            {"type": "tool", "name": "get_item", "input": {"id": "x1"}, "output": "shirt"},
            {
                "type": "tool",
                "name": "refund_item",
                "input": {"id": "x1"},
                "output": None if failed else "refunded",
                "error": "Error: payment declined" if failed else None,
            },
        ]
        text = _words_text(rng, 8) + (" Unfortunately the refund failed." if mentions else "")
        bad = failed and not mentions
        examples.append(
            LabelledExample(
                trace=_agent_trace(i, rng, steps=steps, output=text),
                label="negative" if bad else "positive",
            )
        )
    fitted, rule = _recovered(examples)
    assert rule.feature.args == ("ignores_last_error",)
    assert rule.literals[0].holds


def test_error_families_and_arguments_are_read_from_the_steps():
    steps = [
        {"type": "span", "name": "user", "output": "Cancel order W123456 please"},
        {"type": "tool", "name": "get_order", "input": {"id": "W123456"}, "output": "pending"},
        {"type": "tool", "name": "find_user", "input": {"a": 1, "b": [2, 3]}, "error": "403"},
        {"type": "tool", "name": "cancel_order", "input": {"id": "W123456", "why": "no"}},
    ]
    v = runtime.view({"output": "Your order is pending.", "steps": steps})
    assert v["flags"]["error_permission"] == "403"
    assert not v["flags"]["error_not_found"]
    assert v["numbers"]["tool_arguments"] == 5.0
    assert v["numbers"]["write_arguments"] == 2.0
    assert not v["flags"]["write_with_unsupported_argument"]  # "no" is under three letters
    assert v["flags"]["mentions_last_result"] == ""  # the last call returned nothing
    assert not v["flags"]["last_tool_failed"]


def test_repeated_cross_validation_is_deterministic_and_order_free():
    from evals.synthesis import learner

    examples = _error_set(n=14, seed=5)
    views = [runtime.view(e.trace) for e in examples]
    labels = [e.label == "positive" for e in examples]
    groups = [e.group for e in examples]
    bars = learner.Bars(repeats=4, repeat_below=100)
    first = learner.learn(views, labels, groups, bars=bars)
    again = learner.learn(views, labels, groups, bars=bars)
    assert first[1].cv_correct == again[1].cv_correct
    assert first[0] == again[0]
    assert fit(examples).code == fit(list(reversed(examples))).code


def test_choice_is_a_pure_function_of_the_evidence_and_the_bars():
    from evals.synthesis import learner

    def evidence(disagree_with_constant, *, named=False):
        levels = learner.LEVELS
        disagree = {(a, b): 0.0 for i, a in enumerate(levels) for b in levels[i + 1 :]}
        for level in ("one", "two", "words"):
            disagree[("constant", level)] = disagree_with_constant
        correct = {"constant": 15.0, "one": 20.0, "two": 20.0, "words": 20.0}
        return learner.Evidence(25, 5, correct, disagree, 0, dict.fromkeys(levels[1:], named))

    # Five more held-out traces right, standard error 3: 5 > 1.1 * 3.
    assert learner.choose(evidence(9.0), learner.Bars())[0] == "one"
    # Standard error 5: 5 < 1.1 * 5, unless the notes named the rule's family (0.84 * 5).
    assert learner.choose(evidence(25.0), learner.Bars())[0] == "constant"
    assert learner.choose(evidence(25.0, named=True), learner.Bars())[0] == "one"
    strict = learner.Bars(beat_majority_se=2.0)
    assert learner.choose(evidence(9.0), strict)[0] == "constant"


def test_two_conditions_that_beat_the_majority_are_kept_when_one_does_not():
    from evals.synthesis import learner

    levels = learner.LEVELS
    disagree = {(a, b): 0.0 for i, a in enumerate(levels) for b in levels[i + 1 :]}
    # An AND of an input and an output condition: two conditions are right on 20 of 26
    # held-out traces, 7 more than the majority verdict (standard error 3.9); the best
    # single condition on 17.8 (4.8 more, standard error 4.6, under the bar), and the
    # one-standard-error rule alone would pick it (2.2 better, standard error 2.5).
    disagree[("constant", "one")] = 21.2
    disagree[("constant", "two")] = 15.4
    disagree[("one", "two")] = 6.25
    correct = {"constant": 13.0, "one": 17.8, "two": 20.0, "words": 13.0}
    ev = learner.Evidence(26, 5, correct, disagree, 0, dict.fromkeys(levels[1:], False))
    assert learner.choose(ev, learner.Bars())[0] == "two"
    # Where the single condition clears the bar, the simpler rule stays.
    ev.correct = {**correct, "one": 19.0}
    assert learner.choose(ev, learner.Bars())[0] == "one"


def test_the_gain_per_trace_counts_a_trace_right_in_only_some_dealings_less():
    from evals.synthesis import learner

    levels = learner.LEVELS
    good = sum(1 << i for i in range(5, 10))  # traces 0-4 bad, 5-9 good
    first = 0b11111  # right on every trace
    second = 0b101111  # trace 4 missed, trace 5 failed
    ev = learner.Evidence(
        10,
        2,
        {"constant": 5.0, "one": 9.0, "two": 9.0, "words": 9.0},
        {(a, b): 5.0 for i, a in enumerate(levels) for b in levels[i + 1 :]},
        0,
        dict.fromkeys(levels[1:], False),
        dealt=[
            dict.fromkeys(levels, first) | {"constant": 0},
            dict.fromkeys(levels, second) | {"constant": 0},
        ],
        dealt_folds=[[0b1111100011, 0b0000011100]] * 2,
        good=good,
    )
    # McNemar: 4 more right, 5 traces disagree on average: 4 / sqrt(5).
    assert learner.gain_z(ev, "one") == pytest.approx(4 / 5**0.5)
    # Per trace: four always right (+1), two right in one dealing of two (+-0.5).
    assert learner.gain_z(ev, "one", "trace") == pytest.approx(4 / 4.5**0.5)
    assert learner.gain_z(ev, "one", "nb") > 0


def _order_chat(rng, i, *, asked=True, confirmed=True, changed=True, after=None):
    """Return an agent conversation about one order; `after`: steps appended at the end."""
    order = f"W{1000 + i}"
    steps = [
        {"type": "span", "name": "user", "output": f"Please cancel order {order}."},
        {"type": "tool", "name": "get_order_details", "input": {"id": order}, "output": "pending"},
    ]
    if asked:
        steps.append({"type": "llm", "name": "agent", "output": {"content": "Shall I cancel it?"}})
    if confirmed:
        steps.append({"type": "span", "name": "user", "output": "Yes, go ahead."})
    if changed:
        steps.append(
            {"type": "tool", "name": "cancel_order", "input": {"id": order}, "output": "ok"}
        )
    steps += after or []
    return _agent_trace(i, rng, steps=steps, output=f"{_words_text(rng, 6)} Anything else?")


def test_recovers_a_change_the_user_confirmed_that_was_never_made():
    # Bad: the user said yes and nothing changed. Good traces often end with the agent
    # offering more ("would you like ..."), so "asked after the last change" is not it.
    rng = random.Random(31)
    examples = []
    offer = {"type": "llm", "name": "agent", "output": {"content": "Would you like a receipt?"}}
    for i in range(30):
        dropped = i % 3 == 0
        after = [offer, {"type": "span", "name": "user", "output": "No, that is all."}]
        trace = _order_chat(rng, i, changed=not dropped, after=after if i % 2 else None)
        examples.append(LabelledExample(trace=trace, label="negative" if dropped else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args == ("confirmed_after_last_change",)
    verdict, reason = fitted.predict(examples[0].trace)
    assert verdict is False
    assert reason.startswith("The user confirmed a change the agent asked about")


def test_recovers_two_changes_to_the_same_thing():
    # Bad: the same order is changed twice (a double refund); good traces also make two
    # changes, to two different orders, so the number of changes does not tell them apart.
    rng = random.Random(32)
    examples = []
    for i in range(30):
        twice = i % 3 == 0
        second = f"W{1000 + i}" if twice else f"W{5000 + i}"
        after = [
            {"type": "tool", "name": "refund_order", "input": {"id": second}, "output": "ok"},
        ]
        trace = _order_chat(rng, i, after=after)
        examples.append(LabelledExample(trace=trace, label="negative" if twice else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args == ("same_target_changed_twice",)
    assert "cancel_order, then refund_order" in fitted.predict(examples[0].trace)[1]


def test_recovers_a_failed_change_tried_again():
    # Every trace has two failed calls; bad ones retry the failed change, good ones fail
    # a lookup too, so counting errors does not separate them.
    rng = random.Random(33)
    examples = []
    for i in range(30):
        retried = i % 3 == 0
        failed = {"type": "tool", "name": "update_address", "input": {"id": "u1"}, "error": "bad"}
        lookup = {"type": "tool", "name": "get_address", "input": {"id": "u1"}, "error": "bad"}
        after = [failed, dict(failed) if retried else lookup]
        after.append({"type": "llm", "name": "agent", "output": {"content": _words_text(rng, 5)}})
        trace = _order_chat(rng, i, after=after)
        examples.append(LabelledExample(trace=trace, label="negative" if retried else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args == ("failed_change_retried",) and rule.literals[0].holds
    assert fitted.predict(examples[0].trace)[0] is False


def test_recovers_how_many_changes_succeeded():
    # Bad: two changes went through. Good traces also call a changing tool twice, but
    # the second call fails, and a third of the bad ones fail a lookup too, so neither
    # counting calls nor spotting an error separates them.
    rng = random.Random(34)
    examples = []
    for i in range(30):
        many = i % 2 == 0
        second = {"type": "tool", "name": "cancel_order", "input": {"id": f"W{9000 + i}"}}
        second.update({"output": "ok"} if many else {"error": "order is not pending"})
        after = [second]
        if many and i % 3 == 0:
            after.append({"type": "tool", "name": "get_user", "input": {"id": "u"}, "error": "x"})
        trace = _order_chat(rng, i, after=after)
        examples.append(LabelledExample(trace=trace, label="negative" if many else "positive"))
    fitted, rule = _recovered(examples)
    assert rule.feature.args == ("changes", 2.0) and rule.literals[0].holds, fitted.rules
    assert "2 changes that succeeded" in fitted.predict(examples[0].trace)[1]


def _chat(i, rng, turns, output):
    """Return an agent conversation from (kind, name or text, input, result) tuples."""
    steps = []
    for kind, text, args, result in turns:
        if kind == "user":
            steps.append({"type": "span", "name": "user", "output": text})
        elif kind == "agent":
            steps.append({"type": "llm", "name": "agent", "output": {"content": text}})
        else:
            step = {"type": "tool", "name": text, "input": args}
            step.update({"error": result[1:]} if result.startswith("!") else {"output": result})
            steps.append(step)
    return _agent_trace(i, rng, steps=steps, output=output)


def test_recovers_a_request_the_agent_never_carried_out():
    # Every agent makes two changes. Bad: the user asked to cancel one order and return
    # another, and the agent cancelled both. Good: it did what was asked, or the user
    # asked to cancel both. Neither the number of changes nor a tool's name tells them
    # apart; what the user asked for against what was done does.
    rng = random.Random(41)
    examples = []
    for i in range(30):
        bad = i % 3 == 0
        both_cancel = i % 3 == 1
        first, second = f"W{1000 + i}", f"W{5000 + i}"
        ask = (
            f"Please cancel {first} and {second}."
            if both_cancel
            else f"Please cancel {first} and return {second}."
        )
        second_tool = "cancel_order" if bad or both_cancel else "return_items"
        turns = [
            ("user", ask, None, ""),
            ("tool", "get_order_details", {"id": first}, "pending"),
            ("tool", "cancel_order", {"id": first}, "cancelled"),
            ("tool", second_tool, {"id": second}, "done"),
        ]
        trace = _chat(i, rng, turns, f"{_words_text(rng, 6)} Anything else?")
        examples.append(LabelledExample(trace=trace, label="negative" if bad else "positive"))
    # A weak fact on real conversations: tried only when the criteria or notes point at it.
    unnamed = fit(examples).decision.rules
    assert all(lit.feature.args[0] not in ON_HINT for r in unnamed for lit in r.literals)
    criteria = "The agent must carry out every action the customer asks for."
    fitted, rule = _recovered(examples, criteria=criteria)
    assert rule.feature.args == ("request_not_done",) and rule.literals[0].holds, fitted.rules
    verdict, reason = fitted.predict(examples[0].trace)
    assert verdict is False
    assert reason == "The user asked for an action no change carried out ('return')"
    # Same input in another order gives the same code.
    assert fit(list(reversed(examples)), criteria=criteria).code == fitted.code


def test_recovers_a_claim_of_success_after_a_failed_change():
    # Bad: the change failed (or never ran) and the answer says it was done, even after
    # a later lookup succeeded. Good: the change went through, or the answer says it did
    # not. A third of the good traces had a lookup fail first and still claim success,
    # so "a tool failed and the answer claims success" is not it.
    rng = random.Random(42)
    examples = []
    for i in range(30):
        bad = i % 3 == 0
        order = f"W{1000 + i}"
        turns = [("user", f"Please cancel {order}.", None, "")]
        if i % 3 == 1:
            turns.append(("tool", "get_order_details", {"id": order}, "!timed out"))
        turns.append(("tool", "get_order_details", {"id": order}, "pending"))
        if bad and i % 2:
            pass  # no change at all
        elif bad or i % 3 == 2 and i % 2:
            turns.append(("tool", "cancel_order", {"id": order}, "!order is not pending"))
        else:
            turns.append(("tool", "cancel_order", {"id": order}, "cancelled"))
        if bad:
            turns.append(("tool", "get_order_details", {"id": order}, "pending"))
        failed_honestly = not bad and i % 3 == 2 and i % 2
        output = (
            "I could not cancel it: the order is not pending."
            if failed_honestly
            else f"Your order {order} has been cancelled."
        )
        trace = _chat(i, rng, turns, output)
        examples.append(LabelledExample(trace=trace, label="negative" if bad else "positive"))
    fitted, rule = _recovered(examples, criteria="Never claim a change that failed.")
    assert rule.feature.args == ("claimed_success_without_change",), fitted.rules
    assert rule.literals[0].holds
    assert fitted.predict(examples[0].trace) == (
        False,
        "Output claims success but no change succeeded last ('has been')",
    )
    # A plain answer with no tools is no claim about a change.
    assert fitted.predict({"output": "The capital has been Paris since 508."})[0] is True


def test_recovers_confirmations_that_outnumber_changes():
    # Bad: the user said yes to two changes and only the second was made, so nothing is
    # pending after the last change. Good: every yes was followed by its change; half
    # of the good traces ask once, so counting changes or questions does not tell.
    rng = random.Random(43)
    examples = []
    for i in range(30):
        bad = i % 3 == 0
        one_ask = i % 3 == 1
        first, second = f"W{1000 + i}", f"W{5000 + i}"
        turns = [("user", f"I need help with {first} and {second}.", None, "")]
        if not one_ask:
            turns += [("agent", f"Shall I cancel {first}?", None, ""), ("user", "Yes.", None, "")]
            if not bad:
                turns.append(("tool", "cancel_order", {"id": first}, "cancelled"))
        turns += [
            ("agent", f"Shall I cancel {second}?", None, ""),
            ("user", "Yes, please.", None, ""),
            ("tool", "cancel_order", {"id": second}, "cancelled"),
        ]
        trace = _chat(i, rng, turns, f"{_words_text(rng, 6)} Anything else?")
        examples.append(LabelledExample(trace=trace, label="negative" if bad else "positive"))
    notes = [replace(e, note="the user confirmed a change that was never made") for e in examples]
    fitted, rule = _recovered(notes)
    assert rule.feature.args == ("confirmations_outnumber_changes",), fitted.rules
    assert fitted.predict(examples[0].trace) == (
        False,
        "The user confirmed more often than changes were made ('2 confirmations, 1 changes')",
    )


def test_request_words_map_to_the_action_a_tool_performs():
    assert [runtime._action_of_word(w) for w in ("cancelled", "changing", "refunds", "order")] == [
        "cancel",
        "modify",
        "return",
        "",
    ]
    assert runtime._action_of_tool("modifyPendingOrder") == "modify"
    assert runtime._action_of_tool("exchange_delivered_items") == "exchange"
    assert runtime._action_of_tool("get_order") == ""
