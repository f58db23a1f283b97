"""Adapter interface, its error type and the normalised-trace helpers every adapter shares."""

from __future__ import annotations

import email.utils
import functools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from iofold.lib import jsontext

STEP_TYPES = ("llm", "tool", "retriever", "agent", "chain", "span", "event")
# Nesting levels a trace may have, counted from the trace object itself. Real payloads
# (chat messages, tool schemas) stay well under it; far deeper ones only exhaust the
# stack of whatever walks them later (hashing, the trace page, evals).
MAX_TRACE_DEPTH = 64
# The longest trace id a row holds (``Trace.external_id``); a longer one is refused, not
# cut: two ids sharing their first characters would become one trace.
MAX_TRACE_ID = 255

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
    server_error, timeout, invalid_response, invalid_settings.
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
    platform: str = ""  # shown with the version: "Langfuse", "LangSmith"
    # The sentence shown after a successful check, when "Connected to project …" does not
    # fit the source (OpenAI has no project to name).
    summary: str = ""


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
        if self.since_date is None:
            return True
        # A trace without a time passes, to be refused on its own when it is prepared.
        started = parse_time(trace.get("timestamp"))
        return started is None or started >= as_utc(self.since_date)


@dataclass
class TracePage:
    """Complete normalised traces, a resume cursor and the newest trace time seen so far.

    ``traces`` may be given as a function that builds them from what was fetched: it runs
    once, when ``traces`` is first read. A sync reads it on its preparing thread, so the
    thread that waits on the source is already asking for the next page meanwhile.
    """

    traces: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]
    cursor: str | None
    max_timestamp: datetime | None
    # True when the adapter's normaliser built every trace to the schema that
    # ``validate_normalised_trace`` checks (types, unique step ids, known parents, step
    # types, parseable times) with every optional key filled in (as ``canonical_trace``
    # would), as its tests show for malformed runs: preparing the page skips the check
    # and the copy. The checks for an empty id or timestamp, unstorable text and nesting
    # still run. Traces from outside (JSONL, the API) are always validated.
    checked: bool = False


def _page_traces(page: TracePage) -> list[dict[str, Any]]:
    if callable(page._traces):
        page._traces = page._traces()
    return page._traces


def _set_page_traces(page: TracePage, traces: Any) -> None:
    page._traces = traces


# Past the dataclass's making, which keeps ``traces`` as its first argument.
TracePage.traces = property(_page_traces, _set_page_traces)  # type: ignore[assignment]


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
    # A verdict on a whole conversation: platforms with session scores (Langfuse) score
    # the session, others the conversation's last trace (``trace_id``).
    session_id: str | None = None
    environment: str | None = None
    timestamp: datetime | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class ScoreOut:
    """A judgement people gave a trace on the platform (a Langfuse score, LangSmith
    feedback); ``value`` is a bool, a number or a category name as the platform keeps it."""

    trace_id: str
    name: str
    value: Any
    comment: str = ""


@dataclass
class ScorePushResult:
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Capabilities:
    """What a source can do; the UI and the services ask this, never the kind."""

    pull: bool = False  # iofold reads traces from it (a sync)
    push_back: bool = False  # verdicts can be written back to it
    conversations: bool = False  # its traces carry a session or conversation id
    receive: bool = False  # it sends traces to an iofold endpoint
    read_scores: bool = False  # its scores or feedback can be read back as labels


@dataclass(frozen=True)
class SourceSettings:
    """Where a source is and how to reach it, as its adapter accepted them.

    ``public_key`` names the account or project where a platform has one (it is shown);
    ``secret_key`` is the credential (stored encrypted); ``options`` holds settings only
    this kind has (a LangSmith project, a workspace id), never credentials.
    """

    host: str
    public_key: str = ""
    secret_key: str = ""
    options: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """The contract every trace source meets: check, read, write back, say what it can.

    A sync knows nothing else of a source: it builds the adapter from the integration
    (``from_settings``), reads pages from the adapter's own opaque cursor (``fetch_traces``
    and ``cursor_progress``) and pushes verdicts (``push_scores``, idempotent by score id).
    ``clean_settings`` checks what a form or the API entered for this kind.
    """

    kind: str = ""
    label: str = ""
    capabilities: Capabilities = Capabilities()
    # Ends "… is not a URL; use <example_host>." when a host is mistyped.
    example_host: str = "a base URL such as https://example.com"
    # The host taken when none is entered (OpenAI's public API); empty: a host is required.
    default_host: str = ""
    # The keys this kind takes (others entered are dropped), and what to ask for when one of
    # them is empty; no message: they may be empty.
    keys: tuple[str, ...] = ("public_key", "secret_key")
    keys_missing: str = ""

    @classmethod
    def clean_settings(
        cls,
        *,
        host: str,
        public_key: str = "",
        secret_key: str = "",
        options: dict[str, Any] | None = None,
    ) -> SourceSettings:
        """Return the settings tidied up, or raise ``AdapterError`` (code ``invalid_settings``).

        The keys are checked first, then this kind's options (``clean_options``), then the host.
        """
        entered = {"public_key": public_key, "secret_key": secret_key}
        keys = {name: (entered[name] or "").strip() for name in cls.keys}
        if cls.keys_missing and not all(keys.values()):
            raise invalid_settings(cls.keys_missing)
        options = cls.clean_options(options or {})
        return SourceSettings(
            host=clean_base_url(host or cls.default_host, example=cls.example_host),
            options=options,
            **keys,
        )

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return the settings only this kind has tidied up, or raise ``invalid_settings``."""
        return dict(options)

    @classmethod
    def from_settings(cls, settings: SourceSettings, **tuning: Any) -> Adapter:
        """Return an adapter for these settings; ``tuning`` sets timeouts, retries, sleeps."""
        return cls(
            host=settings.host,
            public_key=settings.public_key,
            secret_key=settings.secret_key,
            **tuning,
        )

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
        """Yield pages of complete normalised traces; each page's cursor resumes after it.

        The sync runs this on a thread one page ahead of the page it writes: it talks to
        the source only, never to the database (whose connections are per thread).
        """
        raise NotImplementedError

    @staticmethod
    def cursor_progress(cursor: str) -> float:
        """Return the share (0 to 0.99) of a sync a resume cursor has covered; 0 if unknown."""
        return 0.0

    def fetch_scores(self, *, name: str, trace_ids: list[str]) -> list[ScoreOut]:
        """Return the scores named ``name`` on these traces (``capabilities.read_scores``)."""
        raise NotImplementedError

    def push_scores(self, scores: list[ScoreIn]) -> ScorePushResult:
        """Write verdicts back; a resend of the same score ids must change nothing."""
        raise NotImplementedError


def invalid_settings(message: str) -> AdapterError:
    """Return the error for settings a user entered that this kind of source cannot use."""
    return AdapterError(message, permanent=True, code="invalid_settings")


def clean_base_url(host: str, *, example: str) -> str:
    """Return ``host`` as a base URL without a trailing slash, or raise ``invalid_settings``."""
    host = (host or "").strip().rstrip("/")
    try:
        parts = urlsplit(host)
    except ValueError:  # an unclosed IPv6 bracket ("http://[::1")
        parts = None
    # urlsplit drops tabs and newlines (as browsers do); the stored host would keep them.
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or any(char.isspace() for char in host)
    ):
        raise invalid_settings(f"“{host or 'The host'}” is not a URL; use {example}.")
    return host


# --- normalised-trace helpers -------------------------------------------------------------


class TimeOutOfRange(ValueError):
    """A date-time that falls outside the years 1 to 9999 once in UTC."""


def time_problem(value: str) -> str | None:
    """Return what makes a time text unreadable ("is not an ISO-8601 date-time"), or None."""
    try:
        parse_time(value)
    except TimeOutOfRange:
        return "is outside the years 1 to 9999 in UTC"
    except ValueError:
        return "is not an ISO-8601 date-time"
    return None


def as_utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; naive values are taken as UTC.

    Raise ``ValueError``, as for any time that is no date, when the time falls outside
    the years 1 to 9999 in UTC (``0001-01-01T00:00:00+14:00``): ``astimezone`` raises
    ``OverflowError`` there, which no caller checking a source's times expects.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise TimeOutOfRange(f"{value.isoformat()} is outside the years 1 to 9999 in UTC") from None


def parse_time(value: str | datetime | None) -> datetime | None:
    """Parse an ISO-8601 timestamp (with `Z` or an offset) into an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str):  # a source's number or list in a time's place
        raise ValueError(f"{type(value).__name__} is not an ISO-8601 date-time")
    return _parse_iso(value)


# A trace's times are parsed several times on their way in (normalising, validating,
# storing, its latency): the recent ones are kept. Datetimes are immutable, so sharing
# them is safe; a string that is no date raises each time (errors are not cached).
@functools.lru_cache(maxsize=16_384)
def _parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    # Already UTC (as sources write times): as_utc would return it as is, a call later.
    return parsed if parsed.tzinfo is UTC else as_utc(parsed)


def format_time(value: datetime | None) -> str | None:
    """Format a datetime as ISO-8601 UTC with millisecond precision and `Z`."""
    if value is None:
        return None
    return _format_utc(as_utc(value))


@functools.lru_cache(maxsize=16_384)
def _format_utc(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# UTC to the second, millisecond or microsecond, as LangSmith and most APIs write times
# (a whole second without a fraction, as Python's isoformat does); naive is taken as UTC.
_UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?(?:Z|\+00:00)?")


def is_normal_shape(value: Any) -> bool:
    """Tell whether ``value`` is text shaped as traces store times: YYYY-MM-DDTHH:MM:SS.fffZ.

    Only the shape: the digits may still make no date (``normal_time`` checks that).
    """
    return (
        isinstance(value, str)
        and len(value) == 24
        and value[23] == "Z"
        # The separators at 4, 7, 10, 13, 16 and 19 in one slice: "YYYY-MM-DDTHH:MM:SS.".
        and value[4:20:3] == "--T::."
    )


def normal_time(value: str | datetime | None) -> str | None:
    """Return ``format_time(parse_time(value))``: a source's time as traces store it.

    The usual UTC text is cut (or padded) to milliseconds rather than parsed and formatted
    again (a fifth of the time, and a source sends a few of them per run);
    ``fromisoformat`` still refuses a date that does not exist, as ``parse_time`` does.
    """
    if is_normal_shape(value):
        # Already as traces store it (Langfuse writes every time so): the date is checked,
        # and it keeps its digits, all its other characters are the separators just seen.
        # The regex below costs twice as much as this test and the check together. The
        # check is ``parse_time``'s own (cached): a sync parses these times there anyway.
        _parse_iso(value)
        return value
    if isinstance(value, str) and (match := _UTC_TEXT.fullmatch(value)):
        datetime.fromisoformat(value)
        return f"{value[:23]}Z" if match.group(1) else f"{value[:19]}.000Z"
    return format_time(parse_time(value))


def finite_float(value: Any) -> float | None:
    """Return a number or its text as a float; None for anything else, NaN and infinities.

    JSON holds no NaN or infinity ("nan" and 1e400 parse as floats, and ``float()`` of an
    integer of 400 digits raises OverflowError): a trace holding one could not be stored
    at all. An unknown cost is no cost.
    """
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """Return the wait a ``Retry-After`` header asks for (seconds or an HTTP date), at least 0.

    None when there is none or it cannot be read (``soon``, ``nan``, ``inf``, a malformed
    date): a source's odd header means the caller's own backoff, never a crashed sync.
    """
    if not value:
        return None
    delay = finite_float(value)
    if delay is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (ValueError, TypeError, OverflowError):
            return None
        delay = (as_utc(when) - datetime.now(UTC)).total_seconds()
    return max(delay, 0.0)


def listed(value: Any) -> list[Any]:
    """Return a source's list as a list: one value in its place is a list of one."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None or value == "" or isinstance(value, dict) else [value]


def as_text(value: Any) -> str | None:
    """Return a name as text: a source's number or list in its place is written out."""
    return value if value is None or isinstance(value, str) else str(value)


def parse_io(value: Any) -> Any:
    """Decode a raw input/output string when it holds JSON, else return it unchanged."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "[", '"') or stripped in ("null", "true", "false"):
            try:
                # The values json.loads reads, mostly parsed by orjson (about twice as fast
                # on a sync's small inputs and outputs, a dozen a Langfuse trace).
                return jsontext.loads_as_json(stripped.encode())
            except (ValueError, RecursionError):  # a lone surrogate fails to encode
                return value
    return value


def trace_id_problem(trace_id: str) -> str | None:
    """Return why ``trace_id`` cannot identify a stored trace, None when it can."""
    if not trace_id.strip():
        return "field 'id' must not be empty"
    if len(trace_id.strip()) > MAX_TRACE_ID:
        return f"field 'id' is longer than {MAX_TRACE_ID} characters"
    return None


def validate_normalised_trace(trace: Any, *, check_text: bool = True) -> list[str]:
    """Return the problems that keep `trace` from being a normalised trace; empty when valid.

    ``check_text=False`` leaves out the walk for unstorable text and too deep nesting, for a
    caller that runs ``trace_text_problem`` itself on an encoding it needs anyway.
    """
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
    if isinstance(trace.get("id"), str) and (problem := trace_id_problem(trace["id"])):
        problems.append(problem)
    if isinstance(trace.get("timestamp"), str) and (problem := time_problem(trace["timestamp"])):
        problems.append(f"field 'timestamp' {problem}")
    for key in ("latency_ms", "cost"):
        if not _fits_a_float(trace.get(key)):
            problems.append(f"field {key!r} is not a finite number within ±1.8e308")
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
    if check_text and (problem := trace_text_problem(trace)):
        problems.append(problem)
    return problems


def _fits_a_float(value: Any) -> bool:
    """Tell whether a number can go in a float column (an integer of 400 digits cannot:
    ``float()`` raises ``OverflowError``); anything but a number is left to the type check."""
    if not isinstance(value, (int, float)):
        return True
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def trace_text_problem(trace: Any, *, encoded: str | None = None) -> str | None:
    """Return where a trace holds unstorable text or nests too deep, or None."""
    return jsontext.find_problem(trace, max_depth=MAX_TRACE_DEPTH, encoded=encoded)


_MISSING = object()
_REQUIRED_STEP_KEYS = frozenset(("id", "type", "name"))


def _validate_step(step: Any, known_ids: set[Any]) -> list[str]:
    # Every step of every trace comes here: each key is read once.
    if not isinstance(step, dict):
        return ["step must be a JSON object"]
    problems = []
    for key, types in STEP_KEYS.items():
        value = step.get(key, _MISSING)
        if value is _MISSING:
            if key in _REQUIRED_STEP_KEYS:
                problems.append(f"missing required field {key!r}")
        elif not isinstance(value, types):
            problems.append(f"field {key!r} has the wrong type ({type(value).__name__})")
    kind = step.get("type", _MISSING)
    if kind is not _MISSING and kind not in STEP_TYPES:
        problems.append(f"type {kind!r} is not one of {', '.join(STEP_TYPES)}")
    parent = step.get("parent_id")
    if isinstance(parent, str) and parent not in known_ids:
        problems.append(f"parent_id {parent!r} is not a step of this trace")
    usage = step.get("usage")
    if isinstance(usage, dict):
        for key in ("input", "output"):
            if not isinstance(usage.get(key), int) or isinstance(usage.get(key), bool):
                problems.append(f"usage.{key} must be an integer")
    for key in ("start_time", "end_time"):
        value = step.get(key)
        # An empty time is no time (parse_time).
        if isinstance(value, str) and value and (problem := time_problem(value)):
            problems.append(f"field {key!r} {problem}")
    return problems
