"""A fake Langfuse public API on 127.0.0.1 for tests and benchmarks.

Serves what iofold's adapter uses, shaped like Langfuse >= 4.59 on the wire (see
shared/langfuse/CONTRACT.md section 6): health, projects, v2 observations (filters, field
groups, newest-first cursor pages) and batch score creation, with switches for failures.

Standalone: `python -m tests.fakes.langfuse_server --traces 10000 --observations 5 --port 3000`.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BASE_TIME = datetime(2026, 11, 20, tzinfo=UTC)
VERSION = "4.59.0"
HTML = b"<!doctype html><html><head><title>Welcome</title></head><body><h1>Hello</h1></body></html>"

FIELD_GROUPS = {
    "core": ("id", "traceId", "startTime", "endTime", "projectId", "parentObservationId", "type"),
    "basic": (
        "name",
        "level",
        "statusMessage",
        "version",
        "environment",
        "bookmarked",
        "public",
        "userId",
        "sessionId",
        "isRootObservation",
    ),
    "time": ("completionStartTime", "createdAt", "updatedAt"),
    "io": ("input", "output"),
    "metadata": ("metadata",),
    "model": ("model", "internalModelId", "modelParameters"),
    "usage": (
        "usageDetails",
        "costDetails",
        "totalCost",
        "usagePricingTierName",
        "inputUsage",
        "outputUsage",
        "totalUsage",
        "inputCost",
        "outputCost",
    ),
    "prompt": ("promptId", "promptName", "promptVersion"),
    "metrics": ("latency", "timeToFirstToken"),
    "trace_context": ("tags", "release", "traceName"),
}
ALWAYS = ("modelId", "inputPrice", "outputPrice", "totalPrice")
OBS_TYPES = {
    "GENERATION",
    "SPAN",
    "EVENT",
    "AGENT",
    "TOOL",
    "CHAIN",
    "RETRIEVER",
    "EVALUATOR",
    "EMBEDDING",
    "GUARDRAIL",
}
ENV_RE = re.compile(r"^(?!langfuse)[a-z0-9_-]+$")

QUESTIONS = [
    "Where is my order #{n}?",
    "What's the weather in {city} tomorrow?",
    "Summarise the refund policy for {city} stores.",
    "Book a table for {n} people in {city}.",
    "Can you reset my password?",
]
CITIES = ["Berlin", "Lisbon", "Osaka", "Toronto", "Nairobi", "Lima"]
TOOLS = ["lookup_order", "get_weather", "search_docs", "book_table", "reset_password"]


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hex(*parts: Any, length: int) -> str:
    return hashlib.sha256("-".join(map(str, parts)).encode()).hexdigest()[:length]


def make_row(**fields: Any) -> dict[str, Any]:
    """Return a full v2 observation row (every field group) with realistic defaults."""
    row = {
        "id": None,
        "traceId": None,
        "startTime": None,
        "endTime": None,
        "projectId": "proj-fake",
        "parentObservationId": None,
        "type": "SPAN",
        "name": "",
        "level": "DEFAULT",
        "statusMessage": "",
        "version": "",
        "environment": "default",
        "bookmarked": False,
        "public": False,
        "userId": "",
        "sessionId": "",
        "isRootObservation": False,
        "completionStartTime": None,
        "createdAt": None,
        "updatedAt": None,
        "input": None,
        "output": None,
        "metadata": {},
        "model": None,
        "internalModelId": None,
        "modelParameters": None,
        "usageDetails": {},
        "costDetails": {},
        "totalCost": 0,
        "usagePricingTierName": None,
        "inputUsage": 0,
        "outputUsage": 0,
        "totalUsage": 0,
        "inputCost": None,
        "outputCost": None,
        "promptId": "",
        "promptName": "",
        "promptVersion": None,
        "latency": None,
        "timeToFirstToken": None,
        "tags": [],
        "release": "",
        "traceName": "",
        "modelId": None,
        "inputPrice": None,
        "outputPrice": None,
        "totalPrice": None,
    }
    row.update(fields)
    row["isRootObservation"] = row["parentObservationId"] is None
    if row["createdAt"] is None:
        row["createdAt"] = row["startTime"]
    if row["updatedAt"] is None:
        row["updatedAt"] = row["endTime"] or row["startTime"]
    if row["endTime"] and row["latency"] is None:
        start = datetime.fromisoformat(row["startTime"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(row["endTime"].replace("Z", "+00:00"))
        row["latency"] = round((end - start).total_seconds(), 3)
    return row


def generate_trace(
    index: int, *, observations: int, start: datetime, seed: int = 0
) -> list[dict[str, Any]]:
    """Return the rows of one deterministic agent run: agent, LLM calls, tools (some fail)."""
    rng = random.Random(f"{seed}-{index}")
    trace_id = _hex(seed, "trace", index, length=32)
    city, n = rng.choice(CITIES), rng.randint(2, 9000)
    question = rng.choice(QUESTIONS).format(city=city, n=n)
    tool = rng.choice(TOOLS)
    tool_fails = rng.random() < 0.2
    name = rng.choice(["support-agent", "research-agent", "booking-agent"])
    env = "staging" if index % 5 == 0 else "production"
    tags = ["prod"] if env == "production" else ["beta"]
    if index % 3 == 0:
        tags.append("vip")
    context = {
        "traceId": trace_id,
        "environment": env,
        "userId": f"user-{index % 37}",
        "sessionId": f"chat-{index // 3}",
        "tags": tags,
        "release": "v1.4.2",
        "traceName": name,
    }
    root_id = _hex(seed, "obs", index, 0, length=16)
    rows: list[dict[str, Any]] = []
    t = start + timedelta(milliseconds=5)
    for k in range(1, observations):
        obs_id = _hex(seed, "obs", index, k, length=16)
        kind = ("plan", "tool", "answer", "retrieve", "span", "event")[(k - 1) % 6]
        duration = timedelta(milliseconds=rng.randint(80, 900))
        common = {"id": obs_id, "parentObservationId": root_id, "startTime": iso(t), **context}
        if kind in ("plan", "answer"):
            tokens_in, tokens_out = rng.randint(40, 900), rng.randint(5, 300)
            cost_in, cost_out = round(tokens_in * 2.5e-6, 8), round(tokens_out * 1e-5, 8)
            content = (
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{k}",
                            "type": "function",
                            "function": {
                                "name": tool,
                                "arguments": json.dumps({"query": question}),
                            },
                        }
                    ],
                }
                if kind == "plan"
                else {"role": "assistant", "content": f"Here is what I found about {city}."}
            )
            rows.append(
                make_row(
                    **common,
                    type="GENERATION",
                    name=kind,
                    endTime=iso(t + duration),
                    completionStartTime=iso(t + duration / 4),
                    input=json.dumps([{"role": "user", "content": question}]),
                    output=json.dumps(content),
                    model="gpt-4o-mini",
                    internalModelId="m-gpt-4o-mini",
                    modelParameters={"temperature": 0},
                    usageDetails={
                        "input": tokens_in,
                        "output": tokens_out,
                        "total": tokens_in + tokens_out,
                    },
                    inputUsage=tokens_in,
                    outputUsage=tokens_out,
                    totalUsage=tokens_in + tokens_out,
                    costDetails={
                        "input": cost_in,
                        "output": cost_out,
                        "total": round(cost_in + cost_out, 8),
                    },
                    inputCost=cost_in,
                    outputCost=cost_out,
                    totalCost=round(cost_in + cost_out, 8),
                    modelId="m-gpt-4o-mini",
                    inputPrice="0.0000025",
                    outputPrice="0.00001",
                    timeToFirstToken=round(duration.total_seconds() / 4, 3),
                )
            )
        elif kind == "tool":
            failed = tool_fails
            rows.append(
                make_row(
                    **common,
                    type="TOOL",
                    name=tool,
                    endTime=iso(t + duration),
                    input=json.dumps({"query": question}),
                    output=None if failed else json.dumps({"result": f"ok-{n}", "city": city}),
                    level="ERROR" if failed else "DEFAULT",
                    statusMessage=f"TimeoutError: {tool} did not answer in 2s" if failed else "",
                )
            )
        elif kind == "retrieve":
            rows.append(
                make_row(
                    **common,
                    type="RETRIEVER",
                    name="vector-search",
                    endTime=iso(t + duration),
                    input=json.dumps({"query": question}),
                    output=json.dumps({"documents": [f"doc-{n % 17}"]}),
                )
            )
        elif kind == "span":
            rows.append(
                make_row(**common, type="SPAN", name="postprocess", endTime=iso(t + duration))
            )
        else:
            rows.append(make_row(**common, type="EVENT", name="user-feedback-prompt", endTime=None))
            duration = timedelta(0)
        t += duration + timedelta(milliseconds=10)
    answer = "Sorry, something went wrong." if tool_fails else f"Here is what I found about {city}."
    rows.insert(
        0,
        make_row(
            id=root_id,
            parentObservationId=None,
            type="AGENT",
            name=name,
            startTime=iso(start),
            endTime=iso(t + timedelta(milliseconds=5)),
            input=json.dumps({"question": question}),
            output=json.dumps({"answer": answer}),
            metadata={"agent_version": "2.3"},
            **context,
        ),
    )
    return rows


class FakeLangfuse:
    """In-memory Langfuse with an HTTP front end and failure switches."""

    def __init__(
        self,
        *,
        traces: int = 0,
        observations: int = 5,
        public_key: str = "pk-lf-fake",
        secret_key: str = "sk-lf-fake",  # noqa: S107 - a test key
        base_time: datetime = BASE_TIME,
        spacing: timedelta = timedelta(seconds=60),
        seed: int = 0,
        port: int = 0,
    ) -> None:
        self.public_key, self.secret_key = public_key, secret_key
        self.n_traces, self.n_observations = traces, observations
        self.base_time, self.spacing, self.seed = base_time, spacing, seed
        self.project = {
            "id": "proj-fake",
            "name": "Fake Project",
            "organization": {"id": "org-fake", "name": "Fake Org"},
            "metadata": {},
        }
        self.version = VERSION
        # Switches.
        self.html_mode = False
        self.html_status = 200
        self.health_status = 200
        self.page_delay = 0.0
        self.reject_score_ids: dict[str, str] = {}
        self._failures: list[tuple[int, str | None, str | None]] = []
        # Records.
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.scores: dict[str, dict[str, Any]] = {}
        self.score_posts = 0
        # The id of every score item posted, in order, repeats included: what was sent how
        # often (``scores`` keeps the last of each id).
        self.score_items: list[str] = []
        self.responses: list[
            tuple[str, int, Any]
        ] = []  # (path, status, body) when record_responses
        self.record_responses = False
        self._extra: dict[str, list[dict[str, Any]]] = {}  # added or changed traces by trace id
        self._index: list[tuple[str, str, str]] | None = None
        self._by_trace: dict[str, list[tuple[str, str, str]]] = {}
        self._extra_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._rows_of = lru_cache(maxsize=4096)(self._generated)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeLangfuse:
        self._ensure_index()  # pay the generation cost before the first request is timed
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-langfuse", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- switches ----------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` authenticated requests (to `path` only, when given) with
        `status` (429 sends Retry-After)."""
        with self._lock:
            self._failures += [(status, retry_after, path)] * count

    def request_count(self, path: str | None = None) -> int:
        return sum(1 for _, p, _ in self.requests if path is None or p == path)

    def trace_id(self, index: int) -> str:
        return _hex(self.seed, "trace", index, length=32)

    def trace_start(self, index: int) -> datetime:
        return self.base_time + index * self.spacing

    def trace_rows(self, trace_id: str) -> list[dict[str, Any]]:
        """Return the current rows of a trace (generated or added)."""
        self._ensure_index()
        return [self._row(key) for key in self._by_trace.get(trace_id, [])]

    def add_trace(
        self,
        rows: list[dict[str, Any]] | None = None,
        *,
        start: datetime | None = None,
        index: int | None = None,
    ) -> str:
        """Add a trace (given rows, or generated from `start`), possibly older than the rest."""
        if rows is None:
            index = index if index is not None else 1_000_000 + len(self._extra)
            rows = generate_trace(
                index,
                observations=self.n_observations,
                start=start or self.base_time,
                seed=self.seed + 1,
            )
        with self._lock:
            self._extra[rows[0]["traceId"]] = [dict(r) for r in rows]
            self._index = None
        return rows[0]["traceId"]

    def update_trace(
        self,
        trace_id: str,
        *,
        root: dict[str, Any] | None = None,
        add_rows: list[dict[str, Any]] = (),
    ) -> None:
        """Change an existing trace: update its root row and/or append rows."""
        rows = self.trace_rows(trace_id)
        for row in rows:
            if row["parentObservationId"] is None and root:
                row.update(root)
        with self._lock:
            self._extra[trace_id] = rows + [dict(r) for r in add_rows]
            self._index = None

    # --- data ---------------------------------------------------------------------------------

    def _generated(self, index: int) -> list[dict[str, Any]]:
        return generate_trace(
            index, observations=self.n_observations, start=self.trace_start(index), seed=self.seed
        )

    def _ensure_index(self) -> list[tuple[str, str, str]]:
        with self._lock:
            if self._index is not None:
                return self._index
            keys: list[tuple[str, str, str]] = []
            by_trace: dict[str, list[tuple[str, str, str]]] = {}
            extra_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
            for index in range(self.n_traces):
                trace_id = self.trace_id(index)
                if trace_id in self._extra:
                    continue
                for row in self._rows_of(index):
                    key = (row["startTime"], row["traceId"], row["id"])
                    keys.append(key)
                    by_trace.setdefault(trace_id, []).append(key)
            for trace_id, rows in self._extra.items():
                for row in rows:
                    key = (row["startTime"], row["traceId"], row["id"])
                    keys.append(key)
                    extra_rows[key] = row
                    by_trace.setdefault(trace_id, []).append(key)
            keys.sort()
            self._index, self._by_trace, self._extra_rows = keys, by_trace, extra_rows
            return keys

    def _row(self, key: tuple[str, str, str]) -> dict[str, Any]:
        if key in self._extra_rows:
            return dict(self._extra_rows[key])
        index = self._index_of(key[1])
        for row in self._rows_of(index):
            if row["id"] == key[2]:
                return dict(row)
        raise KeyError(key)

    @cache  # noqa: B019 - one server per process lifetime in tests
    def _index_of(self, trace_id: str) -> int:
        # Generated trace start times are monotonic in the index, so find it by time.
        for key in self._by_trace[trace_id]:
            start = datetime.fromisoformat(key[0].replace("Z", "+00:00"))
            guess = round((start - self.base_time) / self.spacing)
            for index in (guess, guess - 1, guess + 1):
                if 0 <= index < self.n_traces and self.trace_id(index) == trace_id:
                    return index
        raise KeyError(trace_id)

    # --- endpoints ----------------------------------------------------------------------------

    def observations(self, params: dict[str, list[str]]) -> tuple[int, Any]:
        one = {k: v[-1] for k, v in params.items()}
        try:
            limit = int(one.get("limit", 50))
        except ValueError:
            return 400, {"message": "Invalid request data", "error": [{"path": ["limit"]}]}
        if not 0 <= limit <= 1000:
            return 400, {
                "message": "Invalid request data",
                "error": [{"path": ["limit"], "message": "max 1000"}],
            }
        if one.get("parseIoAsJson") == "true":
            return 400, {
                "message": "parseIoAsJson is no longer supported",
                "error": "InvalidRequestError",
            }
        groups = {"core"} | set((one.get("fields") or "core,basic").split(","))
        try:
            predicates, time_from, time_to, trace_ids = self._predicates(params, one)
        except ValueError as exc:
            return 400, {"message": f"Invalid request data: {exc}", "error": "InvalidRequestError"}
        keys = self._ensure_index()
        if trace_ids is not None:
            candidates: list[tuple[str, str, str]] = sorted(
                k for t in trace_ids for k in self._by_trace.get(t, [])
            )
            lo, hi = 0, len(candidates)
        else:
            candidates = keys
            lo = bisect.bisect_left(keys, (time_from,)) if time_from else 0
            hi = bisect.bisect_left(keys, (time_to,)) if time_to else len(keys)
        if one.get("cursor"):
            try:
                c = json.loads(base64.b64decode(one["cursor"]))
                after = (c["lastStartTimeTo"], c["lastTraceId"], c["lastId"])
            except (ValueError, KeyError, TypeError):
                return 400, {"message": "Invalid cursor format", "error": "InvalidRequestError"}
            hi = min(hi, bisect.bisect_left(candidates, after))
        page: list[dict[str, Any]] = []
        position = hi - 1
        while position >= lo and len(page) <= limit:
            key = candidates[position]
            position -= 1
            if time_from and key[0] < time_from or time_to and key[0] >= time_to:
                continue
            row = self._row(key)
            if all(p(row) for p in predicates):
                page.append(row)
        meta: dict[str, Any] = {}
        if len(page) > limit:
            page = page[:limit]
            last = page[-1]
            cursor = {
                "lastStartTimeTo": last["startTime"],
                "lastTraceId": last["traceId"],
                "lastId": last["id"],
            }
            meta["cursor"] = base64.b64encode(json.dumps(cursor).encode()).decode()
        allowed = {f for g in groups for f in FIELD_GROUPS.get(g, ())}
        data = []
        for row in page:
            projected = {k: row[k] for k in FIELD_GROUPS["core"]}
            projected.update({k: row[k] for k in row if k in allowed})
            projected.update({k: (row[k] if "model" in groups else None) for k in ALWAYS})
            if "io" in groups:  # the wire carries input/output as raw strings
                projected.update(
                    {
                        k: v if v is None or isinstance(v, str) else json.dumps(v)
                        for k, v in ((k, row[k]) for k in ("input", "output"))
                    }
                )
            data.append(projected)
        return 200, {"data": data, "meta": meta}

    def _predicates(
        self, params: dict[str, list[str]], one: dict[str, str]
    ) -> tuple[list, str | None, str | None, set[str] | None]:
        preds: list = []
        time_from = _norm_time(one["fromStartTime"]) if "fromStartTime" in one else None
        time_to = _norm_time(one["toStartTime"]) if "toStartTime" in one else None
        trace_ids: set[str] | None = None
        if "filter" in one:
            time_from = time_to = None
            for cond in json.loads(one["filter"]):
                column, op, value = cond["column"], cond["operator"], cond.get("value")
                if column == "startTime":
                    v = _norm_time(value)
                    if op == ">=":
                        time_from = v
                    elif op == "<":
                        time_to = v
                    else:
                        preds.append(_compare(op, v, lambda r: r["startTime"]))
                elif column == "traceId" and op == "any of":
                    trace_ids = set(value)
                elif column in ("tags", "traceTags"):
                    wanted = set(value)
                    preds.append(
                        {
                            "any of": lambda r, w=wanted: bool(w & set(r["tags"])),
                            "all of": lambda r, w=wanted: w <= set(r["tags"]),
                            "none of": lambda r, w=wanted: not (w & set(r["tags"])),
                        }[op]
                    )
                elif column in (
                    "id",
                    "traceId",
                    "traceName",
                    "environment",
                    "name",
                    "type",
                    "level",
                    "userId",
                    "sessionId",
                    "isRootObservation",
                ):
                    preds.append(_compare(op, value, lambda r, c=column: r[c]))
                else:
                    raise ValueError(f"unsupported filter column {column}")
            return preds, time_from, time_to, trace_ids
        for param, column in (
            ("traceId", "traceId"),
            ("name", "name"),
            ("userId", "userId"),
            ("sessionId", "sessionId"),
            ("version", "version"),
            ("level", "level"),
            ("parentObservationId", "parentObservationId"),
        ):
            if param in one:
                value = one[param] or None if param == "parentObservationId" else one[param]
                preds.append(lambda r, c=column, v=value: r[c] == v)
        if "type" in one:
            if one["type"] not in OBS_TYPES:
                raise ValueError("type")
            preds.append(lambda r, v=one["type"]: r["type"] == v)
        if "isRootObservation" in one:
            preds.append(
                lambda r, v=one["isRootObservation"] == "true": r["isRootObservation"] == v
            )
        if "environment" in params:
            envs = set(params["environment"])
            preds.append(lambda r: r["environment"] in envs)
        return preds, time_from, time_to, trace_ids

    def post_scores(self, body: Any) -> tuple[int, Any]:
        self.score_posts += 1
        items = body if isinstance(body, list) else [body]
        if not isinstance(body, (list, dict)):
            return 400, {"message": "Invalid request data", "error": []}
        errors, accepted = [], 0
        for item in items:
            problem = self._score_problem(item)
            if problem:
                errors.append({"message": problem})
                continue
            score_id = item.get("id") or _hex("score", time.time_ns(), length=16)
            with self._lock:
                self.scores[score_id] = {**item, "id": score_id}
                self.score_items.append(score_id)
            accepted += 1
        if isinstance(body, dict):
            return (
                (200, {"id": score_id})
                if not errors
                else (400, {"message": errors[0]["message"], "error": "InvalidRequestError"})
            )
        if errors:
            return 207, {"accepted": accepted, "rejected": len(errors), "errors": errors}
        return 202, {"message": "Accepted"}

    def add_score(
        self,
        trace_id: str,
        name: str,
        value: Any,
        *,
        data_type: str = "BOOLEAN",
        comment: str | None = None,
        observation_id: str | None = None,
    ) -> str:
        """Store a score as if a person gave it in Langfuse (an annotation, a user's thumbs)."""
        score_id = _hex("score", trace_id, name, observation_id or "", length=16)
        with self._lock:
            self.scores[score_id] = {
                "id": score_id,
                "traceId": trace_id,
                "observationId": observation_id,
                "name": name,
                "value": value,
                "dataType": data_type,
                "comment": comment,
                "source": "ANNOTATION",
            }
        return score_id

    def get_scores(self, params: dict[str, list[str]]) -> tuple[int, Any]:
        """``GET /api/public/v3/scores``: filters OR within a param, AND across params;
        cursor-paged, ``limit`` at most 100 (CONTRACT.md 2.7)."""
        one = {k: v[-1] for k, v in params.items() if v}
        try:
            limit = int(one.get("limit", "50"))
            offset = int(base64.urlsafe_b64decode(one["cursor"] + "==")) if one.get("cursor") else 0
        except ValueError:
            return 400, {"message": "Invalid request data", "error": "InvalidRequestError"}
        if not 1 <= limit <= 100:
            return 400, {"message": "limit must be at most 100", "error": "InvalidRequestError"}
        fields = set(filter(None, one.get("fields", "").split(",")))
        if fields - {"details", "subject", "annotation"}:
            return 400, {"message": "Unknown field group", "error": "InvalidRequestError"}
        wanted = {
            key: set(one[key].split(","))
            for key in ("name", "traceId", "dataType", "id")
            if one.get(key)
        }
        with self._lock:
            rows = [
                s
                for s in self.scores.values()
                if all(str(s.get(key)) in values for key, values in wanted.items())
            ]
        page = rows[offset : offset + limit]
        data = []
        for s in page:
            value = s.get("value")
            if s.get("dataType") == "BOOLEAN" and isinstance(value, (int, float)):
                value = bool(value)
            row = {
                "id": s["id"],
                "projectId": self.project["id"],
                "name": s["name"],
                "value": value,
                "dataType": s.get("dataType", "NUMERIC"),
                "source": s.get("source", "API"),
                "timestamp": s.get("timestamp") or "2026-11-20T10:00:00.000Z",
                "environment": s.get("environment") or "default",
                "createdAt": "2026-11-20T10:00:00.000Z",
                "updatedAt": "2026-11-20T10:00:00.000Z",
            }
            if "details" in fields:
                row.update(comment=s.get("comment"), configId=None, metadata=s.get("metadata"))
            if "subject" in fields:
                if s.get("observationId"):
                    row["subject"] = {
                        "kind": "observation",
                        "id": s["observationId"],
                        "traceId": s["traceId"],
                    }
                else:
                    row["subject"] = {"kind": "trace", "id": s["traceId"]}
            data.append(row)
        meta: dict[str, Any] = {"limit": limit}
        if offset + limit < len(rows):
            meta["cursor"] = (
                base64.urlsafe_b64encode(str(offset + limit).encode()).decode().rstrip("=")
            )
        return 200, {"data": data, "meta": meta}

    def _score_problem(self, item: Any) -> str | None:
        if not isinstance(item, dict):
            return "Invalid score: expected an object"
        if item.get("id") in self.reject_score_ids:
            return self.reject_score_ids[item["id"]]
        if not item.get("name"):
            return "Invalid score: name is required"
        # CONTRACT.md 2.6: the subject is a trace (an observation needs its trace too), a
        # session or a dataset run; a score with none would belong to nothing.
        subjects = [k for k in ("traceId", "sessionId", "datasetRunId") if item.get(k)]
        if not subjects:
            return "Invalid score: one of traceId, sessionId or datasetRunId is required"
        if len(subjects) > 1:
            return f"Invalid score: {' and '.join(subjects)} name two subjects"
        if item.get("observationId") and not item.get("traceId"):
            return "Invalid score: observationId requires traceId"
        for key in ("traceId", "sessionId", "datasetRunId", "observationId"):
            if key in item and not isinstance(item[key], str):
                return f"Invalid score: {key} must be a string"
        if "value" not in item or item["value"] is None:
            return "Invalid score: value is required"
        if item.get("dataType") == "BOOLEAN" and item["value"] not in (0, 1):
            return f"Invalid score: BOOLEAN value must be 0 or 1, got {item['value']}"
        env = item.get("environment")
        if env is not None and not ENV_RE.match(env):
            return (
                f"Invalid score: environment {env!r} must be lowercase [a-z0-9-_] "
                "and not start with 'langfuse'"
            )
        return None


def _norm_time(value: str) -> str:
    return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _compare(op: str, value: Any, get: Any) -> Any:
    ops = {
        "=": lambda r: get(r) == value,
        "<>": lambda r: get(r) != value,
        "any of": lambda r: get(r) in value,
        "none of": lambda r: get(r) not in value,
        ">": lambda r: get(r) > value,
        "<": lambda r: get(r) < value,
        ">=": lambda r: get(r) >= value,
        "<=": lambda r: get(r) <= value,
    }
    if op not in ops:
        raise ValueError(f"unsupported operator {op}")
    return ops[op]


def _make_handler(fake: FakeLangfuse) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Headers and body go out in two writes; without this each reply waits ~40 ms
        # for the client's delayed ACK.
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type",
                "text/html; charset=utf-8" if isinstance(body, bytes) else "application/json",
            )
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)
            if fake.record_responses and not isinstance(body, bytes):
                fake.responses.append((urlsplit(self.path).path, status, body))

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            path, params = parts.path, parse_qs(parts.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            with fake._lock:
                fake.requests.append((method, path, params))
            if fake.html_mode:
                return self._send(fake.html_status, HTML)
            if path == "/api/public/health" and method == "GET":
                status = fake.health_status
                return self._send(
                    status,
                    {
                        "status": "OK" if status == 200 else "Database not available",
                        "version": fake.version,
                    },
                )
            if not self._authorised():
                return self._send(
                    401,
                    {
                        "message": "Invalid credentials. "
                        "Confirm that you've configured the correct host."
                    },
                )
            with fake._lock:
                failure = next((f for f in fake._failures if f[2] in (None, path)), None)
                if failure:
                    fake._failures.remove(failure)
            if failure:
                return self._fail(*failure[:2])
            if path == "/api/public/projects" and method == "GET":
                return self._send(200, {"data": [fake.project]})
            if path == "/api/public/v2/observations" and method == "GET":
                if fake.page_delay:
                    time.sleep(fake.page_delay)
                return self._send(*fake.observations(params))
            if path == "/api/public/v3/scores" and method == "GET":
                return self._send(*fake.get_scores(params))
            if path == "/api/public/scores" and method == "POST":
                try:
                    body = json.loads(raw_body or b"null")
                except ValueError:
                    return self._send(400, {"message": "Invalid request data", "error": []})
                return self._send(*fake.post_scores(body))
            if method not in ("GET", "POST"):
                return self._send(
                    405, {"message": "Method not allowed", "error": "MethodNotAllowedError"}
                )
            return self._send(
                404, {"message": f"Route {path} not found", "error": "LangfuseNotFoundError"}
            )

        def _authorised(self) -> bool:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return False
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (fake.public_key, fake.secret_key)

        def _fail(self, status: int, retry_after: str | None) -> None:
            if status == 429:
                after = retry_after or "1"
                seconds = int(after) if after.isdigit() else 1
                reset = datetime.now(UTC) + timedelta(seconds=seconds)
                headers = {
                    "Retry-After": after,
                    "X-RateLimit-Limit": "30",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset.strftime(
                        "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)"
                    ),
                }
                body = {
                    "message": "Rate limit exceeded",
                    "code": "rate_limited",
                    "details": {
                        "retryAfterSeconds": seconds,
                        "limit": 30,
                        "remaining": 0,
                        "resetAt": iso(reset),
                    },
                }
                return self._send(429, body, headers)
            if status == 422:
                return self._send(
                    422,
                    {
                        "message": "Query timed out; narrow the time range.",
                        "error": "Request timed out",
                    },
                )
            if status == 503:
                return self._send(503, {"message": "Service Unavailable"})
            return self._send(
                status, {"message": "Internal Server Error", "error": "simulated failure"}
            )

    return Handler


@contextmanager
def running(**kwargs: Any) -> Iterator[FakeLangfuse]:
    """Run a fake Langfuse in a background thread for the duration of the block."""
    fake = FakeLangfuse(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Langfuse public API on 127.0.0.1.")
    parser.add_argument("--traces", type=int, default=100)
    parser.add_argument("--observations", type=int, default=5)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--public-key", default="pk-lf-fake")
    parser.add_argument("--secret-key", default="sk-lf-fake")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before each observations page"
    )
    args = parser.parse_args()
    fake = FakeLangfuse(
        traces=args.traces,
        observations=args.observations,
        port=args.port,
        public_key=args.public_key,
        secret_key=args.secret_key,
    )
    fake.page_delay = args.delay
    fake._ensure_index()
    first, last = fake.trace_start(0), fake.trace_start(max(args.traces - 1, 0))
    print(
        f"fake Langfuse at {fake.url} keys={args.public_key}/{args.secret_key} "
        f"traces={args.traces} from {iso(first)} to {iso(last)}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        fake._server.serve_forever()


if __name__ == "__main__":
    main()
