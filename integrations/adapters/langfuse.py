"""Langfuse adapter: read traces as v2 observation rows through the SDK, push boolean scores.

SDK 5.x has no trace-list call. Traces are rebuilt from `GET /api/public/v2/observations`
rows (newest first, cursor pages of up to 1,000 rows) grouped by trace id. Cloud's Hobby
plan allows 30 such requests a minute, so the scan uses the biggest pages and windows the
server accepts and retries politely. See shared/langfuse/CONTRACT.md.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import hashlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pydantic
from django.conf import settings
from langfuse._version import __version__ as SDK_VERSION
from langfuse.api import LangfuseAPI
from langfuse.api.core import ApiError
from langfuse.api.core.datetime_utils import serialize_datetime
from langfuse.api.core.jsonable_encoder import jsonable_encoder

from integrations.adapters.base import (
    Adapter,
    AdapterError,
    ConnectionInfo,
    ScoreIn,
    ScorePushResult,
    TraceFilters,
    TracePage,
    as_utc,
    format_time,
    parse_io,
    parse_time,
)
from iofold.lib import outbound

logger = logging.getLogger(__name__)

FIELDS = "core,basic,time,io,metadata,model,usage,trace_context"
PAGE_LIMIT = 1000  # the server's maximum; fewer requests matter more than smaller replies
SCORE_BATCH = 100
SCORE_BATCH_BYTES = 900_000  # under the 1 MiB body limit of the scores route
ID_BATCH = 100  # trace ids per "fetch these traces whole" request

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

_clients: dict[tuple[str, str, str, str], LangfuseAPI] = {}
_clients_lock = threading.Lock()


def get_client(*, host: str, public_key: str, secret_key: str, timeout: float) -> LangfuseAPI:
    """Return the cached SDK API client for this host and key pair."""
    # The secret's hash is part of the key so a rotated secret gets a fresh client, the
    # proxy so that a changed proxy setting does.
    key = (
        host,
        public_key,
        hashlib.sha256(secret_key.encode()).hexdigest(),
        settings.IOFOLD_OUTBOUND_PROXY,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = LangfuseAPI(
                base_url=host,
                username=public_key,
                password=secret_key,
                x_langfuse_sdk_name="python",
                x_langfuse_sdk_version=SDK_VERSION,
                x_langfuse_public_key=public_key,
                timeout=timeout,
                # The host is the workspace's choice: connect only where it may point.
                httpx_client=httpx.Client(
                    transport=outbound.guarded_transport(httpx),
                    timeout=timeout,
                    follow_redirects=True,  # as the SDK's own client
                ),
            )
            _clients[key] = client
        return client


def _json_reply(response: httpx.Response) -> Any:
    """Return a Langfuse reply's JSON, or raise the ApiError the SDK would for it."""
    try:
        body = response.json()
    except ValueError:
        raise ApiError(
            status_code=response.status_code, headers=dict(response.headers), body=response.text
        ) from None
    if not 200 <= response.status_code < 300:
        raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=body)
    return body


class _WindowTooHeavy(Exception):
    """The server timed out on the query (HTTP 422); a narrower time range may pass."""


class LangfuseAdapter(Adapter):
    kind = "langfuse"

    def __init__(
        self,
        *,
        host: str,
        public_key: str,
        secret_key: str,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 4,
        max_delay: float = 60.0,
        overlap: timedelta = timedelta(minutes=15),
        window: timedelta = timedelta(days=7),
        initial_lookback: timedelta = timedelta(days=30),
        page_limit: int = PAGE_LIMIT,
        max_pending_traces: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = (host or "").strip().rstrip("/")
        self.public_key = public_key
        self._secret_key = secret_key
        self.timeout = timeout
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.max_delay = max_delay
        # Langfuse can make rows readable up to ~10 minutes after their start time, so
        # each incremental sync re-reads a margin before the watermark.
        self.overlap = overlap
        self.window = window
        self.initial_lookback = initial_lookback
        self.page_limit = page_limit
        self.max_pending_traces = max_pending_traces
        self.clock = clock
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"<LangfuseAdapter host={self.host} public_key={self.public_key}>"

    @property
    def client(self) -> LangfuseAPI:
        return get_client(
            host=self.host,
            public_key=self.public_key,
            secret_key=self._secret_key,
            timeout=self.timeout,
        )

    # --- connection check -------------------------------------------------------------------

    def test_connection(self) -> ConnectionInfo:
        """Check the host is Langfuse and the keys open a project; return that project."""
        if not re.match(r"^https?://[^/\s]+", self.host):
            raise AdapterError(
                f"{self.host or 'The host'} is not a valid URL; use e.g. https://cloud.langfuse.com",
                permanent=True,
                code="not_langfuse",
            )
        health = self._call(
            lambda opts: self.client.health.health(request_options=opts),
            what="health check",
            network_retries=False,
        )
        projects = self._call(
            lambda opts: self.client.projects.get(request_options=opts), what="project lookup"
        )
        if not projects.data:
            raise AdapterError(
                "The API keys are valid but no project belongs to them; use a project's keys, "
                "not an organization's.",
                permanent=True,
                code="auth",
            )
        project = projects.data[0]
        return ConnectionInfo(
            project_id=project.id, project_name=project.name, server_version=health.version
        )

    # --- reading traces --------------------------------------------------------------------

    def fetch_traces(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        filters: TraceFilters,
        cursor: str | None,
    ) -> Iterator[TracePage]:
        """Yield pages of complete normalised traces, newest first, with a resume cursor.

        The scan walks `[since - overlap, until)` downwards in time windows. A trace is
        yielded only once every row of it has been read: after its root row and every row
        that started later. Traces whose root lies before the range (long or late-updated
        traces) are fetched whole by id at the end. `max_timestamp` is the newest trace
        timestamp seen, a safe watermark for the next sync once the scan has finished.
        """
        if cursor:
            state = _decode_cursor(cursor)
            lower, upper, until_at = state["lower"], state["upper"], state["until"]
            max_ts, skip_above = state["max_ts"], state["skip_above"]
        else:
            until_at = as_utc(until) if until else self.clock()
            lower = as_utc(since) - self.overlap if since else until_at - self.initial_lookback
            if filters.since_date is not None:
                lower = max(lower, as_utc(filters.since_date))
            upper, max_ts, skip_above = until_at, None, None
        scan = _Scan(filters=filters, max_ts=max_ts, skip_above=skip_above)
        windows = [(max(lower, upper - self.window), upper)] if upper > lower else []
        while windows:
            w_lower, w_upper = windows.pop()
            try:
                for rows in self._pages(w_lower, w_upper, filters):
                    traces = scan.add_rows(rows, window_upper=w_upper)
                    if len(scan.pending) > self.max_pending_traces:
                        traces += self._fetch_whole(scan, scan.take_orphans())
                    yield scan.page(traces, lower=lower, until=until_at)
            except _WindowTooHeavy:
                if w_upper - w_lower <= timedelta(minutes=1):
                    raise AdapterError(
                        "Langfuse timed out even on a one-minute window of observations; "
                        "try again later.",
                        permanent=False,
                        code="server_error",
                    ) from None
                middle = w_lower + (w_upper - w_lower) / 2
                windows += [(w_lower, middle), (middle, w_upper)]  # upper half is popped first
                continue
            if not windows and w_lower > lower:
                windows.append((max(lower, w_lower - self.window), w_lower))
        traces = scan.finish()
        traces += self._fetch_whole(scan, scan.take_orphans())
        page = scan.page(traces, lower=lower, until=until_at)
        page.cursor = None
        yield page

    def _pages(
        self, lower: datetime, upper: datetime, filters: TraceFilters
    ) -> Iterator[list[dict[str, Any]]]:
        query: dict[str, Any] = {"from_start_time": lower, "to_start_time": upper}
        if filters.names or filters.tags:
            # Trace name and tags have no plain query parameter, and `filter` overrides all
            # plain parameters, so everything moves into the filter then.
            query = {"filter": json.dumps(_filter_json(lower, upper, filters))}
        elif filters.environments:
            query["environment"] = list(filters.environments)
        yield from self._paged(query, heavy_is_error=False)

    def _paged(
        self, query: dict[str, Any], *, heavy_is_error: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        api_cursor = None
        while True:
            body = self._call(
                lambda opts, c=api_cursor: self._get_observations(opts, cursor=c, **query),
                what="observations read",
                heavy_is_error=heavy_is_error,
            )
            yield body["data"]
            api_cursor = body["meta"].get("cursor")
            if not api_cursor or not body["data"]:
                return

    def _get_observations(self, options: dict[str, Any], **query: Any) -> dict[str, Any]:
        """Read one page of v2 observation rows as wire dicts.

        This is `observations.get_many` minus its model building: the request goes through
        the SDK's own HTTP client (auth, headers, base URL, query encoding, timeouts), but
        SDK 5.0.4 spends about 4 ms per row turning the reply into pydantic models, which
        would make a 50,000-row sync CPU-bound for minutes. Errors map to the same
        exceptions the SDK raises.
        """
        params = {
            "fields": FIELDS,
            "limit": self.page_limit,
            "cursor": query.get("cursor"),
            "environment": query.get("environment"),
            "filter": query.get("filter"),
            "fromStartTime": serialize_datetime(query["from_start_time"])
            if query.get("from_start_time")
            else None,
            "toStartTime": serialize_datetime(query["to_start_time"])
            if query.get("to_start_time")
            else None,
        }
        http = self.client.observations._raw_client._client_wrapper.httpx_client
        response = http.request(
            "api/public/v2/observations", method="GET", params=params, request_options=options
        )
        body = _json_reply(response)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("data"), list)
            or not all(isinstance(r, dict) and "id" in r and "startTime" in r for r in body["data"])
        ):
            raise ValueError("not an observations page")
        if not isinstance(body.get("meta"), dict):
            body["meta"] = {}
        return body

    def _fetch_whole(self, scan: _Scan, trace_ids: list[str]) -> list[dict[str, Any]]:
        traces: list[dict[str, Any]] = []
        for start in range(0, len(trace_ids), ID_BATCH):
            ids = trace_ids[start : start + ID_BATCH]
            rows_by_trace: dict[str, list[dict[str, Any]]] = {}
            query = {
                "filter": json.dumps(
                    [
                        {
                            "type": "stringOptions",
                            "column": "traceId",
                            "operator": "any of",
                            "value": ids,
                        }
                    ]
                )
            }
            for rows in self._paged(query):
                for row in rows:
                    rows_by_trace.setdefault(row["traceId"], []).append(row)
            traces += scan.complete_whole(rows_by_trace)
        return traces

    # --- writing scores --------------------------------------------------------------------

    def push_scores(self, scores: list[ScoreIn]) -> ScorePushResult:
        """Write boolean scores and report how many Langfuse accepted.

        Scores carry their own deterministic id, so resending after an error overwrites
        instead of duplicating.
        """
        result = ScorePushResult()
        for count, body in _score_batches(scores):
            reply = self._call(
                lambda opts, b=body: self._post_scores(opts, body=b), what="score push"
            )
            if reply is None:
                result.accepted += count
            else:
                result.accepted += reply.accepted
                result.rejected += reply.rejected
                result.errors += reply.errors
        if result.rejected:
            logger.warning(
                "langfuse scores rejected host=%s rejected=%d", self.host, result.rejected
            )
        return result

    def _post_scores(self, options: dict[str, Any], *, body: bytes) -> ScorePushResult | None:
        """POST one encoded score batch; return the 207 counts, or None when all were accepted.

        This is `scores.create` minus its model round trips: the request goes through the
        SDK's own HTTP client (auth, headers, base URL, timeouts), but SDK 5.0.4 spends about
        half a millisecond per score converting typed requests it is handed, and the batch
        is already JSON here. Errors map to the same exceptions the SDK raises.
        """
        http = self.client.scores._raw_client._client_wrapper.httpx_client
        response = http.request(
            "api/public/scores",
            method="POST",
            content=body,
            headers={"Content-Type": "application/json"},
            request_options=options,
        )
        reply = _json_reply(response)
        if not isinstance(reply, dict):
            raise ValueError("not a score batch reply")
        if response.status_code != 207 and "accepted" not in reply:
            return None  # 202 {"message": "Accepted"}: the whole batch went in
        accepted, rejected = reply.get("accepted"), reply.get("rejected")
        errors = reply.get("errors")
        if (
            not isinstance(accepted, int)
            or not isinstance(rejected, int)
            or not isinstance(errors, list)
            or not all(isinstance(e, dict) and isinstance(e.get("message"), str) for e in errors)
        ):
            raise ValueError("not a score batch result")
        return ScorePushResult(
            accepted=accepted, rejected=rejected, errors=[e["message"] for e in errors]
        )

    # --- one SDK call with the retry policy ------------------------------------------------

    def _call(
        self,
        fn: Callable[[dict[str, Any]], Any],
        *,
        what: str,
        network_retries: bool = True,
        heavy_is_error: bool = True,
    ) -> Any:
        # The SDK's own retries sleep with time.sleep and ignore the attempt budget; they are
        # switched off so this loop alone decides (and tests can inject the sleep).
        options = {"max_retries": 0, "timeout_in_seconds": self.timeout}
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                self.requests_made += 1
                return fn(options)
            except ApiError as exc:
                status = exc.status_code or 0
                if 200 <= status < 300:  # a 2xx whose body is not JSON: an HTML page, say
                    raise self._client_error(exc, what=what) from None
                if status == 429:
                    delay = self._retry_after(exc) or self._backoff(attempt)
                    if last:
                        raise AdapterError(
                            f"Langfuse rate limit reached during the {what}; "
                            f"retry in {delay:.0f}s. "
                            "The Hobby plan allows 30 read requests a minute.",
                            permanent=False,
                            code="rate_limited",
                            retry_after=delay,
                        ) from None
                    logger.info("langfuse rate limited host=%s delay=%.1f", self.host, delay)
                    self.sleep(delay)
                    continue
                if status >= 500 or status == 408:
                    if last:
                        raise AdapterError(
                            f"Langfuse answered HTTP {status} to the {what} "
                            f"{self.max_attempts} times; "
                            "it may be down, try again later.",
                            permanent=False,
                            code="server_error",
                        ) from None
                    self.sleep(self._backoff(attempt))
                    continue
                if status == 422 and not heavy_is_error:
                    raise _WindowTooHeavy() from None
                raise self._client_error(exc, what=what) from None
            except httpx.TimeoutException:
                if last or not network_retries:
                    raise AdapterError(
                        f"{self.host} did not answer the {what} within {self.timeout:g}s.",
                        permanent=False,
                        code="timeout",
                    ) from None
                self.sleep(self._backoff(attempt))
            except httpx.TransportError as exc:
                refused = outbound.refusal_behind(exc)
                if refused is not None:
                    raise AdapterError(
                        f"Could not reach {self.host}: {refused.message}",
                        permanent=True,
                        code="unreachable",
                    ) from None
                if last or not network_retries:
                    raise AdapterError(
                        self._unreachable_message(exc), permanent=False, code="unreachable"
                    ) from None
                self.sleep(self._backoff(attempt))
            except (pydantic.ValidationError, ValueError, TypeError):
                raise AdapterError(
                    f"{self.host} answered the {what} with data that is not Langfuse's; "
                    "check the host is a Langfuse server (e.g. https://cloud.langfuse.com).",
                    permanent=True,
                    code="not_langfuse",
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _client_error(self, exc: ApiError, *, what: str) -> AdapterError:
        status = exc.status_code or 0
        body = exc.body
        server_message = self._scrub(str(body.get("message", ""))) if isinstance(body, dict) else ""
        detail = f" Langfuse said: {server_message}" if server_message else ""
        if not isinstance(body, (dict, list)) and status != 401:
            kind = (
                "HTML"
                if isinstance(body, str) and "<html" in body.lower()
                else f"HTTP {status} without JSON"
            )
            return AdapterError(
                f"{self.host} does not look like a Langfuse server: the {what} got {kind}. "
                "Use the base URL of your Langfuse instance, e.g. https://cloud.langfuse.com.",
                permanent=True,
                code="not_langfuse",
            )
        if status == 401:
            return AdapterError(
                f"Langfuse rejected the API keys (HTTP 401) for public key {self.public_key} "
                f"on {self.host}; "
                "check the public and secret key and that they belong to this host's region.",
                permanent=True,
                code="auth",
            )
        if status == 403:
            return AdapterError(
                f"Langfuse denied access (HTTP 403) for public key {self.public_key}; "
                f"use a project's API keys, not an organization's.{detail}",
                permanent=True,
                code="auth",
            )
        if status == 404:
            return AdapterError(
                f"{self.host} has no {what} endpoint (HTTP 404): iofold needs Langfuse Cloud or "
                f"self-hosted Langfuse 4.59 or later.{detail}",
                permanent=True,
                code="unsupported_version",
            )
        if status == 400 and what == "score push":
            return AdapterError(
                "Langfuse refused the score batch (HTTP 400); "
                f"batch scores need Langfuse 4.59 or later.{detail}",
                permanent=True,
                code="bad_request",
            )
        return AdapterError(
            f"Langfuse refused the {what} (HTTP {status}).{detail}",
            permanent=True,
            code="bad_request",
        )

    def _unreachable_message(self, exc: Exception) -> str:
        cause = exc.__cause__ or exc.__context__
        text = str(exc).lower()
        if (
            isinstance(cause, socket.gaierror)
            or "name or service not known" in text
            or "nodename" in text
        ):
            reason = "the host name could not be resolved"
        elif "refused" in text:
            reason = "the connection was refused"
        else:
            reason = self._scrub(str(exc)).rstrip(".") or type(exc).__name__
        return (
            f"Could not reach {self.host}: {reason}. Check the URL and that the server is running."
        )

    def _retry_after(self, exc: ApiError) -> float | None:
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        value = headers.get("retry-after")
        delay: float | None = None
        if value:
            try:
                delay = float(value)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(value) if value else None
                if parsed is not None:
                    delay = (as_utc(parsed) - datetime.now(UTC)).total_seconds()
        if delay is None and isinstance(exc.body, dict):
            details = exc.body.get("details")
            if isinstance(details, dict) and isinstance(
                details.get("retryAfterSeconds"), (int, float)
            ):
                delay = float(details["retryAfterSeconds"])
        if delay is None:
            return None
        return min(max(delay, 0.0), self.max_delay)

    def _backoff(self, attempt: int) -> float:
        return min(2.0 ** (attempt - 1), self.max_delay)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret_key, "***") if self._secret_key else text


# --- the scan: grouping newest-first rows into complete traces ---------------------------------


class _Scan:
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
        for row in rows:
            trace_id = row.get("traceId")
            start = parse_time(row.get("startTime"))
            if not trace_id or start is None:
                continue
            self.position = start if self.position is None else min(self.position, start)
            if trace_id in self.done:
                continue  # re-read after a window split, or a child that started before its root
            entry = self.pending.setdefault(trace_id, {"rows": {}, "anchor": None, "newest": start})
            entry["rows"][row["id"]] = row
            entry["newest"] = max(entry["newest"], start)
            if row.get("parentObservationId") is None or row.get("isRootObservation"):
                entry["anchor"] = start if entry["anchor"] is None else min(entry["anchor"], start)
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
        cursor = _encode_cursor(
            lower=lower, upper=upper, until=until, max_ts=self.max_ts, skip_above=skip_above
        )
        return TracePage(traces=traces, cursor=cursor, max_timestamp=self.max_ts)


def _encode_cursor(
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


def _decode_cursor(cursor: str) -> dict[str, Any]:
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


def _filter_json(lower: datetime, upper: datetime, filters: TraceFilters) -> list[dict[str, Any]]:
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


def _score_batches(scores: list[ScoreIn]) -> Iterator[tuple[int, bytes]]:
    """Yield (score count, JSON array body) batches of at most SCORE_BATCH scores and bytes."""
    parts: list[bytes] = []
    size = 2  # the array's brackets
    for score in scores:
        item = {
            "id": score.id,
            "traceId": score.trace_id,
            "observationId": score.observation_id,
            "name": score.name,
            "value": 1.0 if score.value else 0.0,
            "dataType": "BOOLEAN",
            "comment": score.comment,
            "environment": score.environment,
            "metadata": score.metadata,
            "timestamp": serialize_datetime(as_utc(score.timestamp)) if score.timestamp else None,
        }
        # Each score is encoded once: the bytes that measure the batch are the bytes sent.
        # Metadata values JSON cannot encode (dates, UUIDs, ...) go the way the SDK sends them.
        part = json.dumps(
            {k: v for k, v in item.items() if v is not None},
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
            default=jsonable_encoder,
        ).encode()
        if parts and (len(parts) >= SCORE_BATCH or size + len(part) + 1 > SCORE_BATCH_BYTES):
            yield len(parts), b"[" + b",".join(parts) + b"]"
            parts, size = [], 2
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield len(parts), b"[" + b",".join(parts) + b"]"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_CAMEL: dict[str, str] = {}


def _wire_row(obs: Any) -> dict[str, Any]:
    """Return an SDK ObservationV2 as a dict with the wire's camelCase keys."""
    # Fern aliases are not pydantic aliases, so model_dump(by_alias=True) keeps snake_case.
    row: dict[str, Any] = {}
    for key, value in obs.__dict__.items():
        name = _CAMEL.get(key) or _CAMEL.setdefault(key, _camel(key))
        row[name] = value.value if isinstance(value, enum.Enum) else value
    row.update(obs.model_extra or {})
    return row


# --- normalisation ---------------------------------------------------------------------------


def _str_or_none(value: Any) -> str | None:
    # ClickHouse stores defaults, not nulls: "" means absent.
    return value if isinstance(value, str) and value else None


def _step_error(obs: dict[str, Any]) -> str | None:
    message = _str_or_none(obs.get("statusMessage"))
    if obs.get("level") == "ERROR":
        return message or "error"
    if message and obs.get("level") != "WARNING" and ERROR_WORDS.search(message):
        return message
    return None


def _usage(obs: dict[str, Any]) -> dict[str, int] | None:
    details = obs.get("usageDetails") or obs.get("usage") or {}
    if not isinstance(details, dict):
        details = {}
    found_in = next(
        (details[k] for k in ("input", "prompt_tokens", "input_tokens") if k in details), None
    )
    found_out = next(
        (details[k] for k in ("output", "completion_tokens", "output_tokens") if k in details), None
    )
    if found_in is None and obs.get("promptTokens") is not None:
        found_in, found_out = obs.get("promptTokens"), obs.get("completionTokens")
    if found_in is None and found_out is None:
        return None
    return {"input": int(found_in or 0), "output": int(found_out or 0)}


def _cost(obs: dict[str, Any]) -> float | None:
    for key in ("totalCost", "calculatedTotalCost"):
        if isinstance(obs.get(key), (int, float)):
            return float(obs[key])
    details = obs.get("costDetails")
    if isinstance(details, dict) and isinstance(details.get("total"), (int, float)):
        return float(details["total"])
    return None


def normalise_observation(obs: dict[str, Any], *, known_ids: set[str]) -> dict[str, Any]:
    """Turn one Langfuse observation (v2 row or v1 object, wire key names) into a step."""
    langfuse_type = str(obs.get("type") or "SPAN").upper()
    parent = _str_or_none(obs.get("parentObservationId"))
    metadata = obs.get("metadata")
    metadata = (
        dict(metadata)
        if isinstance(metadata, dict)
        else ({} if metadata is None else {"value": metadata})
    )
    metadata["langfuse_type"] = langfuse_type
    if obs.get("level"):
        metadata["langfuse_level"] = obs["level"]
    cost = _cost(obs)
    if cost:
        metadata["cost"] = cost
    return {
        "id": str(obs["id"]),
        "parent_id": parent if parent in known_ids else None,
        "type": TYPE_MAP.get(langfuse_type, "span"),
        "name": obs.get("name") or langfuse_type.lower(),
        "input": parse_io(obs.get("input")),
        "output": parse_io(obs.get("output")),
        "error": _step_error(obs),
        "model": _str_or_none(obs.get("model")) or _str_or_none(obs.get("providedModelName")),
        "usage": _usage(obs),
        "start_time": format_time(parse_time(obs.get("startTime"))),
        "end_time": format_time(parse_time(obs.get("endTime"))),
        "metadata": metadata,
    }


def _root_of(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    for predicate in (
        lambda r: not r.get("parentObservationId"),
        lambda r: r.get("isRootObservation"),
    ):
        roots = [r for r in rows if predicate(r)]
        if roots:
            return roots[0]
    return rows[0] if rows else None


def normalise_rows(
    trace_id: str, rows: list[dict[str, Any]], *, header: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build a normalised trace from its observations; `header` is a v1 trace object, if any."""
    rows = sorted(
        rows,
        key=lambda r: (
            parse_time(r.get("startTime")) or datetime.min.replace(tzinfo=UTC),
            str(r["id"]),
        ),
    )
    known = {str(r["id"]) for r in rows}
    steps = [normalise_observation(r, known_ids=known) for r in rows]
    root = _root_of(rows) or {}
    source = header or root

    def first(key: str) -> Any:
        for candidate in [source, root, *rows]:
            value = candidate.get(key)
            if value not in (None, "", [], {}):
                return value
        return None

    starts = [parse_time(r.get("startTime")) for r in rows if r.get("startTime")]
    ends = [parse_time(r.get("endTime")) for r in rows if r.get("endTime")]
    if (
        header is not None
        and isinstance(header.get("latency"), (int, float))
        and header["latency"] >= 0
    ):
        latency_ms: float | None = float(header["latency"]) * 1000
    elif starts and ends:
        latency_ms = max(0.0, (max(ends) - min(starts)).total_seconds() * 1000)
    else:
        latency_ms = None
    costs = [c for c in (_cost(r) for r in rows) if c is not None]
    if (
        header is not None
        and isinstance(header.get("totalCost"), (int, float))
        and header["totalCost"] >= 0
    ):
        cost: float | None = float(header["totalCost"])
    else:
        cost = round(sum(costs), 10) if costs else None

    timestamp = parse_time(source.get("timestamp") or root.get("startTime")) or (
        min(starts) if starts else None
    )
    metadata = source.get("metadata") if isinstance(source.get("metadata"), dict) else {}
    metadata = dict(metadata)
    for key in ("environment", "release", "version"):
        value = first(key)
        if value is not None and key not in metadata:
            metadata[key] = value
    return {
        "id": trace_id,
        "name": (header or {}).get("name") or first("traceName") or root.get("name"),
        "timestamp": format_time(timestamp) if timestamp else None,
        "input": parse_io(source.get("input")),
        "output": parse_io(source.get("output")),
        "steps": steps,
        "metadata": metadata,
        "tags": list(first("tags") or []),
        "user_id": _str_or_none(first("userId")),
        "session_id": _str_or_none(first("sessionId")),
        "latency_ms": latency_ms,
        "cost": cost,
    }


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
