"""Meta-prompts: content, balance, the token budget and trimming of large traces."""

from __future__ import annotations

import hashlib
import json

import pytest

from evals.generation.prompts import (
    ALLOWED_IMPORTS,
    CHARS_PER_TOKEN,
    GENERATION_PROMPT_VERSION,
    REFINE_PROMPT_VERSION,
    TEMPLATES,
    Contradiction,
    PromptBudgetError,
    PromptExample,
    build_generation_prompt,
    build_refine_prompt,
    build_retry_message,
    render_trace,
)

CRITERIA = "The assistant must answer the user's question and never leak the system prompt."


def make_trace(index: int, *, output="An answer.", steps=2, payload=40, error=None) -> dict:
    return {
        "id": f"trace-{index}",
        "name": "support-chat",
        "timestamp": "2025-03-01T12:00:00Z",
        "input": {"question": f"Question number {index}?"},
        "output": output,
        "steps": [
            {
                "id": f"{index}-s{n}",
                "parent_id": None,
                "type": "tool" if n % 2 else "llm",
                "name": f"lookup_{n % 3}",
                "input": "q" * payload,
                "output": "r" * payload,
                "error": error if n == steps // 2 else None,
                "model": None,
                "usage": None,
                "start_time": None,
                "end_time": None,
                "metadata": {"attempt": 1},
            }
            for n in range(steps)
        ],
        "metadata": {},
        "tags": ["prod"],
        "user_id": None,
        "session_id": None,
        "latency_ms": 850.0,
        "cost": None,
    }


def examples(positives: int, negatives: int, **trace_options) -> list[PromptExample]:
    good = [
        PromptExample(make_trace(i, **trace_options), "positive", f"good note {i}")
        for i in range(positives)
    ]
    bad = [
        PromptExample(make_trace(100 + i, **trace_options), "negative", f"bad note {i}")
        for i in range(negatives)
    ]
    return good + bad


def total_chars(prompt) -> int:
    return len(prompt.system) + len(prompt.user)


def test_generation_prompt_states_criteria_contract_schema_and_rules():
    prompt = build_generation_prompt(criteria=CRITERIA, examples=examples(2, 2), token_budget=8000)
    text = prompt.system + prompt.user
    assert prompt.version == GENERATION_PROMPT_VERSION
    assert CRITERIA in prompt.user
    assert "def eval_fn(trace: dict) -> tuple[bool, str]:" in prompt.system
    assert "(True, reason) when the trace is good" in prompt.system
    for module in ALLOWED_IMPORTS:
        assert module in prompt.system
    for forbidden in ("eval", "exec", "compile", "open", "__import__", "globals", "getattr"):
        assert forbidden in prompt.system
    assert "double underscores" in prompt.system and "network" in prompt.system
    # The validator's rules against code hidden in strings, so a model does not burn a retry.
    for rule in ("string annotations", "singledispatch", "format_map", "f-strings"):
        assert rule in prompt.system
    assert '"steps"' in prompt.system and '"error": str | None' in prompt.system
    assert "```python" in text
    assert prompt.messages == [{"role": "user", "content": prompt.user}]


def test_examples_carry_labels_and_reviewer_notes():
    prompt = build_generation_prompt(criteria=CRITERIA, examples=examples(2, 2), token_budget=8000)
    assert prompt.user.count("reviewer: GOOD (positive)") == 2
    assert prompt.user.count("reviewer: BAD (negative)") == 2
    for note in ("good note 0", "good note 1", "bad note 0", "bad note 1"):
        assert f"Reviewer's note: {note}" in prompt.user
    assert set(prompt.trace_ids) == {"trace-0", "trace-1", "trace-100", "trace-101"}
    # Each example is valid JSON the model can read as the trace dict.
    block = prompt.user.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block)["id"] == "trace-0"


def test_examples_alternate_so_a_tight_budget_stays_balanced():
    many = examples(12, 3, payload=2000)
    prompt = build_generation_prompt(criteria=CRITERIA, examples=many, token_budget=2500)
    shown = prompt.trace_ids
    assert 2 <= len(shown) <= 6
    labels = ["positive" if int(t.split("-")[1]) < 100 else "negative" for t in shown]
    assert abs(labels.count("positive") - labels.count("negative")) <= 1, shown
    assert labels[:2] == ["positive", "negative"]
    assert "the rest did not fit" in prompt.user


def test_leftover_majority_examples_follow_when_the_budget_allows():
    prompt = build_generation_prompt(criteria=CRITERIA, examples=examples(5, 1), token_budget=20000)
    assert len(prompt.trace_ids) == 6
    assert prompt.trace_ids[:2] == ("trace-0", "trace-100")


@pytest.mark.parametrize("budget", [2500, 4000, 9000, 30000])
def test_prompt_respects_the_token_budget(budget):
    many = examples(10, 10, steps=30, payload=5000)
    prompt = build_generation_prompt(criteria=CRITERIA, examples=many, token_budget=budget)
    assert total_chars(prompt) <= budget * CHARS_PER_TOKEN
    assert prompt.approx_tokens <= budget
    assert len(prompt.trace_ids) >= 2


def test_a_larger_budget_shows_more_of_the_traces():
    many = examples(6, 6, steps=10, payload=3000)
    small = build_generation_prompt(criteria=CRITERIA, examples=many, token_budget=5000)
    large = build_generation_prompt(criteria=CRITERIA, examples=many, token_budget=60000)
    assert len(large.trace_ids) >= len(small.trace_ids)
    assert total_chars(large) > total_chars(small)


def test_budget_too_small_for_any_example_is_an_error():
    with pytest.raises(PromptBudgetError):
        build_generation_prompt(criteria=CRITERIA, examples=examples(1, 1), token_budget=500)


def test_huge_trace_keeps_output_errors_and_step_names_while_trimming_payloads():
    huge = make_trace(
        7,
        output="Your refund of $42 was processed.",
        steps=120,
        payload=50_000,
        error="ToolError: payments API timed out after 30s",
    )
    text = render_trace(huge, max_chars=12_000)
    assert len(text) <= 12_000
    assert "Your refund of $42 was processed." in text
    assert "ToolError: payments API timed out after 30s" in text
    assert "Question number 7?" in text
    assert '"name": "lookup_0"' in text and '"type": "tool"' in text
    assert "q" * 200 not in text and "r" * 200 not in text
    assert "[omitted: " in text or "chars trimmed]" in text


def test_long_output_is_cut_in_the_middle_keeping_both_ends():
    output = "BEGINNING " + "filler " * 20_000 + " THE END"
    text = render_trace(make_trace(1, output=output), max_chars=4000)
    assert len(text) <= 4000
    assert "BEGINNING" in text and "THE END" in text and "chars trimmed]" in text


def test_small_traces_are_not_trimmed():
    trace = make_trace(3)
    assert json.loads(render_trace(trace, max_chars=100_000)) == trace


def test_prompt_building_is_deterministic():
    many = examples(7, 5, steps=40, payload=3000, error="boom")
    first = build_generation_prompt(criteria=CRITERIA, examples=many, token_budget=7000)
    second = build_generation_prompt(criteria=CRITERIA, examples=list(many), token_budget=7000)
    assert first == second


def test_neutral_labels_are_refused():
    with pytest.raises(ValueError, match="label"):
        build_generation_prompt(
            criteria=CRITERIA,
            examples=[PromptExample(make_trace(1), "neutral")],  # type: ignore[arg-type]
            token_budget=8000,
        )


def test_refine_prompt_shows_code_disagreements_first_and_agreements():
    code = 'def eval_fn(trace):\n    return True, "always good"'
    contradictions = [
        Contradiction(make_trace(200), "negative", "leaked the system prompt", True, "always good"),
        Contradiction(make_trace(201), "positive", "fine answer", None, "KeyError: 'output'"),
    ]
    prompt = build_refine_prompt(
        criteria=CRITERIA,
        current_code=code,
        contradictions=contradictions,
        examples=examples(2, 2),
        token_budget=12000,
    )
    assert prompt.version == REFINE_PROMPT_VERSION
    assert code in prompt.user and CRITERIA in prompt.user
    assert "DISAGREEMENT — reviewer: BAD (negative); eval_fn returned True: 'always good'" in (
        prompt.user
    )
    assert "eval_fn failed: KeyError: 'output'" in prompt.user
    assert "Reviewer's note: leaked the system prompt" in prompt.user
    assert prompt.user.count("— AGREEMENT — reviewer") == 4
    assert prompt.trace_ids[:2] == ("trace-201", "trace-200")
    assert total_chars(prompt) <= 12000 * CHARS_PER_TOKEN


def test_refine_prompt_under_a_tight_budget_keeps_disagreements():
    contradictions = [
        Contradiction(make_trace(300 + i, payload=4000), "negative", "bad", True, "ok")
        for i in range(6)
    ]
    prompt = build_refine_prompt(
        criteria=CRITERIA,
        current_code="def eval_fn(trace):\n    return True, 'ok'",
        contradictions=contradictions,
        examples=examples(6, 6, payload=4000),
        token_budget=4500,
    )
    assert total_chars(prompt) <= 4500 * CHARS_PER_TOKEN
    assert prompt.trace_ids[0] == "trace-300"
    assert "DISAGREEMENT" in prompt.user


def test_retry_message_contains_the_error_and_asks_for_the_whole_module():
    error = "Validation failed: import of 'os' is not allowed (line 1)"
    message = build_retry_message(error)
    assert error in message
    assert "```python" in message and "eval_fn" in message


def test_retry_message_trims_a_huge_error_keeping_its_ends():
    error = "Traceback (most recent call last):\n" + "  frame\n" * 5000 + "ZeroDivisionError: x"
    message = build_retry_message(error)
    assert len(message) < 5000
    assert "Traceback" in message and "ZeroDivisionError: x" in message


# Edit a template only together with a new version constant; then record the new
# fingerprint here. Stored prompts name the version they were built with.
FINGERPRINTS = {
    GENERATION_PROMPT_VERSION: "0776b453369221bd",
    REFINE_PROMPT_VERSION: "bae00c4833702cca",
}


@pytest.mark.parametrize("version", sorted(FINGERPRINTS))
def test_template_text_is_pinned_to_its_version(version):
    digest = hashlib.sha256("\x00".join(TEMPLATES[version]).encode()).hexdigest()[:16]
    assert digest == FINGERPRINTS[version]
