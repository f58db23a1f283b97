"""The scan: newest-first observation rows grouped into complete traces, and its cursor."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from integrations.adapters.base import AdapterError, TraceFilters, TracePage, parse_time
from integrations.adapters.langfuse.normalise import normalise_rows


class Scan:
    """Group observation rows (sorted by start time, newest first) into complete traces.

    Memory stays bounded by the traces still open at the scan position: a trace closes
    as soon as the scan has passed below its root's start time.
    """

    # Child spans from another machine can start a little before their root.
    SKEW = timedelta(seconds=1)
    DONE_PRUNE_AT = 50_000

    def __init__(
        self, *, filters: TraceFilters, max_ts: datetime | None, skip_above: datetime | None = None
    ) -> None:
        self.filters = filters
        # On resume: traces rooted above this were yielded whole before the cursor was
        # taken; re-reading only their lower rows must not yield truncated copies.
        self.skip_above = skip_above
        self.pending: dict[str, dict[str, Any]] = {}
        self.done: dict[str, datetime] = {}
        self.position: datetime | None = None
        self.max_ts = max_ts

    def add_rows(
        self, rows: list[dict[str, Any]], *, window_upper: datetime
    ) -> list[dict[str, Any]]:
        # Every row of a sync passes here: the scan's state is held in locals meanwhile,
        # and a trace's entry is made only for its first row.
        pending, done, position = self.pending, self.done, self.position
        for row in rows:
            trace_id = row.get("traceId")
            start = parse_time(row.get("startTime"))
            if not trace_id or start is None:
                continue
            if position is None or start < position:
                position = start
            if trace_id in done:
                continue  # re-read after a window split, or a child that started before its root
            entry = pending.get(trace_id)
            if entry is None:
                entry = pending[trace_id] = {"rows": {}, "anchor": None, "newest": start}
            entry["rows"][row["id"]] = row
            if start > entry["newest"]:
                entry["newest"] = start
            if row.get("parentObservationId") is None or row.get("isRootObservation"):
                anchor = entry["anchor"]
                entry["anchor"] = start if anchor is None or start < anchor else anchor
        self.position = position
        closed = [
            trace_id
            for trace_id, entry in self.pending.items()
            if entry["anchor"] is not None
            and self.position is not None
            and self.position < entry["anchor"] - self.SKEW
        ]
        if len(self.done) > self.DONE_PRUNE_AT:
            # Rows above the current window are never read again, so their traces can be forgotten.
            self.done = {k: v for k, v in self.done.items() if v <= window_upper}
        return self._close(closed)

    def finish(self) -> list[dict[str, Any]]:
        """Close every trace whose root was seen; orphans stay for a whole-trace fetch."""
        return self._close([k for k, v in self.pending.items() if v["anchor"] is not None])

    def take_orphans(self) -> list[str]:
        """Return and forget the open traces with no root row seen yet."""
        orphans = [k for k, v in self.pending.items() if v["anchor"] is None]
        for trace_id in orphans:
            del self.pending[trace_id]
        return orphans

    def complete_whole(
        self, rows_by_trace: dict[str, list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        traces = []
        for trace_id, rows in rows_by_trace.items():
            if trace_id in self.done:
                continue
            self.done[trace_id] = parse_time(
                min(r["startTime"] for r in rows if r.get("startTime"))
            )
            traces.append(normalise_rows(trace_id, rows))
        return self._keep(traces)

    def _close(self, trace_ids: Iterable[str]) -> list[dict[str, Any]]:
        traces = []
        for trace_id in trace_ids:
            entry = self.pending.pop(trace_id)
            self.done[trace_id] = entry["anchor"]
            if self.skip_above is not None and entry["anchor"] > self.skip_above:
                continue
            traces.append(normalise_rows(trace_id, list(entry["rows"].values())))
        return self._keep(traces)

    def _keep(self, traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Server-side filters already applied; this catches servers that ignore a filter and
        # traces fetched whole by id, which bypass them.
        kept = [t for t in traces if self.filters.matches(t)]
        for trace in kept:
            ts = parse_time(trace["timestamp"])
            if self.max_ts is None or ts > self.max_ts:
                self.max_ts = ts
        return kept

    def page(self, traces: list[dict[str, Any]], *, lower: datetime, until: datetime) -> TracePage:
        if self.pending:
            upper = max(e["newest"] for e in self.pending.values())
        else:
            upper = self.position or until
        # The bound is exclusive; one millisecond above re-reads rows that tie on start time.
        upper = min(upper + timedelta(milliseconds=1), until)
        # Every trace rooted above position + SKEW is closed at this point (see add_rows).
        skip_above = self.position + self.SKEW if self.position else self.skip_above
        cursor = encode_cursor(
            lower=lower, upper=upper, until=until, max_ts=self.max_ts, skip_above=skip_above
        )
        # The normaliser builds every trace to the schema (normalise.py): no check again.
        return TracePage(traces=traces, cursor=cursor, max_timestamp=self.max_ts, checked=True)


def encode_cursor(
    *,
    lower: datetime,
    upper: datetime,
    until: datetime,
    max_ts: datetime | None,
    skip_above: datetime | None,
) -> str:
    state = {
        "v": 1,
        "lower": lower.isoformat(),
        "upper": upper.isoformat(),
        "until": until.isoformat(),
    }
    state["max_ts"] = max_ts.isoformat() if max_ts else None
    state["skip_above"] = skip_above.isoformat() if skip_above else None
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        assert state["v"] == 1
        return {
            "lower": parse_time(state["lower"]),
            "upper": parse_time(state["upper"]),
            "until": parse_time(state["until"]),
            "max_ts": parse_time(state.get("max_ts")),
            "skip_above": parse_time(state.get("skip_above")),
        }
    except (ValueError, KeyError, TypeError, AssertionError):
        raise AdapterError(
            "The sync cursor is not valid; start a fresh sync.", permanent=True, code="bad_request"
        ) from None


def cursor_progress(cursor: str) -> float:
    """Return how much of the scanned time range a resume cursor has covered (0 to 0.99)."""
    try:
        state = decode_cursor(cursor)
    except AdapterError:
        return 0.0
    span = (state["until"] - state["lower"]).total_seconds()
    if span <= 0:
        return 0.0
    done = (state["until"] - state["upper"]).total_seconds() / span
    return round(min(max(done, 0.0), 0.99), 4)
