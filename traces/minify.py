"""A compact, deterministic view of a normalised trace for reviewers and prompts.

It keeps what evals and reviewers read: the trace's input and final answer, every step in
order with its type and name, the roles and contents of messages, tool names and
arguments, model names, every error, and scalar fields such as cost and latency. It
drops what they rarely read: ids of steps and parents, times, token usage, step
metadata, and empty fields. Long strings are cut in the middle and long lists shortened,
each with a marker that keeps the original length ("…[9120 of 9420 chars trimmed]…").

The result has the normalised trace's shape, so an eval that reads the kept fields gives
the same verdict on it (tests/traces/test_minify.py). The same trace always minifies to
the same value.
"""

from __future__ import annotations

from typing import Any

# Strings longer than this are cut, except in the final answer and the errors.
MAX_VALUE_CHARS = 300
MAX_ANSWER_CHARS = 2000
MAX_ERROR_CHARS = 1000
# Lists in payloads longer than this keep their head and tail; steps are never dropped.
MAX_LIST_ITEMS = 20
LIST_HEAD, LIST_TAIL = 12, 4
# Deeper values are replaced by a marker: no eval reads that far, and recursion must end.
MAX_DEPTH = 32

STEP_DROPPED = frozenset({"id", "parent_id", "start_time", "end_time", "usage", "metadata"})
TRACE_DROPPED = frozenset({"timestamp"})


def cut(text: str, limit: int) -> str:
    """Return ``text`` cut to about ``limit`` characters in the middle, its length kept."""
    if len(text) <= limit:
        return text
    total = len(text)
    marker = f"…[{total} of {total} chars trimmed]…"  # the longest the marker gets
    keep = max(limit - len(marker), 0)
    head, tail = (keep + 1) // 2, keep // 2
    marker = f"…[{total - head - tail} of {total} chars trimmed]…"
    return text[:head] + marker + (text[total - tail :] if tail else "")


def compact_value(value: Any, *, limit: int = MAX_VALUE_CHARS, depth: int = 0) -> Any:
    """Return a payload with long strings cut and long lists shortened; keys are all kept."""
    if isinstance(value, (list, dict)) and depth >= MAX_DEPTH:
        return f"…[{type(value).__name__} nested deeper than {MAX_DEPTH} levels trimmed]…"
    if isinstance(value, str):
        return cut(value, limit)
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            dropped = len(value) - LIST_HEAD - LIST_TAIL
            marker = f"…[{dropped} of {len(value)} items trimmed]…"
            value = [*value[:LIST_HEAD], marker, *value[-LIST_TAIL:]]
        return [compact_value(v, limit=limit, depth=depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): compact_value(v, limit=limit, depth=depth + 1) for k, v in value.items()}
    return value


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def minify_step(step: Any) -> Any:
    if not isinstance(step, dict):
        return compact_value(step)
    out: dict[str, Any] = {}
    for key, value in step.items():
        if key in STEP_DROPPED or _empty(value):
            continue
        if key == "error":
            out[key] = compact_value(value, limit=MAX_ERROR_CHARS)
        else:
            out[key] = compact_value(value)
    return out


def minify_trace(trace: dict[str, Any]) -> dict[str, Any]:
    """Return the compact form of a normalised trace (a new dict; the trace is not changed)."""
    out: dict[str, Any] = {}
    for key, value in trace.items():
        if key in TRACE_DROPPED or (_empty(value) and key != "output"):
            continue
        if key == "steps" and isinstance(value, list):
            out[key] = [minify_step(s) for s in value]
        elif key == "output":
            out[key] = compact_value(value, limit=MAX_ANSWER_CHARS)
        elif key == "error":
            out[key] = compact_value(value, limit=MAX_ERROR_CHARS)
        else:
            out[key] = compact_value(value)
    return out
