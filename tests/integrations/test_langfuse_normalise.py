"""The Langfuse normaliser's shortcuts pick the same root, cost and error as the plain rules."""

from __future__ import annotations

import itertools

from integrations.adapters.langfuse.normalise import (
    ERROR_WORDS,
    _cost,
    _root_of,
    _step_error,
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
            assert _root_of(rows) is expected


def test_cost_is_the_first_number_of_total_cost_calculated_cost_and_cost_details():
    for total, calculated, detail in itertools.product(NUMBERS, NUMBERS, NUMBERS):
        obs = {"totalCost": total, "calculatedTotalCost": calculated}
        if detail is not None:
            obs["costDetails"] = {"total": detail}
        # true is no number of dollars (it was read as 1.0)
        numbers = [v for v in (total, calculated, detail) if type(v) in (int, float)]
        expected = float(numbers[0]) if numbers else None
        assert _cost(obs) == expected and type(_cost(obs)) is type(expected)


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
