"""Langfuse observations (v2 rows, v1 objects, trace exports) to the normalised trace shape.

Every field is built to the schema whatever the source sent (a name that is no text is
written out as text, tags that are no list are one tag, a token count that is no number
is none, a row read twice is one step), so a sync's pages need no schema check
(``TracePage.checked``); a time that is no date raises ``ValueError``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from integrations.adapters.base import (
    as_text,
    finite_float,
    format_time,
    listed,
    normal_time,
    parse_io,
    parse_time,
)

TYPE_MAP = {
    "GENERATION": "llm",
    "EMBEDDING": "llm",
    "TOOL": "tool",
    "SPAN": "span",
    "EVENT": "event",
    "AGENT": "agent",
    "CHAIN": "chain",
    "RETRIEVER": "retriever",
}
ERROR_WORDS = re.compile(r"error|exception|traceback|failed|failure|timed? ?out", re.IGNORECASE)


def _str_or_none(value: Any) -> str | None:
    # ClickHouse stores defaults, not nulls: "" means absent.
    return value if isinstance(value, str) and value else None


def _step_error(obs: dict[str, Any], level: Any) -> str | None:
    """The step's error; ``level`` is ``obs["level"]``, which the caller has read."""
    message = _str_or_none(obs.get("statusMessage"))
    if level == "ERROR":
        return message or "error"
    if message and level != "WARNING" and ERROR_WORDS.search(message):
        return message
    return None


def _usage(obs: dict[str, Any]) -> dict[str, int] | None:
    details = obs.get("usageDetails") or obs.get("usage")
    if details and isinstance(details, dict):
        found_in = _first_present(details, _INPUT_KEYS)
        found_out = _first_present(details, _OUTPUT_KEYS)
    else:  # most rows (spans, tools, events) have none: no key looked for
        found_in = found_out = None
    if found_in is None and obs.get("promptTokens") is not None:
        found_in, found_out = obs.get("promptTokens"), obs.get("completionTokens")
    if found_in is None and found_out is None:
        return None
    return {"input": _tokens(found_in), "output": _tokens(found_out)}


_INPUT_KEYS = ("input", "prompt_tokens", "input_tokens")
_OUTPUT_KEYS = ("output", "completion_tokens", "output_tokens")


def _first_present(details: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of ``keys`` that ``details`` has (None may be that value)."""
    for key in keys:
        if key in details:
            return details[key]
    return None


def _tokens(value: Any) -> int:
    """A token count as an integer; what is no number ("many", a list, NaN) counts none."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _cost(obs: dict[str, Any]) -> float | None:
    # Each key read once (a sync reads every row's here).
    for key in ("totalCost", "calculatedTotalCost"):
        value = obs.get(key)
        if isinstance(value, (int, float)) and (cost := finite_float(value)) is not None:
            return cost
    details = obs.get("costDetails")
    if isinstance(details, dict):
        value = details.get("total")
        if isinstance(value, (int, float)):
            return finite_float(value)
    return None


def normalise_observation(obs: dict[str, Any], *, known_ids: set[str]) -> dict[str, Any]:
    """Turn one Langfuse observation (v2 row or v1 object, wire key names) into a step."""
    return _step_and_cost(obs, known_ids)[0]


def _step_and_cost(obs: dict[str, Any], known_ids: set[str]) -> tuple[dict[str, Any], Any]:
    """Return the observation's step and its cost (``_cost``), which its trace adds up."""
    # Each key read once: a sync normalises every row of every trace here.
    get = obs.get
    langfuse_type = str(get("type") or "SPAN").upper()
    parent = get("parentObservationId")
    if not isinstance(parent, str) or not parent:
        parent = None
    metadata = get("metadata")
    if isinstance(metadata, dict):
        metadata = dict(metadata)
    else:
        metadata = {} if metadata is None else {"value": metadata}
    metadata["langfuse_type"] = langfuse_type
    level = get("level")
    if level:
        metadata["langfuse_level"] = level
    cost = _cost(obs)
    if cost:
        metadata["cost"] = cost
    model = get("model")
    if not isinstance(model, str) or not model:
        model = _str_or_none(get("providedModelName"))
    step = {
        "id": str(obs["id"]),
        "parent_id": parent if parent in known_ids else None,
        "type": TYPE_MAP.get(langfuse_type, "span"),
        "name": as_text(get("name")) or langfuse_type.lower(),
        "input": parse_io(get("input")),
        "output": parse_io(get("output")),
        "error": _step_error(obs, level),
        "model": model,
        "usage": _usage(obs),
        "start_time": normal_time(get("startTime")),
        "end_time": normal_time(get("endTime")),
        "metadata": metadata,
    }
    return step, cost


def _root_index(rows: list[dict[str, Any]]) -> int | None:
    """Where the root is: the first row without a parent, else the first marked root, else
    the first row; None without rows."""
    # Loops that stop at the first found: no list of every match, no lambda per row.
    for index, r in enumerate(rows):
        if not r.get("parentObservationId"):
            return index
    for index, r in enumerate(rows):
        if r.get("isRootObservation"):
            return index
    return 0 if rows else None


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_EMPTY_TYPES = (str, list, dict)


def normalise_rows(
    trace_id: str, rows: list[dict[str, Any]], *, header: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build a normalised trace from its observations; `header` is a v1 trace object, if any."""
    # A row read twice (a whole-trace fetch that pages over a tie) is one step. Rows go
    # by start time, then id (unique here, so the rows themselves are never compared);
    # each start is parsed once, for the order, the earliest start and the latency.
    unique = {str(r["id"]): r for r in rows}
    known = set(unique)
    keyed = sorted(
        (parse_time(r.get("startTime")) or _EARLIEST, key, r) for key, r in unique.items()
    )
    rows = [r for _, _, r in keyed]
    steps, costs = [], []
    for row in rows:
        step, cost = _step_and_cost(row, known)
        steps.append(step)
        costs.append(cost)
    at = _root_index(rows)
    root = rows[at] if at is not None else {}
    source = header or root
    if source is root and at is not None:
        # The root's step holds its input and output parsed already: the trace shares them
        # (a sync parses a dozen a trace; these two were a sixth of them).
        trace_input, trace_output = steps[at]["input"], steps[at]["output"]
    else:
        trace_input, trace_output = parse_io(source.get("input")), parse_io(source.get("output"))
    candidates = [source, root, *rows]

    def first(key: str) -> Any:
        for candidate in candidates:
            value = candidate.get(key)
            # Not None, "", [] or {}: without building a list and a dict to compare with.
            if value is not None and (value or not isinstance(value, _EMPTY_TYPES)):
                return value
        return None

    starts = [start for start, _, r in keyed if r.get("startTime")]
    sent_time = source.get("timestamp") or root.get("startTime")
    if parse_time(sent_time) is not None:
        # normal_time gives format_time(parse_time(...)) without formatting the usual shape.
        timestamp = normal_time(sent_time)
    else:
        timestamp = format_time(min(starts)) if starts else None
    metadata = source.get("metadata") if isinstance(source.get("metadata"), dict) else {}
    metadata = dict(metadata)
    for key in ("environment", "release", "version"):
        value = first(key)
        if value is not None and key not in metadata:
            metadata[key] = value
    return {
        "id": str(trace_id).strip(),
        "name": as_text((header or {}).get("name") or first("traceName") or root.get("name")),
        "timestamp": timestamp,
        "input": trace_input,
        "output": trace_output,
        "steps": steps,
        "metadata": metadata,
        "tags": [str(tag) for tag in listed(first("tags"))],
        "user_id": _str_or_none(first("userId")),
        "session_id": _str_or_none(first("sessionId")),
        "latency_ms": _latency_ms(rows, starts, header),
        "cost": _trace_cost(costs, header),
    }


def _header_number(header: dict[str, Any] | None, key: str) -> float | None:
    """Return a non-negative number the v1 trace header gives for ``key``, if any."""
    value = header.get(key) if header is not None else None
    number = finite_float(value) if isinstance(value, (int, float)) else None
    return number if number is not None and number >= 0 else None


def _latency_ms(
    rows: list[dict[str, Any]], starts: list[datetime], header: dict[str, Any] | None
) -> float | None:
    """The header's latency, else the span from the first start to the last end."""
    latency = _header_number(header, "latency")
    if latency is not None:
        return latency * 1000
    ends = [parse_time(end) for r in rows if (end := r.get("endTime"))]
    if starts and ends:
        return max(0.0, (max(ends) - min(starts)).total_seconds() * 1000)
    return None


def _trace_cost(costs: list[float | None], header: dict[str, Any] | None) -> float | None:
    """The header's total cost, else the sum of the observations' costs (``_cost``)."""
    cost = _header_number(header, "totalCost")
    if cost is not None:
        return cost
    costs = [c for c in costs if c is not None]
    return round(sum(costs), 10) if costs else None


def normalise_langfuse_export(obj: dict[str, Any] | str) -> dict[str, Any]:
    """Normalise one Langfuse trace export (a JSON line: the trace with its observations)."""
    if isinstance(obj, (str, bytes)):
        obj = json.loads(obj)
    if not isinstance(obj, dict) or not obj.get("id"):
        raise ValueError("a Langfuse trace export line must be a JSON object with an 'id'")
    observations = [o for o in obj.get("observations") or [] if isinstance(o, dict) and o.get("id")]
    trace = normalise_rows(str(obj["id"]), observations, header=obj)
    if trace["timestamp"] is None:
        raise ValueError(f"trace {obj['id']} has no timestamp")
    return trace
