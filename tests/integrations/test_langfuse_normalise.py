"""The Langfuse normaliser's shortcuts pick the same root, cost and error as the plain rules."""

from __future__ import annotations

import itertools

from integrations.adapters.langfuse.normalise import (
    ERROR_WORDS,
    _cost,
    _root_index,
    _step_error,
    _usage,
    normalise_rows,
)

PARENTS = (None, "", "p1")
ROOT_FLAGS = (None, False, True)
NUMBERS = (None, 0, 0.5, 2, "3", [1], True)


def test_root_is_the_first_parentless_row_else_the_first_marked_root_else_the_first_row():
    shapes = list(itertools.product(PARENTS, ROOT_FLAGS))
    for count in range(4):
        for combo in itertools.product(shapes, repeat=count):
            rows = [
                {"id": str(i), "parentObservationId": parent, "isRootObservation": flag}
                for i, (parent, flag) in enumerate(combo)
            ]
            parentless = [r for r in rows if not r.get("parentObservationId")]
            marked = [r for r in rows if r.get("isRootObservation")]
            expected = (parentless or marked or rows or [None])[0]
            at = _root_index(rows)
            assert (None if at is None else rows[at]) is expected


def test_cost_is_the_first_number_of_total_cost_calculated_cost_and_cost_details():
    for total, calculated, detail in itertools.product(NUMBERS, NUMBERS, NUMBERS):
        obs = {"totalCost": total, "calculatedTotalCost": calculated}
        if detail is not None:
            obs["costDetails"] = {"total": detail}
        # true is no number of dollars (it was read as 1.0)
        numbers = [v for v in (total, calculated, detail) if type(v) in (int, float)]
        expected = float(numbers[0]) if numbers else None
        assert _cost(obs) == expected and type(_cost(obs)) is type(expected)


def test_usage_is_read_from_usage_details_else_usage_else_prompt_tokens():
    details = (None, {}, "lots", [1], {"input": 5}, {"prompt_tokens": 4, "completion_tokens": 2},
               {"output": "many"}, {"total": 9})  # fmt: skip
    for usage_details, usage, prompt in itertools.product(details, details, (None, 3)):
        obs = {"usageDetails": usage_details, "usage": usage}
        if prompt is not None:
            obs |= {"promptTokens": prompt, "completionTokens": 1}
        # The plain rule: the first non-empty of the two, when it is an object.
        found = usage_details or usage
        found = found if isinstance(found, dict) else {}
        first_in = next(
            (found[k] for k in ("input", "prompt_tokens", "input_tokens") if k in found), None
        )
        first_out = next(
            (found[k] for k in ("output", "completion_tokens", "output_tokens") if k in found), None
        )
        if first_in is None and prompt is not None:
            first_in, first_out = prompt, 1
        if first_in is None and first_out is None:
            expected = None
        else:
            count = lambda v: v if isinstance(v, int) else 0  # noqa: E731
            expected = {"input": count(first_in), "output": count(first_out)}
        assert _usage(obs) == expected, obs


def test_step_error_follows_the_level_and_the_status_message():
    for level, message in itertools.product(
        (None, "DEFAULT", "WARNING", "ERROR"), (None, "", "ok", "Request timed out", 7)
    ):
        obs = {"level": level, "statusMessage": message}
        text = message if isinstance(message, str) and message else None
        if level == "ERROR":
            expected = text or "error"
        elif text and level != "WARNING" and ERROR_WORDS.search(text):
            expected = text
        else:
            expected = None
        assert _step_error(obs, level) == expected


def test_latency_spans_the_first_start_to_the_last_end_skipping_rows_without_an_end():
    rows = [
        {"id": "a", "startTime": "2026-01-01T00:00:00.000Z", "endTime": "2026-01-01T00:00:02.500Z"},
        {"id": "b", "parentObservationId": "a", "startTime": "2026-01-01T00:00:01.000Z",
         "endTime": ""},
        {"id": "c", "parentObservationId": "a", "startTime": "2026-01-01T00:00:01.000Z",
         "endTime": None},
    ]  # fmt: skip
    assert normalise_rows("t", rows)["latency_ms"] == 2500.0
