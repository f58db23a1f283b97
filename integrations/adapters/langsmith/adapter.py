"""The LangSmith adapter: runs of one project, grouped into traces, and feedback back.

Root runs are read newest first through the v2 runs query (``POST /api/v2/runs/query``,
self-hosted v0.16 and later) with the legacy ``POST /api/v1/runs/query`` as fallback; each
page of roots is followed by one query for every run of those traces. A root still
running is held in the cursor and polled again at the end of the scan, and while it runs
it holds the watermark back, so the next sync reads it again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from langsmith import _exceptions as ls_errors
from langsmith._client import Langsmith

# The SDK runs on httpx2 when it is installed, else httpx: build its client from the same one.
from langsmith._httpx import httpx

from integrations.adapters.base import (
    Adapter,
    AdapterError,
    Capabilities,
    ConnectionInfo,
    ScoreIn,
    ScoreOut,
    ScorePushResult,
    SourceSettings,
    TraceFilters,
    TracePage,
    as_utc,
    format_time,
    invalid_settings,
    parse_time,
    retry_after_seconds,
)
from integrations.adapters.langsmith.normalise import PENDING, normalise_runs, run_status
from iofold.lib import jsontext, outbound

logger = logging.getLogger(__name__)

# Root runs per page (the v2 query allows 1 to 1,000). Each page is one transaction of
# the sync: at 100 its fixed queries cost about as much as 150 more traces.
PAGE_SIZE = 300
CHILD_PAGE_SIZE = 1000
# Traces whose runs one query asks for: the filter names each, so it stays short.
TRACES_PER_RUNS_QUERY = 100
FEEDBACK_RUN_BATCH = 50  # run ids per feedback read
# v2 returns only ids unless the fields are named.
SELECTS = [
    "ID",
    "NAME",
    "RUN_TYPE",
    "STATUS",
    "START_TIME",
    "END_TIME",
    "ERROR",
    "EXTRA",
    "METADATA",
    "INPUTS",
    "OUTPUTS",
    "PARENT_RUN_IDS",
    "TRACE_ID",
    "THREAD_ID",
    "DOTTED_ORDER",
    "IS_ROOT",
    "PROMPT_TOKENS",
    "COMPLETION_TOKENS",
    "TOTAL_TOKENS",
    "TOTAL_COST",
    "TAGS",
]
LEGACY_SELECTS = [field.lower() for field in SELECTS if field not in ("THREAD_ID", "METADATA")]
FEEDBACK_NAMESPACE = uuid.UUID("6f1c7a52-3b0e-5d59-9a55-4c1b0f1e7a11")


def feedback_id(score: ScoreIn) -> str:
    """Return the feedback id of a verdict: the same for every resend of it."""
    return str(uuid.uuid5(FEEDBACK_NAMESPACE, f"{score.id}:{score.trace_id}"))


def _iso(value: datetime) -> str:
    return format_time(value) or ""


class LangSmithAdapter(Adapter):
    kind = "langsmith"
    label = "LangSmith"
    capabilities = Capabilities(pull=True, push_back=True, conversations=True, read_scores=True)
    example_host = (
        "https://api.smith.langchain.com, https://eu.api.smith.langchain.com or your "
        "instance's address such as http://langsmith:1984"
    )

    keys = ("secret_key",)  # the API key
    keys_missing = "Enter the API key."

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return the project and the optional workspace id tidied up."""
        project = str(options.get("project") or "").strip()
        if not project:
            raise invalid_settings("Enter the LangSmith project to read traces from.")
        tenant_id = str(options.get("tenant_id") or "").strip()
        if tenant_id:
            try:
                tenant_id = str(uuid.UUID(tenant_id))
            except ValueError:
                raise invalid_settings(
                    "The workspace id is a UUID; copy it from Settings → Workspaces."
                ) from None
        return {"project": project, **({"tenant_id": tenant_id} if tenant_id else {})}

    @classmethod
    def from_settings(cls, settings: SourceSettings, **tuning: Any) -> LangSmithAdapter:
        return cls(
            host=settings.host,
            api_key=settings.secret_key,
            project=settings.options.get("project", ""),
            tenant_id=settings.options.get("tenant_id") or None,
            **tuning,
        )

    def __init__(
        self,
        *,
        host: str,
        api_key: str,
        project: str,
        tenant_id: str | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 4,
        max_delay: float = 60.0,
        overlap: timedelta = timedelta(minutes=15),
        initial_lookback: timedelta = timedelta(days=30),
        page_size: int = PAGE_SIZE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = (host or "").strip().rstrip("/")
        for suffix in ("/api/v1", "/api"):
            self.host = self.host.removesuffix(suffix)
        self._api_key = api_key
        self.project = project
        self.tenant_id = tenant_id
        self.timeout = timeout
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.max_delay = max_delay
        # Runs become readable a little after they start; each sync re-reads a margin.
        self.overlap = overlap
        self.initial_lookback = initial_lookback
        self.page_size = page_size
        self.clock = clock
        self.requests_made = 0
        self._client: Langsmith | None = None
        self._project_id: str | None = None

    def __repr__(self) -> str:
        return f"<LangSmithAdapter host={self.host} project={self.project}>"

    @property
    def client(self) -> Langsmith:
        if self._client is None:
            self._client = Langsmith(
                api_key=self._api_key,
                tenant_id=self.tenant_id,
                base_url=self.host,
                max_retries=0,  # the retry policy is ours: Retry-After, then give up
                timeout=self.timeout,
                http_client=httpx.Client(
                    transport=outbound.guarded_transport(httpx), timeout=self.timeout
                ),
            )
            # The SDK falls back to LANGSMITH_TENANT_ID from the environment when given
            # None: a workspace is this integration's setting, never the server's.
            self._client.tenant_id = self.tenant_id
        return self._client

    # --- transport ---------------------------------------------------------------------------

    def _call(self, request: Callable[[], Any], *, what: str) -> Any:
        """Run one SDK request with the retry policy; raise ``AdapterError`` when it fails."""
        delay = 1.0
        for attempt in range(1, self.max_attempts + 1):
            self.requests_made += 1
            last = attempt == self.max_attempts
            try:
                return request()
            except (ls_errors.AuthenticationError, ls_errors.PermissionDeniedError) as exc:
                raise AdapterError(
                    f"LangSmith rejected the API key ({exc.status_code}) during the {what}; "
                    "check the key, and the workspace id for a key of several workspaces.",
                    permanent=True,
                    code="auth",
                ) from None
            except ls_errors.RateLimitError as exc:
                wait = _retry_after(exc.response) or delay
                if last or wait > self.max_delay:
                    raise AdapterError(
                        f"LangSmith rate-limited the {what}; the next sync tries again.",
                        permanent=False,
                        code="rate_limited",
                        retry_after=wait,
                    ) from None
                self.sleep(wait)
            except ls_errors.APIStatusError as exc:
                if exc.status_code < 500:
                    raise
                if last:
                    raise AdapterError(
                        f"LangSmith failed the {what} ({exc.status_code}).",
                        permanent=False,
                        code="server_error",
                    ) from None
                self.sleep(delay)
            except ls_errors.APITimeoutError:
                if last:
                    raise AdapterError(
                        f"LangSmith did not answer the {what} within {self.timeout:g} s.",
                        permanent=False,
                        code="timeout",
                    ) from None
                self.sleep(delay)
            except ls_errors.APIConnectionError as exc:
                if (refused := outbound.refusal_behind(exc)) is not None:
                    raise AdapterError(
                        refused.message, permanent=True, code="unreachable"
                    ) from None
                if last:
                    raise AdapterError(
                        f"Could not reach LangSmith at {self.host}.",
                        permanent=False,
                        code="unreachable",
                    ) from None
                self.sleep(delay)
            delay = min(delay * 2, self.max_delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, path: str, body: dict[str, Any], *, what: str) -> Any:
        reply = self._call(
            lambda: self.client.post(path, cast_to=httpx.Response, body=body), what=what
        )
        return _decoded(reply)

    def _patch(self, path: str, body: dict[str, Any], *, what: str) -> Any:
        reply = self._call(
            lambda: self.client.patch(path, cast_to=httpx.Response, body=body), what=what
        )
        return _decoded(reply)

    # --- connection check -------------------------------------------------------------------

    def test_connection(self) -> ConnectionInfo:
        """Check the key opens the project; return it."""
        project = self._project()
        return ConnectionInfo(
            project_id=project["id"], project_name=project["name"], platform=self.label
        )

    def _project(self) -> dict[str, Any]:
        try:
            found = self._call(
                lambda: self.client.get(
                    "/api/v1/sessions",
                    cast_to=object,
                    options={"params": {"name": self.project, "limit": 1}},
                ),
                what="project lookup",
            )
        except ls_errors.APIStatusError as exc:
            raise AdapterError(
                f"{self.host} did not answer like LangSmith ({exc.status_code}); "
                "check the API URL.",
                permanent=True,
                code="bad_request",
            ) from None
        if not isinstance(found, list):
            raise AdapterError(
                f"{self.host} did not answer like LangSmith; check the API URL.",
                permanent=True,
                code="invalid_response",
            )
        match = next(
            (p for p in found if isinstance(p, dict) and p.get("name") == self.project), None
        )
        if match is None:
            raise AdapterError(
                f"No LangSmith project is named “{self.project}” for this key.",
                permanent=True,
                code="bad_request",
            )
        self._project_id = str(match["id"])
        return {"id": str(match["id"]), "name": str(match["name"])}

    # --- reading traces ---------------------------------------------------------------------

    @staticmethod
    def cursor_progress(cursor: str) -> float:
        """Return how much of the scanned time range (newest first) the cursor has covered."""
        try:
            state = json.loads(cursor)
            low, high, at = (parse_time(state[k]) for k in ("min", "max", "at"))
        except (ValueError, KeyError, TypeError):
            return 0.0
        if not (low and high and at) or high <= low:
            return 0.0
        return max(0.0, min(0.99, (high - at) / (high - low)))

    def fetch_traces(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        filters: TraceFilters,
        cursor: str | None,
    ) -> Iterator[TracePage]:
        """Yield pages of complete normalised traces, newest first, with a resume cursor.

        The traces are built to the schema (``normalise``), so the pages say so (checked).
        Each page's runs are fetched here and normalised when its traces are first read
        (``TracePage``): a sync reads them on another thread while this one fetches on.
        """
        project_id = self._project_id or self._project()["id"]
        state = self._start_state(since, until, filters) if not cursor else json.loads(cursor)
        while True:
            roots, next_cursor = self._roots(project_id, state)
            complete = []
            for root in roots:
                if run_status(root) == PENDING:
                    state["pending"].append([str(root["id"]), root.get("start_time")])
                else:
                    complete.append(root)
            build = self._fetch_trees(project_id, complete, filters, state["api"])
            for root in roots:
                start = parse_time(root.get("start_time"))
                if start and (not state.get("hi") or start > parse_time(state["hi"])):
                    state["hi"] = _iso(start)
                if start:
                    state["at"] = _iso(start)
            state["c"] = next_cursor
            if next_cursor:
                yield TracePage(build, json.dumps(state), None, checked=True)
                continue
            # The scan is done: poll the pending roots once more.
            still, done = self._repoll(project_id, state)
            build_done = self._fetch_trees(project_id, done, filters, state["api"])
            yield TracePage(
                lambda first=build, then=build_done: first() + then(),
                None,
                self._watermark(state, still),
                checked=True,
            )
            return

    def _start_state(
        self, since: datetime | None, until: datetime | None, filters: TraceFilters
    ) -> dict[str, Any]:
        now = self.clock()
        low = as_utc(since) - self.overlap if since else now - self.initial_lookback
        if filters.since_date is not None:
            low = max(low, as_utc(filters.since_date)) if since else as_utc(filters.since_date)
        return {
            "v": 1,
            "api": "v2",
            "min": _iso(low),
            "max": _iso(as_utc(until) if until else now),
            "at": _iso(as_utc(until) if until else now),
            "c": None,
            "hi": None,
            "pending": [],
        }

    def _roots(self, project_id: str, state: dict[str, Any]) -> tuple[list[dict], str | None]:
        if state["api"] == "v2":
            try:
                return self._query_v2(
                    project_ids=[project_id],
                    is_root=True,
                    min_start_time=state["min"],
                    max_start_time=state["max"],
                    page_size=self.page_size,
                    cursor=state["c"],
                )
            except ls_errors.APIStatusError as exc:
                if exc.status_code not in (404, 405):
                    raise self._refused(exc, "runs query") from None
                logger.info("langsmith v2 runs query missing, legacy fallback host=%s", self.host)
                state["api"], state["c"] = "v1", None
        return self._query_legacy(
            session=[project_id],
            is_root=True,
            start_time=state["min"],
            filter=f'lte(start_time, "{state["max"]}")',
            limit=self.page_size,
            cursor=state["c"],
        )

    def _query_v2(self, **body: Any) -> tuple[list[dict], str | None]:
        body = {k: v for k, v in body.items() if v is not None}
        reply = self._post("/api/v2/runs/query", {**body, "selects": SELECTS}, what="runs query")
        items = reply.get("items") or [] if isinstance(reply, dict) else []
        return _dedupe(items), reply.get("next_cursor") or None

    def _query_legacy(self, **body: Any) -> tuple[list[dict], str | None]:
        body = {k: v for k, v in body.items() if v is not None}
        try:
            reply = self._post(
                "/api/v1/runs/query", {**body, "select": LEGACY_SELECTS}, what="runs query"
            )
        except ls_errors.APIStatusError as exc:
            raise self._refused(exc, "runs query") from None
        runs = reply.get("runs") or [] if isinstance(reply, dict) else []
        cursors = reply.get("cursors") or {} if isinstance(reply, dict) else {}
        return _dedupe(runs), cursors.get("next") or None

    def _refused(self, exc: ls_errors.APIStatusError, what: str) -> AdapterError:
        return AdapterError(
            f"LangSmith refused the {what} ({exc.status_code}): {_detail(exc)}",
            permanent=True,
            code="bad_request",
        )

    def _runs_of(self, project_id: str, roots: list[dict], state_api: str) -> list[dict]:
        """Return every run of these traces: a query per ``TRACES_PER_RUNS_QUERY`` traces."""
        runs: list[dict] = []
        for start in range(0, len(roots), TRACES_PER_RUNS_QUERY):
            chunk = roots[start : start + TRACES_PER_RUNS_QUERY]
            runs.extend(self._runs_of_chunk(project_id, chunk, state_api))
        return runs

    def _runs_of_chunk(self, project_id: str, roots: list[dict], state_api: str) -> list[dict]:
        """Return every run of these traces, all pages of them."""
        ids = [str(r["id"]) for r in roots]
        starts = [parse_time(r.get("start_time")) for r in roots if r.get("start_time")]
        low = _iso(min(starts)) if starts else None
        of_traces = trace_filter(ids)
        runs: list[dict] = []
        page_cursor = None
        while True:
            if state_api == "v2":
                try:
                    page, page_cursor = self._query_v2(
                        project_ids=[project_id],
                        is_root=False,
                        filter=of_traces,
                        min_start_time=low,
                        page_size=CHILD_PAGE_SIZE,
                        cursor=page_cursor,
                    )
                except ls_errors.APIStatusError as exc:
                    raise self._refused(exc, "runs query") from None
            else:
                page, page_cursor = self._query_legacy(
                    session=[project_id],
                    is_root=False,
                    filter=of_traces,
                    start_time=low,
                    limit=CHILD_PAGE_SIZE,
                    cursor=page_cursor,
                )
            runs.extend(page)
            if not page_cursor:
                return runs

    def _fetch_trees(
        self, project_id: str, roots: list[dict], filters: TraceFilters, api: str
    ) -> Callable[[], list[dict]]:
        """Fetch every run of these traces; return what normalises and filters them."""
        children: dict[str, list[dict]] = {}
        if roots:
            for run in self._runs_of(project_id, roots, api):
                children.setdefault(str(run.get("trace_id")), []).append(run)

        def build() -> list[dict]:
            traces = []
            for root in roots:
                trace = normalise_runs(root, children.get(str(root["id"]), []))
                if filters.matches(trace):
                    traces.append(trace)
            return traces

        return build

    def _repoll(self, project_id: str, state: dict[str, Any]) -> tuple[list[list], list[dict]]:
        pending = {str(i): t for i, t in state.get("pending") or []}
        if not pending:
            return [], []
        found: list[dict] = []
        ids = list(pending)
        for start in range(0, len(ids), self.page_size):
            chunk = ids[start : start + self.page_size]
            if state["api"] == "v2":
                try:
                    page, _ = self._query_v2(
                        project_ids=[project_id],
                        ids=chunk,
                        min_start_time=state["min"],
                        page_size=len(chunk),
                    )
                except ls_errors.APIStatusError as exc:
                    raise self._refused(exc, "runs query") from None
            else:
                page, _ = self._query_legacy(id=chunk, limit=len(chunk))
            found.extend(page)
        done = [r for r in found if run_status(r) != PENDING]
        finished = {str(r["id"]) for r in done}
        still = [[i, t] for i, t in pending.items() if i not in finished]
        return still, done

    def _watermark(self, state: dict[str, Any], still_pending: list[list]) -> datetime | None:
        high = parse_time(state.get("hi"))
        starts = [parse_time(t) for _, t in still_pending if t]
        if starts:
            # A running trace holds the watermark back so the next sync reads it again.
            held = min(starts) - timedelta(milliseconds=1) + self.overlap
            return min(high, held) if high else held
        return high

    # --- feedback ---------------------------------------------------------------------------

    def fetch_scores(self, *, name: str, trace_ids: list[str]) -> list[ScoreOut]:
        """Return the feedback keyed ``name`` on these traces' root runs (``GET /api/v1/feedback``).

        A categorical feedback's ``value`` wins over its ``score``; 50 runs to a request,
        pages of 100 by offset.
        """
        found: list[ScoreOut] = []
        for start in range(0, len(trace_ids), FEEDBACK_RUN_BATCH):
            runs = trace_ids[start : start + FEEDBACK_RUN_BATCH]
            offset = 0
            while True:
                params = {"run": runs, "key": [name], "limit": 100, "offset": offset}
                page = self._call(
                    lambda p=params: self.client.get(
                        "/api/v1/feedback", cast_to=object, options={"params": p}
                    ),
                    what="feedback read",
                )
                if not isinstance(page, list):
                    raise AdapterError(
                        f"{self.host} did not answer like LangSmith; check the API URL.",
                        permanent=True,
                        code="invalid_response",
                    )
                for item in page:
                    if not isinstance(item, dict) or not item.get("run_id"):
                        continue
                    value = item.get("value")
                    found.append(
                        ScoreOut(
                            trace_id=str(item["run_id"]),
                            name=str(item.get("key", "")),
                            value=value if value not in (None, "") else item.get("score"),
                            comment=str(item.get("comment") or ""),
                        )
                    )
                if len(page) < 100:
                    break
                offset += len(page)
        return found

    # --- feedback ----------------------------------------------------------------------------

    def push_scores(self, scores: list[ScoreIn]) -> ScorePushResult:
        """Write verdicts as feedback with deterministic ids; a 409 (written before) updates it.

        A trace judged again after it changed keeps its feedback id: without the update,
        LangSmith would keep showing the first verdict.
        """
        result = ScorePushResult()
        # Run-level feedback names its project: LangSmith deprecates feedback without it.
        project_id = self._project_id or self._project()["id"]
        for score in scores:
            body = {
                "id": feedback_id(score),
                "run_id": score.observation_id or score.trace_id,
                "trace_id": score.trace_id,
                "key": score.name,
                "score": 1 if score.value else 0,
                "comment": score.comment,
                "session_id": project_id,
                "feedback_source": {"type": "api", "metadata": score.metadata or {}},
            }
            try:
                try:
                    self._post("/api/v1/feedback", body, what="feedback write")
                except ls_errors.ConflictError:
                    changed = {"score": body["score"], "comment": body["comment"]}
                    self._patch(f"/api/v1/feedback/{body['id']}", changed, what="feedback update")
            except ls_errors.APIStatusError as exc:
                result.rejected += 1
                result.errors.append(f"{exc.status_code}: {_detail(exc)}")
                continue
            result.accepted += 1
        return result


def trace_filter(trace_ids: list[str]) -> str:
    """Return the filter expression for the runs of these traces.

    Only the documented comparators (``eq``, joined by ``or``): no ``in``.
    """
    terms = [f"eq(trace_id, {json.dumps(i)})" for i in trace_ids]
    return terms[0] if len(terms) == 1 else f"or({', '.join(terms)})"


def _dedupe(runs: list[Any]) -> list[dict]:
    by_id: dict[str, dict] = {}
    for run in runs:
        if isinstance(run, dict) and run.get("id"):
            by_id[str(run["id"])] = run
    return list(by_id.values())


def _decoded(response: httpx.Response) -> Any:
    """Return the body as the SDK does for ``cast_to=object`` (JSON parsed, else the text),
    parsed by orjson where that gives the same values: runs pages are most of a sync's
    parsing."""
    content_type = response.headers.get("content-type", "*").split(";")[0]
    if not content_type.endswith("json"):
        return response.text
    return jsontext.loads_as_json(response.content)


def _retry_after(response: Any) -> float | None:
    return None if response is None else retry_after_seconds(response.headers.get("retry-after"))


def _detail(exc: ls_errors.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("message") or body)[:300]
    return str(body or exc.message)[:300]
