"""The Langfuse adapter: the scan that reads traces, the connection check and score pushes.

SDK 5.x has no trace-list call. Traces are rebuilt from `GET /api/public/v2/observations`
rows (newest first, cursor pages of up to 1,000 rows) grouped by trace id. Cloud's Hobby
plan allows 30 such requests a minute, so the scan uses the biggest pages and windows the
server accepts and retries politely. See shared/langfuse/CONTRACT.md.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.adapters.base import (
    Adapter,
    AdapterError,
    Capabilities,
    ConnectionInfo,
    ScoreIn,
    ScoreOut,
    ScorePushResult,
    TraceFilters,
    TracePage,
    as_utc,
)
from integrations.adapters.langfuse.filters import filter_json, trace_ids_filter
from integrations.adapters.langfuse.scan import Scan, cursor_progress, decode_cursor
from integrations.adapters.langfuse.scores import score_batches
from integrations.adapters.langfuse.transport import PAGE_LIMIT, LangfuseTransport, WindowTooHeavy
from iofold.lib.prefetch import prefetched

logger = logging.getLogger(__name__)

SCORE_ID_BATCH = 50  # trace ids per scores read
ID_BATCH = 100  # trace ids per "fetch these traces whole" request


class LangfuseAdapter(LangfuseTransport, Adapter):
    kind = "langfuse"
    label = "Langfuse"
    capabilities = Capabilities(pull=True, push_back=True, conversations=True, read_scores=True)
    example_host = (
        "https://cloud.langfuse.com, https://us.cloud.langfuse.com or your instance's "
        "address such as http://langfuse:3000"
    )

    keys_missing = "Enter both the public key and the secret key."

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return no options: Langfuse has no settings beyond the host and both project keys."""
        return {}

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

    @staticmethod
    def cursor_progress(cursor: str) -> float:
        """Return how much of the scanned time range a resume cursor has covered."""
        return cursor_progress(cursor)

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
            project_id=project.id,
            project_name=project.name,
            server_version=health.version,
            platform=self.label,
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
            state = decode_cursor(cursor)
            lower, upper, until_at = state["lower"], state["upper"], state["until"]
            max_ts, skip_above = state["max_ts"], state["skip_above"]
        else:
            until_at = as_utc(until) if until else self.clock()
            lower = as_utc(since) - self.overlap if since else until_at - self.initial_lookback
            if filters.since_date is not None:
                lower = max(lower, as_utc(filters.since_date))
            upper, max_ts, skip_above = until_at, None, None
        scan = Scan(filters=filters, max_ts=max_ts, skip_above=skip_above)
        windows = [(max(lower, upper - self.window), upper)] if upper > lower else []
        last_rows_traces: list[dict[str, Any]] = []
        while windows:
            w_lower, w_upper = windows.pop()
            # The window's next page is read on a thread while this one's rows are grouped
            # and normalised: the server builds it meanwhile, instead of after.
            pages = prefetched(self._pages(w_lower, w_upper, filters), name="langfuse-pages")
            try:
                with pages:
                    for rows, more in pages:
                        traces = scan.add_rows(rows, window_upper=w_upper)
                        if len(scan.pending) > self.max_pending_traces:
                            traces += self._fetch_whole(scan, scan.take_orphans())
                        if not more and not windows and w_lower <= lower:
                            # The scan's last rows: the page that ends the scan (below) takes
                            # their traces too, one transaction for the sync instead of two.
                            last_rows_traces = traces
                            break
                        yield scan.page(traces, lower=lower, until=until_at)
            except WindowTooHeavy:
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
        traces = last_rows_traces + scan.finish()
        traces += self._fetch_whole(scan, scan.take_orphans())
        page = scan.page(traces, lower=lower, until=until_at)
        page.cursor = None
        yield page

    def _pages(
        self, lower: datetime, upper: datetime, filters: TraceFilters
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        query: dict[str, Any] = {"from_start_time": lower, "to_start_time": upper}
        if filters.names or filters.tags:
            # Trace name and tags have no plain query parameter, and `filter` overrides all
            # plain parameters, so everything moves into the filter then.
            query = {"filter": json.dumps(filter_json(lower, upper, filters))}
        elif filters.environments:
            query["environment"] = list(filters.environments)
        yield from self._paged(query, heavy_is_error=False)

    def _paged(
        self, query: dict[str, Any], *, heavy_is_error: bool = True
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """Yield each page of rows with whether more pages follow."""
        api_cursor = None
        while True:
            body = self._call(
                lambda opts, c=api_cursor: self._get_observations(opts, cursor=c, **query),
                what="observations read",
                heavy_is_error=heavy_is_error,
            )
            api_cursor = body["meta"].get("cursor")
            more = bool(api_cursor and body["data"])
            yield body["data"], more
            if not more:
                return

    def _fetch_whole(self, scan: Scan, trace_ids: list[str]) -> list[dict[str, Any]]:
        traces: list[dict[str, Any]] = []
        for start in range(0, len(trace_ids), ID_BATCH):
            ids = trace_ids[start : start + ID_BATCH]
            rows_by_trace: dict[str, list[dict[str, Any]]] = {}
            query = {"filter": json.dumps(trace_ids_filter(ids))}
            for rows, _ in self._paged(query):
                for row in rows:
                    rows_by_trace.setdefault(row["traceId"], []).append(row)
            traces += scan.complete_whole(rows_by_trace)
        return traces

    # --- reading scores --------------------------------------------------------------------

    def fetch_scores(self, *, name: str, trace_ids: list[str]) -> list[ScoreOut]:
        """Return the trace-level scores named ``name`` on these traces, via v3 scores.

        Trace ids go 50 to a request (a comma-separated ``traceId``): URLs stay short.
        """
        found: list[ScoreOut] = []
        for start in range(0, len(trace_ids), SCORE_ID_BATCH):
            ids = trace_ids[start : start + SCORE_ID_BATCH]
            cursor = None
            while True:
                body = self._call(
                    lambda opts, c=cursor, i=ids: self._get_scores(
                        opts, name=name, trace_ids=i, cursor=c
                    ),
                    what="scores read",
                )
                for row in body["data"]:
                    subject = row.get("subject") or {}
                    if subject.get("kind", "trace") != "trace":
                        continue  # an observation's or a session's score is not the trace's
                    trace_id = row.get("traceId") or subject.get("traceId") or subject.get("id")
                    if trace_id:
                        found.append(
                            ScoreOut(
                                trace_id=str(trace_id),
                                name=str(row.get("name", "")),
                                value=row.get("value"),
                                comment=str(row.get("comment") or ""),
                            )
                        )
                cursor = body["meta"].get("cursor")
                if not cursor or not body["data"]:
                    break
        return found

    # --- writing scores --------------------------------------------------------------------

    def push_scores(self, scores: list[ScoreIn]) -> ScorePushResult:
        """Write boolean scores and report how many Langfuse accepted.

        Scores carry their own deterministic id, so resending after an error overwrites
        instead of duplicating.
        """
        result = ScorePushResult()
        for count, body in score_batches(scores):
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
