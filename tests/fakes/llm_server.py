"""A loopback HTTP server speaking the OpenAI and Anthropic APIs with scripted answers.

Point the real SDKs at it with `server.openai_base_url` / `server.anthropic_base_url`:

    with FakeLLMServer() as server:
        server.push_text("```python\\ndef eval_fn(trace): ...```")
        server.push_error(429, message="slow down")
        ...
        assert "NameError" in server.requests[-1].prompt_text

Replies are consumed in order by whichever API is called. When the queue is empty
the server answers 400 "no scripted reply", which surfaces in the test instead of
hanging or retrying, unless a judge rule is set: then every unscripted request is
answered by the rule, deterministically, so agreement with labels can be asserted:

    server.judge_rule = lambda request: "yes" if "please" in request.prompt_text else "no"
    ...
    assert server.calls == 3
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@dataclass
class Reply:
    """One scripted answer: text with usage, or an HTTP error."""

    text: str = ""
    status: int = 200
    # Error message; "{api_key}" is replaced by the key the client sent, the way
    # OpenAI echoes a bad key back in its 401 message.
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None
    stop_reason: str | None = None
    delay: float = 0.0
    include_usage: bool = True
    # Sent as the 200 answer's body instead of the API's JSON (a broken proxy's answer).
    raw: bytes | None = None


@dataclass
class RecordedRequest:
    """A request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def api(self) -> str:
        return "anthropic" if self.path.endswith("/messages") else "openai"

    @property
    def system(self) -> str:
        if self.api == "anthropic":
            return _content_text(self.body.get("system", ""))
        return "".join(
            _content_text(m.get("content", ""))
            for m in self.body.get("messages", [])
            if m.get("role") in ("system", "developer")
        )

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Return the conversation without the OpenAI system message."""
        return [
            m for m in self.body.get("messages", []) if m.get("role") not in ("system", "developer")
        ]

    @property
    def prompt_text(self) -> str:
        """Return the system prompt and every message's text, joined."""
        parts = [self.system] + [_content_text(m.get("content", "")) for m in self.messages]
        return "\n".join(parts)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def approx_tokens(text: str) -> int:
    """Return a plausible token count for `text` (about four characters a token)."""
    return max(1, round(len(text) / 4)) if text else 0


class FakeLLMServer:
    """Serve scripted LLM replies on 127.0.0.1 from a background thread."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[RecordedRequest] = []
        # Answers unscripted requests when set: request -> reply text.
        self.judge_rule: Callable[[RecordedRequest], str] | None = None
        self.rule_delay = 0.0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Scripting -------------------------------------------------------------

    def push(self, reply: Reply) -> None:
        with self._lock:
            self.replies.append(reply)

    def push_text(self, text: str, **options: Any) -> None:
        """Queue a successful answer with `text`."""
        self.push(Reply(text=text, **options))

    def push_error(
        self,
        status: int,
        *,
        message: str = "",
        headers: dict[str, str] | None = None,
        times: int = 1,
        retry_after_ms: int | None = 1,
    ) -> None:
        """Queue `times` error replies with `status`.

        A tiny `retry-after-ms` is sent by default so SDK retries do not sleep for
        their usual half-second backoff; pass None to leave it out.
        """
        all_headers = dict(headers or {})
        if retry_after_ms is not None:
            all_headers.setdefault("retry-after-ms", str(retry_after_ms))
        for _ in range(times):
            self.push(
                Reply(
                    status=status,
                    message=message or _default_message(status),
                    headers=all_headers,
                )
            )

    @property
    def calls(self) -> int:
        """Return how many completion requests the server has received."""
        with self._lock:
            return len(self.requests)

    # Lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            # Short poll so stop() returns quickly between tests.
            kwargs={"poll_interval": 0.05},
            name="fake-llm",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Serving ---------------------------------------------------------------

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self.replies.popleft() if self.replies else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _default_message(status: int) -> str:
    return {
        400: "Invalid request.",
        401: "Invalid API key.",
        403: "Permission denied.",
        404: "Model not found.",
        429: "Rate limit reached. Please try again later.",
        500: "The server had an error while processing your request.",
        503: "The service is temporarily overloaded.",
    }.get(status, f"HTTP {status}")


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    429: "rate_limit_exceeded",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Keep pytest output clean; requests are recorded instead.

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        path = self.path.split("?", 1)[0]
        if path not in (OPENAI_PATH, ANTHROPIC_PATH):
            self._send(404, {"error": {"message": f"no route {path}"}})
            return
        request = RecordedRequest(
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        self.fake._record(request)
        reply = self.fake._next_reply()
        if reply is None and self.fake.judge_rule is not None:
            reply = Reply(text=self.fake.judge_rule(request), delay=self.fake.rule_delay)
        if reply is None:
            reply = Reply(status=400, message="fake LLM server: no scripted reply left")
        if reply.delay:
            time.sleep(reply.delay)
        api_key = _sent_key(request)
        if reply.status != 200:
            self._send_error(request, reply, api_key)
        elif reply.raw is not None:
            self._send(200, reply.raw, reply.headers)
        elif request.api == "anthropic":
            self._send(200, _anthropic_body(request, reply), reply.headers)
        else:
            self._send(200, _openai_body(request, reply), reply.headers)

    def _send_error(self, request: RecordedRequest, reply: Reply, api_key: str) -> None:
        message = reply.message.replace("{api_key}", api_key)
        if request.api == "anthropic":
            error_type = _ANTHROPIC_ERROR_TYPES.get(reply.status, "api_error")
            body = {"type": "error", "error": {"type": error_type, "message": message}}
        else:
            error_type = _OPENAI_ERROR_TYPES.get(reply.status, "server_error")
            body = {
                "error": {
                    "message": message,
                    "type": error_type,
                    "param": None,
                    "code": error_type,
                }
            }
        self._send(reply.status, body, reply.headers)

    def _send(
        self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # The client gave up (a timeout test); nothing to answer.


def _sent_key(request: RecordedRequest) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return request.headers.get("x-api-key", "")


def _usage(request: RecordedRequest, reply: Reply) -> tuple[int, int]:
    input_tokens = reply.input_tokens
    if input_tokens is None:
        # Chat templates add a few tokens per message on top of the content.
        input_tokens = approx_tokens(request.prompt_text) + 4 * (len(request.messages) + 1)
    output_tokens = (
        reply.output_tokens if reply.output_tokens is not None else approx_tokens(reply.text)
    )
    return input_tokens, output_tokens


def _openai_body(request: RecordedRequest, reply: Reply) -> dict[str, Any]:
    input_tokens, output_tokens = _usage(request, reply)
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake{len(request.body)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or request.body.get("model", "fake-model"),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.text,
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": reply.stop_reason or "stop",
            }
        ],
        "system_fingerprint": "fp_fake",
    }
    if reply.include_usage:
        body["usage"] = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
    return body


def _anthropic_body(request: RecordedRequest, reply: Reply) -> dict[str, Any]:
    input_tokens, output_tokens = _usage(request, reply)
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": reply.model or request.body.get("model", "fake-model"),
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": reply.stop_reason or "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """Yield a running fake LLM server, stopped after the test."""
    with FakeLLMServer() as server:
        yield server
