"""A loopback HTTP server speaking OpenAI's stored chat completions API.

    GET /v1/chat/completions                    ?limit&after&order&model&metadata[k]=v
    GET /v1/chat/completions/{id}/messages      ?limit&after&order
    GET /v1/responses/{id}                      a stored Responses API response
    GET /v1/responses/{id}/input_items          ?limit&after&order, its input items

Cursor pagination as OpenAI does it (``data``, ``first_id``, ``last_id``, ``has_more``;
``after`` is the id of the last item of the previous page), a bearer key checked on every
request (401 in OpenAI's error shape otherwise). Validated by driving the real `openai`
SDK against it (tests/integrations/test_openai_source.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import pytest

API_KEY = "sk-test-store"


@dataclass
class StoredCompletion:
    completion: dict[str, Any]
    messages: list[dict[str, Any]]


@dataclass
class FakeOpenAIStore:
    api_key: str = API_KEY
    completions: list[StoredCompletion] = field(default_factory=list)
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    # Status codes to answer the next requests with, in order (then normal answers).
    failures: list[int] = field(default_factory=list)
    # Answer the next list requests with items that are not completions (a broken proxy).
    malformed: int = 0
    # Answer the next requests with a JSON body cut short (a proxy dropping the connection).
    truncated: int = 0
    # Completion ids whose messages requests are answered with this status.
    broken_messages: dict[str, int] = field(default_factory=dict)
    # Responses API responses by id, with their input items (``add_response``).
    responses: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        # Completions by id, so a messages request is not a scan of the whole store.
        self._by_id = {s.completion["id"]: s for s in self.completions}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(
        self,
        cid: str,
        *,
        created: int,
        model: str = "gpt-4o-mini",
        metadata: dict[str, str] | None = None,
        user: str = "Hello",
        answer: str = "Hi there",
        tool_calls: list[dict[str, Any]] | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        """Store a completion the way OpenAI keeps one created with ``store=True``."""
        messages = [*(history or []), {"role": "user", "content": user}]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tool_calls else answer,
            "refusal": None,
            "annotations": [],
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        completion = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "metadata": metadata or {},
            "request_id": f"req_{cid}",
            "tool_choice": None,
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            "seed": 1,
            "top_p": 1.0,
            "temperature": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "system_fingerprint": None,
            "input_user": None,
            "service_tier": "default",
            "tools": None,
            "response_format": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                    "logprobs": None,
                }
            ],
        }
        stored = [
            {"id": f"{cid}-{i}", "content_parts": None, "name": None, **m}
            for i, m in enumerate(messages)
        ]
        with self._lock:
            self.completions.append(StoredCompletion(completion, stored))
            self._by_id[cid] = self.completions[-1]

    def add_response(
        self, rid: str, *, user: str = "Hello", answer: str = "Hi there", model: str = "gpt-4.1"
    ) -> None:
        """Store a response the way OpenAI keeps one created with ``store=True`` (the
        Agents SDK's default model), with its input items."""
        response = {
            "id": rid,
            "object": "response",
            "created_at": 1760000000,
            "status": "completed",
            "model": model,
            "output": [
                {
                    "id": f"msg_{rid}",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": answer, "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 21,
                "output_tokens": 7,
                "total_tokens": 28,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
        items = [
            {
                "id": f"in_{rid}",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": user}],
            }
        ]
        with self._lock:
            self.responses[rid] = (response, items)

    # --- answers ---------------------------------------------------------------------------

    def list_completions(self, query: dict[str, list[str]]) -> dict[str, Any]:
        rows = sorted(self.completions, key=lambda s: (s.completion["created"], s.completion["id"]))
        if _one(query, "order", "asc") == "desc":
            rows.reverse()
        if model := _one(query, "model"):
            rows = [s for s in rows if s.completion["model"] == model]
        wanted = {k[9:-1]: v[0] for k, v in query.items() if k.startswith("metadata[")}
        rows = [
            s for s in rows if all(s.completion["metadata"].get(k) == v for k, v in wanted.items())
        ]
        return _page([s.completion for s in rows], query)

    def list_messages(self, cid: str, query: dict[str, list[str]]) -> dict[str, Any] | None:
        stored = self._by_id.get(cid)
        if stored is None:
            return None
        rows = list(stored.messages)
        if _one(query, "order", "asc") == "desc":
            rows.reverse()
        return _page(rows, query)


def _one(query: dict[str, list[str]], key: str, default: str | None = None) -> str | None:
    return query.get(key, [default])[0]


def _page(rows: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    limit = min(int(_one(query, "limit", "20")), 100)
    if after := _one(query, "after"):
        ids = [r["id"] for r in rows]
        rows = rows[ids.index(after) + 1 :] if after in ids else []
    data = rows[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


def _handler(store: FakeOpenAIStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # connections kept alive, as the real API's are
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any], *, cut: bool = False) -> None:
            raw = json.dumps(body).encode()
            raw = raw[: len(raw) // 2] if cut else raw
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, message: str, code: str | None = None) -> None:
            error = {"message": message, "type": "invalid_request_error", "param": None}
            self._send(status, {"error": {**error, "code": code}})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            store.requests.append((url.path, query))
            with store._lock:
                failure = store.failures.pop(0) if store.failures else None
            if failure:
                self._error(failure, f"scripted failure {failure}")
                return
            if store.malformed:
                store.malformed -= 1
                self._send(200, {"object": "list", "data": ["chatcmpl-1"], "has_more": False})
                return
            if store.truncated:
                store.truncated -= 1
                self._send(200, store.list_completions(query), cut=True)
                return
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if key != store.api_key:
                self._error(
                    401, f"Incorrect API key provided: {key[:3]}***{key[-4:]}.", "invalid_api_key"
                )
                return
            parts = url.path.strip("/").split("/")
            if parts == ["v1", "chat", "completions"]:
                self._send(200, store.list_completions(query))
            elif (
                len(parts) == 5
                and parts[:3] == ["v1", "chat", "completions"]
                and parts[4] == "messages"
            ):
                page = store.list_messages(parts[3], query)
                if parts[3] in store.broken_messages:
                    self._error(store.broken_messages[parts[3]], "scripted messages failure")
                elif page is None:
                    self._error(404, f"No chat completion found with id '{parts[3]}'.")
                else:
                    self._send(200, page)
            elif len(parts) in (3, 4) and parts[:2] == ["v1", "responses"]:
                stored = self.responses_answer(parts, query)
                if stored is None:
                    self._error(404, f"Response with id '{parts[2]}' not found.")
                else:
                    self._send(200, stored)
            else:
                self._error(404, f"Invalid URL (GET {url.path})")

        def responses_answer(self, parts: list[str], query: dict[str, list[str]]) -> Any:
            found = store.responses.get(parts[2])
            if found is None or (len(parts) == 4 and parts[3] != "input_items"):
                return None
            return found[0] if len(parts) == 3 else _page(found[1], query)

    return Handler


@pytest.fixture
def openai_store() -> Iterator[FakeOpenAIStore]:
    """Yield a running fake OpenAI stored-completions server, stopped after the test."""
    with FakeOpenAIStore() as server:
        yield server
