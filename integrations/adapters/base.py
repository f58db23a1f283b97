"""Adapter interface, its error type and the normalised-trace helpers every adapter shares."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iofold.lib import jsontext

STEP_TYPES = ("llm", "tool", "retriever", "agent", "chain", "span", "event")
# Nesting levels a trace may have, counted from the trace object itself. Real payloads
# (chat messages, tool schemas) stay well under it; far deeper ones only exhaust the
# stack of whatever walks them later (hashing, the trace page, evals).
MAX_TRACE_DEPTH = 64

TRACE_KEYS = {
    "id": (str,),
    "name": (str, type(None)),
    "timestamp": (str,),
    "steps": (list,),
    "metadata": (dict,),
    "tags": (list,),
    "user_id": (str, type(None)),
    "session_id": (str, type(None)),
    "latency_ms": (int, float, type(None)),
    "cost": (int, float, type(None)),
}
STEP_KEYS = {
    "id": (str,),
    "parent_id": (str, type(None)),
    "type": (str,),
    "name": (str,),
    "error": (str, type(None)),
    "model": (str, type(None)),
    "usage": (dict, type(None)),
    "start_time": (str, type(None)),
    "end_time": (str, type(None)),
    "metadata": (dict,),
}


class AdapterError(Exception):
    """A failure talking to a trace platform.

    `permanent` tells callers whether retrying can help (wrong keys, not a Langfuse URL)
    or not (rate limits, outages, timeouts). `code` is a stable machine-readable reason:
    auth, unreachable, not_langfuse, unsupported_version, bad_request, rate_limited,
    server_error, timeout, invalid_response.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ConnectionInfo:
    project_id: str
    project_name: str
    server_version: str | None = None


@dataclass(frozen=True)
class TraceFilters:
    """Per-integration selection of traces to sync; empty means everything."""

    names: Sequence[str] = ()  # trace name is any of these
    tags: Sequence[str] = ()  # trace carries all of these
    environments: Sequence[str] = ()  # trace environment is any of these
    since_date: datetime | None = None  # ignore traces that started earlier

    def matches(self, trace: dict[str, Any]) -> bool:
        """Return whether a normalised trace passes these filters."""
        if self.names and trace.get("name") not in self.names:
            return False
        if self.tags and not set(self.tags) <= set(trace.get("tags") or ()):
            return False
        if (
            self.environments
            and trace.get("metadata", {}).get("environment") not in self.environments
        ):
            return False
        return self.since_date is None or parse_time(trace["timestamp"]) >= as_utc(self.since_date)


@dataclass
class TracePage:
    """Complete normalised traces, a resume cursor and the newest trace time seen so far."""

    traces: list[dict[str, Any]]
    cursor: str | None
    max_timestamp: datetime | None


@dataclass(frozen=True)
class ScoreIn:
    """A boolean verdict to write back to the platform.

    `id` must be deterministic (for example derived from eval version and trace) so that a
    resend overwrites the earlier score. Langfuse also keys updates on `timestamp`, so pass
    a stable one when re-pushing.
    """

    id: str
    trace_id: str
    name: str
    value: bool
    comment: str | None = None
    observation_id: str | None = None
    environment: str | None = None
    timestamp: datetime | None = None
    metadata: dict[str, Any] | None = None


@dataclass
class ScorePushResult:
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


class Adapter:
    """Read traces from one platform and write scores back."""

    kind: str = ""

    def test_connection(self) -> ConnectionInfo:
        raise NotImplementedError

    def fetch_traces(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        filters: TraceFilters,
        cursor: str | None,
    ) -> Iterator[TracePage]:
        raise NotImplementedError

    @staticmethod
    def cursor_progress(cursor: str) -> float:
        """Return the share (0 to 0.99) of a sync a resume cursor has covered; 0 if unknown."""
        return 0.0

    def push_scores(self, scores: list[ScoreIn]) -> ScorePushResult:
        raise NotImplementedError


# --- normalised-trace helpers -------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; naive values are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(value: str | datetime | None) -> datetime | None:
    """Parse an ISO-8601 timestamp (with `Z` or an offset) into an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def format_time(value: datetime | None) -> str | None:
    """Format a datetime as ISO-8601 UTC with millisecond precision and `Z`."""
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_io(value: Any) -> Any:
    """Decode a raw input/output string when it holds JSON, else return it unchanged."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "[", '"') or stripped in ("null", "true", "false"):
            try:
                return json.loads(stripped)
            except (ValueError, RecursionError):
                return value
    return value


def validate_normalised_trace(trace: Any) -> list[str]:
    """Return the problems that keep `trace` from being a normalised trace; empty when valid."""
    if not isinstance(trace, dict):
        return ["trace must be a JSON object"]
    problems: list[str] = []
    for key, types in TRACE_KEYS.items():
        if key not in trace:
            if types[-1] is type(None) or key in ("metadata", "tags", "steps"):
                continue  # optional; defaults are filled in on import
            problems.append(f"missing required field {key!r}")
        elif not isinstance(trace[key], types) or isinstance(trace[key], bool):
            problems.append(f"field {key!r} has the wrong type ({type(trace[key]).__name__})")
    if isinstance(trace.get("id"), str) and not trace["id"].strip():
        problems.append("field 'id' must not be empty")
    if isinstance(trace.get("timestamp"), str):
        try:
            parse_time(trace["timestamp"])
        except ValueError:
            problems.append("field 'timestamp' is not an ISO-8601 date-time")
    if isinstance(trace.get("tags"), list) and not all(isinstance(t, str) for t in trace["tags"]):
        problems.append("field 'tags' must be a list of strings")
    steps = trace.get("steps")
    if isinstance(steps, list):
        # Ids of the wrong type (a list, an object) are reported per step, not hashed here.
        ids = [s.get("id") for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)]
        known = set(ids)
        if len(known) != len(ids):
            problems.append("step ids must be unique")
        for index, step in enumerate(steps):
            problems.extend(f"steps[{index}]: {p}" for p in _validate_step(step, known))
    # Sync pages and Langfuse exports reach here without passing a request parser.
    if problem := jsontext.find_problem(trace, max_depth=MAX_TRACE_DEPTH):
        problems.append(problem)
    return problems


def _validate_step(step: Any, known_ids: set[Any]) -> list[str]:
    if not isinstance(step, dict):
        return ["step must be a JSON object"]
    problems = []
    for key, types in STEP_KEYS.items():
        if key not in step:
            if key in ("id", "type", "name"):
                problems.append(f"missing required field {key!r}")
        elif not isinstance(step[key], types):
            problems.append(f"field {key!r} has the wrong type ({type(step[key]).__name__})")
    if step.get("type") not in STEP_TYPES and "type" in step:
        problems.append(f"type {step.get('type')!r} is not one of {', '.join(STEP_TYPES)}")
    parent = step.get("parent_id")
    if isinstance(parent, str) and parent not in known_ids:
        problems.append(f"parent_id {parent!r} is not a step of this trace")
    usage = step.get("usage")
    if isinstance(usage, dict):
        for key in ("input", "output"):
            if not isinstance(usage.get(key), int) or isinstance(usage.get(key), bool):
                problems.append(f"usage.{key} must be an integer")
    for key in ("start_time", "end_time"):
        if isinstance(step.get(key), str):
            try:
                parse_time(step[key])
            except ValueError:
                problems.append(f"field {key!r} is not an ISO-8601 date-time")
    return problems
