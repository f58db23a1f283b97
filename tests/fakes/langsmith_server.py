"""A fake LangSmith over real HTTP on 127.0.0.1, for the adapter driven through the SDK.

It answers what the adapter asks, in the shapes the real server uses: the project lookup
(``GET /api/v1/sessions?name=``), the v2 runs query (``POST /api/v2/runs/query``: only
``id`` unless ``selects`` names fields, ``min_start_time`` one day back when omitted,
``items`` and ``next_cursor``, upper-case enums), the legacy ``POST /api/v1/runs/query``
(``runs`` and ``cursors.next``, lower-case), ``POST /api/v1/feedback`` (409 for an id
it already has) and ``PATCH /api/v1/feedback/<id>`` (its score and comment). Keys go in
``X-API-Key``; a workspace in ``X-Tenant-Id``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "lsv2_pt_0123456789abcdef_fake"
PROJECT = "default"
PROJECT_ID = "7d8e9f00-0000-4000-8000-000000000001"
# The v2 runs query's page_size: "between 1 and 1000 inclusive when set" (the SDK's
# RunQueryV2Params); the server refuses others.
MAX_PAGE_SIZE = 1000

_SELECT_KEYS = {
    "ID": "id",
    "NAME": "name",
    "RUN_TYPE": "run_type",
    "STATUS": "status",
    "START_TIME": "start_time",
    "END_TIME": "end_time",
    "ERROR": "error",
    "EXTRA": "extra",
    "METADATA": "metadata",
    "INPUTS": "inputs",
    "OUTPUTS": "outputs",
    "PARENT_RUN_IDS": "parent_run_ids",
    "TRACE_ID": "trace_id",
    "THREAD_ID": "thread_id",
    "DOTTED_ORDER": "dotted_order",
    "IS_ROOT": "is_root",
    "PROMPT_TOKENS": "prompt_tokens",
    "COMPLETION_TOKENS": "completion_tokens",
    "TOTAL_TOKENS": "total_tokens",
    "TOTAL_COST": "total_cost",
    "TAGS": "tags",
}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _dotted(start: datetime, run_id: str) -> str:
    return start.strftime("%Y%m%dT%H%M%S%fZ") + run_id


class FakeLangSmith:
    """Traces of four runs each (chain root, llm, tool, retriever), spaced newest first."""

    def __init__(
        self,
        *,
        traces: int = 0,
        base_time: datetime | None = None,
        spacing: timedelta = timedelta(seconds=30),
        legacy_only: bool = False,
        port: int = 0,
    ) -> None:
        self.api_key = API_KEY
        self.legacy_only = legacy_only
        self.runs: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # root ids (newest first once a query sorted them)
        self.feedback: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
        self.rate_limit_next = 0  # answer this many requests with 429 first
        self.retry_after = "2"
        self.pending: dict[str, int] = {}  # root id -> reads still answered as pending
        self._lock = threading.Lock()
        self._newest_first: list[dict[str, Any]] | None = None
        self._by_trace: dict[str, list[dict[str, Any]]] = {}
        base = base_time or datetime.now(UTC) - timedelta(hours=1)
        for number in range(traces):
            self.add_trace(base - spacing * number, number)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeLangSmith:
        threading.Thread(
            target=self._server.serve_forever, name="fake-langsmith", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- data --------------------------------------------------------------------------

    def add_feedback(
        self, run_id: str, key: str, *, score: Any = None, value: Any = None, comment: str = ""
    ) -> str:
        """Store feedback as if a person gave it in LangSmith (an annotation, a thumbs up)."""
        feedback_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}:{key}"))
        self.feedback[feedback_id] = {
            "id": feedback_id,
            "run_id": run_id,
            "trace_id": run_id,
            "key": key,
            "score": score,
            "value": value,
            "comment": comment,
        }
        return feedback_id

    def list_feedback(self, params: dict[str, list[str]]) -> tuple[int, Any]:
        """``GET /api/v1/feedback``: ``run`` and ``key`` repeat; ``limit`` 1 to 100, ``offset``."""
        try:
            limit = int(params.get("limit", ["100"])[-1])
            offset = int(params.get("offset", ["0"])[-1])
        except ValueError:
            return 422, {"detail": "limit and offset must be integers"}
        if not 1 <= limit <= 100:
            return 422, {"detail": "limit must be between 1 and 100"}
        runs, keys = set(params.get("run", [])), set(params.get("key", []))
        found = [
            f
            for f in self.feedback.values()
            if (not runs or f.get("run_id") in runs) and (not keys or f.get("key") in keys)
        ]
        return 200, found[offset : offset + limit]

    def add_trace(self, start: datetime, number: int, *, pending_reads: int = 0) -> str:
        root_id = str(uuid.UUID(int=number + 1))
        root_dotted = _dotted(start, root_id)
        error = "ValueError: boom" if number % 10 == 9 else None
        root = {
            "id": root_id,
            "name": "agent",
            "run_type": "chain",
            "start_time": _iso(start),
            "end_time": _iso(start + timedelta(seconds=3)),
            "status": "error" if error else "success",
            "error": error,
            "inputs": {"question": f"question {number}"},
            "outputs": {"answer": f"answer {number}"},
            "extra": {"metadata": {"session_id": f"s-{number % 3}", "env": "prod"}},
            "metadata": {"session_id": f"s-{number % 3}", "env": "prod"},
            "parent_run_ids": [],
            "trace_id": root_id,
            "thread_id": f"s-{number % 3}",
            "dotted_order": root_dotted,
            "is_root": True,
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "total_cost": 0.0003,
            "tags": ["prod"],
            "session_id": PROJECT_ID,
        }
        self.runs[root_id] = root
        self._by_trace[root_id] = [root]
        self._newest_first = None
        self.order.append(root_id)
        for offset, (name, run_type) in enumerate(
            (("ChatOpenAI", "llm"), ("search", "tool"), ("docs", "retriever")), start=1
        ):
            child_id = str(uuid.UUID(int=(number + 1) * 16 + offset + (1 << 64)))
            child_start = start + timedelta(milliseconds=100 * offset)
            self.runs[child_id] = {
                "id": child_id,
                "name": name,
                "run_type": run_type,
                "start_time": _iso(child_start),
                "end_time": _iso(child_start + timedelta(milliseconds=50)),
                "status": "success",
                "error": None,
                "inputs": {"messages": [{"role": "user", "content": f"question {number}"}]},
                "outputs": {"text": "ok"},
                "extra": {"invocation_params": {"model": "gpt-4o-mini"}}
                if run_type == "llm"
                else {},
                "metadata": {},
                "parent_run_ids": [root_id],
                "trace_id": root_id,
                "thread_id": None,
                "dotted_order": f"{root_dotted}.{_dotted(child_start, child_id)}",
                "is_root": False,
                "prompt_tokens": 12 if run_type == "llm" else None,
                "completion_tokens": 5 if run_type == "llm" else None,
                "total_tokens": 17 if run_type == "llm" else None,
                "total_cost": 0.0003 if run_type == "llm" else None,
                "tags": [],
                "session_id": PROJECT_ID,
            }
            self._by_trace[root_id].append(self.runs[child_id])
        if pending_reads:
            self.pending[root_id] = pending_reads
        return root_id

    def _view(self, run: dict[str, Any], *, upper: bool) -> dict[str, Any]:
        run = dict(run)
        reads = self.pending.get(run["id"])
        if reads:
            self.pending[run["id"]] = reads - 1
            run.update(status="pending", end_time=None, outputs=None)
        if upper:
            run["run_type"] = run["run_type"].upper()
            run["status"] = run["status"].upper()
        return run

    # --- queries -----------------------------------------------------------------------

    def _select(self, body: dict[str, Any], *, default_min: bool) -> list[dict[str, Any]]:
        low = body.get("min_start_time") or body.get("start_time")
        if low is None and default_min:
            low = _iso(datetime.now(UTC) - timedelta(days=1))
        high = body.get("max_start_time")
        match = re.fullmatch(r'lte\(start_time, "([^"]+)"\)', body.get("filter") or "")
        if match:
            high = match.group(1)
        trace_ids = None
        # The runs of some traces: eq(trace_id, "…") or or(eq(trace_id, "…"), …).
        expression = body.get("filter") or ""
        if re.fullmatch(
            r'(or\()?eq\(trace_id, "[^"]+"\)(, eq\(trace_id, "[^"]+"\))*\)?', expression
        ):
            trace_ids = set(re.findall(r'eq\(trace_id, "([^"]+)"\)', expression))
        elif expression and not match:
            raise ValueError(f"Unsupported filter: {expression[:100]}")
        ids = body.get("ids") or body.get("id")
        chosen = []
        if self._newest_first is None:
            self._newest_first = sorted(
                self.runs.values(), key=lambda r: r["start_time"], reverse=True
            )
        if trace_ids is not None:
            candidates = sorted(
                (run for trace in trace_ids for run in self._by_trace.get(trace, ())),
                key=lambda r: r["start_time"],
                reverse=True,
            )
        elif body.get("is_root") is True:
            candidates = [self.runs[i] for i in self._roots_newest_first()]
        else:
            candidates = self._newest_first
        for run in candidates:
            if body.get("is_root") is not None and run["is_root"] != body["is_root"]:
                continue
            if low and _time(run["start_time"]) < _time(low):
                continue
            if high and _time(run["start_time"]) > _time(high):
                continue
            if trace_ids is not None and run["trace_id"] not in trace_ids:
                continue
            if ids and run["id"] not in ids:
                continue
            chosen.append(run)
        return chosen

    def _roots_newest_first(self) -> list[str]:
        if getattr(self, "_roots_sorted", None) != len(self.order):
            self.order.sort(key=lambda i: self.runs[i]["start_time"], reverse=True)
            self._roots_sorted = len(self.order)
        return self.order

    def query_v2(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("project_ids") or body["project_ids"] != [PROJECT_ID]:
            return {"items": [], "next_cursor": None}
        size = int(100 if body.get("page_size") is None else body["page_size"])
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        offset = int(body.get("cursor") or 0)
        runs = self._select(body, default_min=True)
        page = runs[offset : offset + size]
        fields = [_SELECT_KEYS[s] for s in body.get("selects") or ["ID"]]
        items = [{k: v for k, v in self._view(r, upper=True).items() if k in fields} for r in page]
        more = offset + size < len(runs)
        return {"items": items, "next_cursor": str(offset + size) if more else None}

    def query_legacy(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("session") and body["session"] != [PROJECT_ID]:
            return {"runs": [], "cursors": {"next": None}}
        size = int(body.get("limit") or 100)
        offset = int(body.get("cursor") or 0)
        runs = self._select(body, default_min=False)
        page = [self._view(r, upper=False) for r in runs[offset : offset + size]]
        more = offset + size < len(runs)
        return {"runs": page, "cursors": {"next": str(offset + size) if more else None}}


def _make_handler(fake: FakeLangSmith) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            parts = urlsplit(self.path)
            with fake._lock:
                fake.requests.append((method, parts.path, body, dict(self.headers.items())))
                if fake.rate_limit_next > 0:
                    fake.rate_limit_next -= 1
                    self._reply(
                        429, {"detail": "Too many requests"}, {"Retry-After": fake.retry_after}
                    )
                    return
                if self.headers.get("X-API-Key") != fake.api_key:
                    self._reply(401, {"detail": "Invalid token"})
                    return
                route = (method, parts.path)
                if route == ("GET", "/api/v1/sessions"):
                    name = parse_qs(parts.query).get("name", [None])[0]
                    found = [{"id": PROJECT_ID, "name": PROJECT}] if name in (None, PROJECT) else []
                    self._reply(200, found)
                elif route == ("POST", "/api/v2/runs/query") and not fake.legacy_only:
                    self._answer_query(fake.query_v2, body)
                elif route == ("POST", "/api/v1/runs/query"):
                    self._answer_query(fake.query_legacy, body)
                elif route == ("GET", "/api/v1/feedback"):
                    self._reply(*fake.list_feedback(parse_qs(parts.query)))
                elif route == ("POST", "/api/v1/feedback"):
                    if not body.get("key") or not body.get("id"):
                        self._reply(422, {"detail": "key and id are required"})
                    elif body["id"] in fake.feedback:
                        self._reply(409, {"detail": "Feedback already exists"})
                    else:
                        fake.feedback[body["id"]] = body
                        self._reply(200, body)
                elif method == "PATCH" and parts.path.startswith("/api/v1/feedback/"):
                    found = fake.feedback.get(parts.path.rsplit("/", 1)[1])
                    if found is None:
                        self._reply(404, {"detail": "Feedback not found"})
                    else:
                        changed = {"score", "value", "comment", "correction"}
                        found.update({k: v for k, v in body.items() if k in changed})
                        self._reply(200, found)
                else:
                    self._reply(404, {"detail": "Not Found"})

        def _answer_query(self, query, body: dict[str, Any]) -> None:
            try:
                self._reply(200, query(body))
            except ValueError as exc:
                self._reply(400, {"detail": str(exc)})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

    return Handler
