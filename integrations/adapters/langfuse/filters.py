"""Langfuse's JSON ``filter`` query parameter, built from an integration's trace filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from integrations.adapters.base import TraceFilters, format_time


def filter_json(lower: datetime, upper: datetime, filters: TraceFilters) -> list[dict[str, Any]]:
    conditions: list[dict[str, Any]] = [
        {"type": "datetime", "column": "startTime", "operator": ">=", "value": format_time(lower)},
        {"type": "datetime", "column": "startTime", "operator": "<", "value": format_time(upper)},
    ]
    if filters.names:
        conditions.append(
            {
                "type": "stringOptions",
                "column": "traceName",
                "operator": "any of",
                "value": list(filters.names),
            }
        )
    if filters.tags:
        conditions.append(
            {
                "type": "arrayOptions",
                "column": "tags",
                "operator": "all of",
                "value": list(filters.tags),
            }
        )
    if filters.environments:
        conditions.append(
            {
                "type": "stringOptions",
                "column": "environment",
                "operator": "any of",
                "value": list(filters.environments),
            }
        )
    return conditions


def trace_ids_filter(trace_ids: list[str]) -> list[dict[str, Any]]:
    """Return the filter that selects every row of these traces."""
    return [
        {"type": "stringOptions", "column": "traceId", "operator": "any of", "value": trace_ids}
    ]
