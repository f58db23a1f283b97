"""OpenAI stored chat completions, pulled through the official `openai` SDK.

Only completions created with ``store=True`` are listed (``GET /chat/completions``); their
input messages come from ``GET /chat/completions/{id}/messages``. The scan runs newest
first and stops at the watermark, so a sync reads only what is new; its resume cursor
holds the last completion id read (the ``after`` parameter) and the scan's bounds.
OpenAI has no API for scores: this source takes no verdicts back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx2
import openai
from openai._models import FinalRequestOptions

from integrations.adapters.base import (
    Adapter,
    AdapterError,
    Capabilities,
    ConnectionInfo,
    ScoreIn,
    ScorePushResult,
    SourceSettings,
    TraceFilters,
    TracePage,
    as_utc,
    format_time,
    invalid_settings,
    parse_io,
)
from iofold.lib import jsontext, outbound

OPENAI_API = "https://api.openai.com/v1"
PAGE_LIMIT = 100  # the API's maximum
# Messages requests in flight at once (one per completion of a page).
MESSAGE_READERS = 4
# How far ahead of this machine's clock a completion's creation time may be and still be
# a time in seconds from a clock that runs ahead (further is milliseconds, or no time).
CREATED_SLACK = timedelta(days=1)
# Metadata keys a team may use for the conversation a completion belongs to.
SESSION_KEYS = ("session_id", "conversation_id", "thread_id", "group_id")
USER_KEYS = ("user_id", "user")


class OpenAIAdapter(Adapter):
    """Read stored chat completions; no push-back, since OpenAI has no score API."""

    kind = "openai"
    label = "OpenAI"
    capabilities = Capabilities(pull=True, push_back=False, conversations=True)
    example_host = f"{OPENAI_API} or an OpenAI-compatible server's /v1 URL"
    default_host = OPENAI_API

    keys = ("secret_key",)  # the API key
    keys_missing = "Enter the API key."

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return the filters tidied up."""
        try:
            return clean_options(options)
        except ValueError as exc:
            raise invalid_settings(str(exc)) from None

    @classmethod
    def from_settings(cls, settings: SourceSettings, **tuning: Any) -> OpenAIAdapter:
        return cls(
            host=settings.host,
            secret_key=settings.secret_key,
            options=settings.options,
            **tuning,
        )

    def __init__(
        self,
        *,
        host: str,
        public_key: str = "",
        secret_key: str,
        options: dict[str, Any] | None = None,
        timeout: float = 30.0,
        max_attempts: int = 3,
        page_limit: int = PAGE_LIMIT,
        initial_lookback: timedelta = timedelta(days=30),
        **_ignored: Any,
    ) -> None:
        self.initial_lookback = initial_lookback
        options = clean_options(options or {})
        self.metadata_filter: dict[str, str] = options.get("metadata", {})
        self.model_filter: str | None = options.get("model") or None
        self.page_limit = page_limit
        self.host = (host or OPENAI_API).rstrip("/")
        self._client = openai.OpenAI(
            api_key=secret_key,
            base_url=self.host,
            timeout=timeout,
            max_retries=max(max_attempts - 1, 0),
            # The base URL is the workspace's choice: connect only where it may point.
            http_client=openai.DefaultHttpxClient(transport=outbound.guarded_transport(httpx2)),
        )
        self._request_options = FinalRequestOptions.construct(method="get", url="")

    # --- connection ------------------------------------------------------------------------

    def test_connection(self) -> ConnectionInfo:
        """List one stored completion: proves the key, the URL and the store permission."""
        self._call(self._client.chat.completions.list, limit=1, **self._filters())
        return ConnectionInfo(
            project_id="openai",
            project_name=f"Stored completions at {self.host}",
            platform=self.label,
            summary=f"Connected to OpenAI at {self.host}: the key can read its stored chat "
            "completions.",
        )

    # --- pull --------------------------------------------------------------------------------

    def fetch_traces(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        filters: TraceFilters,
        cursor: str | None,
    ) -> Iterator[TracePage]:
        """Yield pages of traces, newest first, down to ``since`` (its second included).

        The last page's ``max_timestamp`` is the newest completion of the whole scan, which
        becomes the next sync's watermark.
        """
        state = decode_cursor(cursor) if cursor else {}
        if not state:
            # A first sync reads the last 30 days (how long OpenAI keeps most of them),
            # as the form says, unless a start date is set.
            floor = max(
                (as_utc(d) for d in (since, filters.since_date) if d is not None),
                default=datetime.now(UTC) - self.initial_lookback,
            )
            state = {"after": None, "floor": int(floor.timestamp()) if floor else None}
            state["newest"] = None
        while True:
            page = self._get(
                "/chat/completions",
                required=("id", "created"),
                limit=self.page_limit,
                order="desc",
                **({"after": state["after"]} if state["after"] else {}),
                **self._filters(),
            )
            wanted: list[dict[str, Any]] = []
            reached_floor = False
            data = page["data"]
            for completion in data:
                created = self._created(completion)
                if state["floor"] is not None and created < state["floor"]:
                    reached_floor = True
                    break
                # The watermark never passes this machine's clock: a completion from a
                # store whose clock runs ahead is read, and what is created meanwhile (at
                # an earlier time than it) is not left below the next sync's floor.
                seen = min(created, int(datetime.now(UTC).timestamp()))
                if state["newest"] is None or seen > state["newest"]:
                    state["newest"] = seen
                state["after"], state["current"] = completion["id"], created
                if until is not None and created > as_utc(until).timestamp():
                    continue
                wanted.append(completion)
            # A request per completion for its messages: a few at a time, answers in order.
            with ThreadPoolExecutor(MESSAGE_READERS, thread_name_prefix="openai-messages") as pool:
                histories = pool.map(self._messages, [c["id"] for c in wanted])
                traces = [
                    trace
                    for completion, messages in zip(wanted, histories, strict=True)
                    if filters.matches(trace := normalise_completion(completion, messages))
                ]
            done = reached_floor or not data or page.get("has_more") is False
            newest = _from_epoch(state["newest"]) if state["newest"] is not None else None
            yield TracePage(
                traces=traces, cursor=None if done else encode_cursor(state), max_timestamp=newest
            )
            if done:
                return

    def _messages(self, completion_id: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        after: str | None = None
        path = f"/chat/completions/{quote(completion_id, safe='')}/messages?limit=100&order=asc"
        while True:
            # The query is written into the path: the SDK merging a params mapping into the
            # URL took about 0.07 of each request's 0.8 ms of CPU, and every completion
            # is a request.
            page = self._get(
                path + (f"&after={quote(after, safe='')}" if after else ""), required=("id",)
            )
            data = page["data"]
            messages.extend(_without_nulls(m) for m in data)
            if not data or page.get("has_more") is not True:
                return messages
            after = data[-1]["id"]

    def _get(self, path: str, *, required: tuple[str, ...], **params: Any) -> dict[str, Any]:
        """GET a list endpoint as plain JSON: the SDK's transport, auth, retries and errors,
        without building a pydantic model of every item (most of a sync's time otherwise).

        Every item must be an object with the ``required`` keys, as the SDK's models would
        have insisted."""
        # The SDK's request pipeline (auth, retries, errors) with less of its per-request
        # work, since every stored completion is a request: options copied from a template
        # (read only, shared by the reader threads) instead of built with their defaults
        # deep-copied, the whole URL (not merged into the base URL, a URL parse), and the
        # HTTP response handed over as is (orjson reads it). Together about a sixth of each
        # request's CPU.
        options = self._request_options.model_copy(
            update={"url": self.host + path, "params": params}
        )
        response = self._call(self._client.request, httpx2.Response, options)
        try:
            page = jsontext.loads_as_json(response.content)
        except ValueError:
            page = None
        data = page.get("data") if isinstance(page, dict) else None
        if not isinstance(data, list) or not all(
            isinstance(item, dict) and all(item.get(k) is not None for k in required)
            for item in data
        ):
            raise AdapterError(
                f"{self.host} answered {path} with something other than a list of "
                f"objects with {', '.join(required)}.",
                permanent=True,
                code="invalid_response",
            )
        return page

    def _created(self, completion: dict[str, Any]) -> int:
        """Return when a completion was created, in Unix seconds; ``AdapterError`` when its
        ``created`` is no past time in seconds.

        A time in milliseconds (an OpenAI-compatible store's) raised out of the sync; one
        that still fits a date (the year 5000, days ahead) is no clock's skew either.
        """
        value = completion["created"]
        latest = datetime.now(UTC) + CREATED_SLACK
        if not isinstance(value, int | float) or not 0 <= value <= latest.timestamp():
            raise AdapterError(
                f"{self.host} answered that {str(completion['id'])[:80]} was created at "
                f"{str(value)[:40]}, not a past time in Unix seconds.",
                permanent=True,
                code="invalid_response",
            )
        return int(value)

    def _filters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.metadata_filter:
            out["metadata"] = self.metadata_filter
        if self.model_filter:
            out["model"] = self.model_filter
        return out

    @staticmethod
    def cursor_progress(cursor: str) -> float:
        """Share of the newest-to-watermark range scanned; 0 when the range is unknown."""
        state = decode_cursor(cursor)
        newest, current, floor = state.get("newest"), state.get("current"), state.get("floor")
        if None in (newest, current, floor) or newest <= floor:
            return 0.0
        return max(0.0, min(0.99, (newest - current) / (newest - floor)))

    def push_scores(self, scores: list[ScoreIn]) -> ScorePushResult:
        """OpenAI has no score API; verdicts stay in iofold."""
        raise AdapterError(
            "OpenAI has no API to receive scores; verdicts stay in iofold.",
            permanent=True,
            code="unsupported",
        )

    # --- errors ------------------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except openai.AuthenticationError as exc:
            raise AdapterError(
                f"OpenAI rejected the API key (HTTP 401): {_detail(exc)}",
                permanent=True,
                code="auth",
            ) from None
        except openai.PermissionDeniedError as exc:
            raise AdapterError(
                "The API key may not read stored completions (HTTP 403; it needs read access "
                f"to Chat Completions): {_detail(exc)}",
                permanent=True,
                code="auth",
            ) from None
        except openai.NotFoundError:
            raise AdapterError(
                f"{self.host} has no /chat/completions listing (HTTP 404); is it an OpenAI "
                "API base URL such as https://api.openai.com/v1?",
                permanent=True,
                code="not_openai",
            ) from None
        except openai.RateLimitError as exc:
            raise AdapterError(
                f"OpenAI is rate limiting the sync (HTTP 429): {_detail(exc)}",
                permanent=False,
                code="rate_limited",
            ) from None
        except openai.APITimeoutError:
            raise AdapterError(
                f"{self.host} did not answer in time.", permanent=False, code="timeout"
            ) from None
        except openai.APIConnectionError as exc:
            refusal = outbound.refusal_behind(exc)
            if refusal is not None:
                raise AdapterError(refusal.message, permanent=True, code="unreachable") from None
            raise AdapterError(
                f"Could not connect to {self.host}.", permanent=False, code="unreachable"
            ) from None
        except openai.APIStatusError as exc:
            server = exc.status_code >= 500
            raise AdapterError(
                f"OpenAI answered HTTP {exc.status_code}: {_detail(exc)}",
                permanent=not server,
                code="server_error" if server else "bad_request",
            ) from None
        except openai.OpenAIError as exc:  # a body the SDK could not read
            raise AdapterError(
                f"Unexpected answer from {self.host}: {exc}",
                permanent=False,
                code="invalid_response",
            ) from None


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:300]
    return str(exc.message)[:300]


def _from_epoch(seconds: int | float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    """Return a cursor's state; a cursor from elsewhere (or damaged) restarts the scan."""
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        return {}
    if not isinstance(state, dict) or "after" not in state or "floor" not in state:
        return {}
    state.setdefault("newest", None)
    return state


# --- options -----------------------------------------------------------------------------


def clean_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return the OpenAI options (``metadata``: {key: value}, ``model``: str), validated.

    Raises ``ValueError`` with a sentence for a person when they are not usable.
    """
    if not isinstance(options, dict):
        raise ValueError("Options must be an object.")
    out: dict[str, Any] = {}
    metadata = options.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = parse_metadata_filter(metadata)
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ValueError("The metadata filter maps keys to text values.")
    if len(metadata) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in metadata.items()):
        raise ValueError("The metadata filter takes at most 16 keys (64 characters, values 512).")
    if metadata:
        out["metadata"] = {k.strip(): v.strip() for k, v in metadata.items() if k.strip()}
    model = options.get("model") or ""
    if not isinstance(model, str) or len(model) > 200:
        raise ValueError("The model filter is one model name.")
    if model.strip():
        out["model"] = model.strip()
    return out


def parse_metadata_filter(text: str) -> dict[str, str]:
    """Parse ``key=value`` pairs separated by commas or new lines."""
    out: dict[str, str] = {}
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"“{part.strip()}” is not key=value.")
        out[key.strip()] = value.strip()
    return out


# --- normalising -------------------------------------------------------------------------


def _without_nulls(value: Any) -> Any:
    """Drop null fields at every level, as the SDK's ``model_dump(exclude_none=True)`` did."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def normalise_completion(
    completion: dict[str, Any], messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """Turn a stored chat completion (as JSON) and its input messages into a trace."""
    cid = str(completion["id"])
    created = _from_epoch(completion.get("created") or 0)
    metadata = {k: v for k, v in (completion.get("metadata") or {}).items() if v is not None}
    choices = completion.get("choices") or []
    message = (choices[0].get("message") if choices else None) or {}
    output = {k: v for k, v in message.items() if v not in (None, [], {})}
    usage = completion.get("usage") or {}
    step_usage = None
    if isinstance(usage.get("prompt_tokens"), int):
        step_usage = {
            "input": usage["prompt_tokens"],
            "output": int(usage.get("completion_tokens") or 0),
        }
    model = completion.get("model")
    time = format_time(created)
    steps: list[dict[str, Any]] = [
        {
            "id": cid,
            "parent_id": None,
            "type": "llm",
            "name": model or "chat.completion",
            "input": messages,
            "output": output,
            "error": None,
            "model": model,
            "usage": step_usage,
            "start_time": time,
            "end_time": time,
            "metadata": {"finish_reason": choices[0].get("finish_reason")} if choices else {},
        }
    ]
    # Tool calls: earlier ones (in the input history, answered by role=tool messages) and
    # the ones this completion asks for (no result yet).
    results = {m.get("tool_call_id"): m.get("content") for m in messages if m.get("role") == "tool"}
    seen: set[str] = {cid}
    calls = [c for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []]
    for call in [*calls, *(output.get("tool_calls") or [])]:
        call_id = str(call.get("id") or f"{cid}-tool-{len(steps)}")
        if call_id in seen:
            continue
        seen.add(call_id)
        function = call.get("function") or call.get("custom") or {}
        steps.append(
            {
                "id": call_id,
                "parent_id": cid,
                "type": "tool",
                "name": str(function.get("name") or "tool"),
                "input": parse_io(function.get("arguments", function.get("input"))),
                "output": parse_io(results[call_id]) if call_id in results else None,
                "error": None,
                "model": None,
                "usage": None,
                "start_time": None,
                "end_time": None,
                "metadata": {"pending": call_id not in results},
            }
        )
    session = next((str(metadata[k]) for k in SESSION_KEYS if metadata.get(k)), None)
    user = next((str(metadata[k]) for k in USER_KEYS if metadata.get(k)), None)
    extra = {
        key: completion.get(key)
        for key in ("model", "service_tier", "system_fingerprint")
        if completion.get(key) is not None
    }
    return {
        "id": cid,
        "name": metadata.get("name") or model or "chat.completion",
        "timestamp": time,
        "input": messages,
        "output": output.get("content") if set(output) <= {"role", "content"} else output,
        "steps": steps,
        "metadata": {**metadata, **extra, "usage": usage} if usage else {**metadata, **extra},
        "tags": [],
        "user_id": user,
        "session_id": session,
        "latency_ms": None,
        "cost": None,
    }
