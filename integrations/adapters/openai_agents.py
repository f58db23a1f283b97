"""OpenAI Agents SDK traces, as its ``BackendSpanExporter`` posts them.

The exporter sends ``{"data": [item, ...]}`` where an item is a trace
(``{"object": "trace", "id", "workflow_name", "group_id", "metadata"}``) or a span
(``{"object": "trace.span", "id", "trace_id", "parent_id", "started_at", "ended_at",
"span_data": {"type": ...}, "error", "metadata"?}``); see ``agents/tracing/traces.py``,
``spans.py`` and ``span_data.py`` of the ``openai-agents`` package. A trace arrives over
several posts (the trace when it starts, its spans as they end, in batches), so each post
is merged into what is stored: steps by span id, the trace's fields when it comes. A
resent post merges to the same trace, which the store then finds unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2
import openai

from integrations.adapters.base import (
    format_time,
    parse_io,
    parse_time,
    time_problem,
)
from iofold.lib import outbound

SOURCE = "openai-agents"
MAX_ITEMS = 1000  # the SDK's batches hold 128 by default
MAX_ID_LENGTH = 255

# Agents SDK span type → normalised step type.
STEP_TYPES = {
    "agent": "agent",
    "generation": "llm",
    "response": "llm",
    "function": "tool",
    "mcp_tools": "tool",
    "handoff": "event",
    "guardrail": "event",
    "custom": "span",
    "task": "chain",
    "turn": "chain",
}


@dataclass
class Batch:
    """One post, grouped by trace id: trace objects, spans and what was refused."""

    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    spans: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trace_ids(self) -> list[str]:
        return sorted(set(self.traces) | set(self.spans))

    @property
    def accepted(self) -> int:
        return len(self.traces) + sum(len(s) for s in self.spans.values())


class PayloadError(ValueError):
    """The body is not an exporter payload at all."""


def read_payload(body: Any) -> Batch:
    """Group a posted body's items by trace; refuse items that are not trace or span objects."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise PayloadError('Send {"data": [trace and span objects]}, as the Agents SDK does.')
    items = body["data"]
    if len(items) > MAX_ITEMS:
        raise PayloadError(f"The batch has {len(items)} items; send at most {MAX_ITEMS}.")
    batch = Batch()
    for index, item in enumerate(items):
        problem = _problem(item)
        if problem:
            batch.errors.append({"index": index, "error": problem})
        elif item["object"] == "trace":
            batch.traces[item["id"]] = item
        else:
            batch.spans.setdefault(item["trace_id"], {})[item["id"]] = item
    return batch


def _problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "item must be a JSON object"
    kind = item.get("object")
    if kind not in ("trace", "trace.span"):
        return "object must be 'trace' or 'trace.span'"
    keys = ("id",) if kind == "trace" else ("id", "trace_id")
    for key in keys:
        value = item.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
            return f"{key} must be a non-empty string of at most {MAX_ID_LENGTH} characters"
    if kind == "trace.span":
        if not isinstance(item.get("span_data"), dict):
            return "span_data must be a JSON object"
        if item.get("parent_id") is not None and not isinstance(item["parent_id"], str):
            return "parent_id must be a string or null"
        for key in ("started_at", "ended_at"):
            if isinstance(item.get(key), str) and (problem := time_problem(item[key])):
                return f"{key} {problem}"
    elif item.get("metadata") is not None and not isinstance(item["metadata"], dict):
        return "metadata must be an object or null"
    return None


# --- normalising -------------------------------------------------------------------------


def span_step(span: dict[str, Any]) -> dict[str, Any]:
    """Return the normalised step of one span."""
    data = span["span_data"]
    kind = str(data.get("type") or "custom")
    metadata: dict[str, Any] = {"span_type": kind}
    if span.get("parent_id"):
        # Kept so that a parent arriving in a later post is linked then.
        metadata["parent_span_id"] = span["parent_id"]
    if isinstance(span.get("metadata"), dict):
        metadata.update(span["metadata"])
    step: dict[str, Any] = {
        "id": span["id"],
        "parent_id": None,
        "type": STEP_TYPES.get(kind, "span"),
        "name": kind,
        "input": None,
        "output": None,
        "error": _error(span.get("error")),
        "model": None,
        "usage": None,
        "start_time": _time(span.get("started_at")),
        "end_time": _time(span.get("ended_at")),
        "metadata": metadata,
    }
    if kind == "agent":
        step["name"] = str(data.get("name") or "agent")
        metadata.update(
            {k: data.get(k) for k in ("handoffs", "tools", "output_type") if data.get(k)}
        )
    elif kind == "generation":
        step.update(
            name=str(data.get("model") or "generation"),
            input=data.get("input"),
            output=data.get("output"),
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            usage=_usage(data.get("usage")),
        )
        if data.get("model_config"):
            metadata["model_config"] = data["model_config"]
    elif kind == "response":
        step.update(name="response", usage=_usage(data.get("usage")))
        metadata["response_id"] = data.get("response_id")
    elif kind == "function":
        step.update(
            name=str(data.get("name") or "function"),
            input=parse_io(data.get("input")),
            output=parse_io(data.get("output")),
        )
        if data.get("mcp_data"):
            metadata["mcp_data"] = data["mcp_data"]
    elif kind == "handoff":
        step["name"] = f"handoff to {data.get('to_agent') or '?'}"
        metadata.update(from_agent=data.get("from_agent"), to_agent=data.get("to_agent"))
    elif kind == "guardrail":
        step["name"] = str(data.get("name") or "guardrail")
        metadata["triggered"] = bool(data.get("triggered"))
    else:  # custom (also the SDK's task and turn spans), transcription, speech, mcp_tools
        step["name"] = str(data.get("name") or kind)
        extra = {k: v for k, v in data.items() if k not in ("type", "name")}
        if kind == "custom":
            step["output"] = extra.get("data")
            usage = (
                (extra.get("data") or {}).get("usage")
                if isinstance(extra.get("data"), dict)
                else None
            )
            step["usage"] = _usage(usage)
        else:
            step["input"], step["output"] = extra.get("input"), extra.get("output")
            metadata.update({k: v for k, v in extra.items() if k not in ("input", "output")})
    return step


def merge_trace(
    stored: dict[str, Any] | None,
    trace_id: str,
    trace: dict[str, Any] | None,
    spans: dict[str, dict[str, Any]],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Return the normalised trace: ``stored`` (or nothing) with this post's parts merged in."""
    base = dict(stored or {})
    metadata = dict(base.get("metadata") or {})
    metadata["source"] = SOURCE
    steps = {s["id"]: s for s in base.get("steps") or []}
    for span in spans.values():
        steps[span["id"]] = span_step(span)
    if trace is not None:
        if isinstance(trace.get("metadata"), dict):
            metadata.update(trace["metadata"])
        if trace.get("group_id") is not None:
            metadata["group_id"] = str(trace["group_id"])
        base["name"] = str(trace.get("workflow_name") or "Agent workflow")
        base["session_id"] = str(trace["group_id"]) if trace.get("group_id") else None
    for step in steps.values():
        parent = step["metadata"].get("parent_span_id")
        step["parent_id"] = parent if parent in steps else None
    ordered = sorted(steps.values(), key=lambda s: (s["start_time"] or "", s["id"]))
    starts = [parse_time(s["start_time"]) for s in ordered if s["start_time"]]
    ends = [parse_time(s["end_time"]) for s in ordered if s["end_time"]]
    times = starts + ([parse_time(base["timestamp"])] if base.get("timestamp") else [])
    timestamp = min(times) if times else (now or datetime.now(UTC))
    generations = model_steps(ordered)
    user_id = metadata.get("user_id")
    return {
        "id": trace_id,
        "name": base.get("name") or "Agent workflow",
        "timestamp": format_time(timestamp),
        "input": generations[0]["input"] if generations else base.get("input"),
        "output": generations[-1]["output"] if generations else base.get("output"),
        "steps": ordered,
        "metadata": metadata,
        "tags": list(base.get("tags") or []),
        "user_id": str(user_id) if user_id is not None else None,
        "session_id": base.get("session_id"),
        "latency_ms": (
            round((max(ends) - min(starts)).total_seconds() * 1000, 3) if starts and ends else None
        ),
        "cost": None,
    }


def model_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the steps the trace's input and output come from: generations, and the
    response steps whose content was read."""
    return [
        s
        for s in steps
        if s["metadata"].get("span_type") == "generation"
        or (s["metadata"].get("span_type") == "response" and s["output"] is not None)
    ]


def _time(value: Any) -> str | None:
    return format_time(parse_time(value)) if isinstance(value, str) and value else None


def _error(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, dict):
        message = str(error.get("message") or "error")
        return f"{message}: {error['data']}" if error.get("data") else message
    return str(error)


def _usage(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    tokens_in = usage.get("input_tokens", usage.get("prompt_tokens"))
    tokens_out = usage.get("output_tokens", usage.get("completion_tokens"))
    if not isinstance(tokens_in, int) or isinstance(tokens_in, bool):
        return None
    if not isinstance(tokens_out, int) or isinstance(tokens_out, bool):
        tokens_out = 0
    return {"input": tokens_in, "output": tokens_out}


# --- response content --------------------------------------------------------------------
# A ``response`` span carries only its response id: the content is read afterwards from
# the Responses API with the receiving source's key (``GET /responses/{id}`` and its
# ``input_items``), as OpenAI's own trace viewer does.

MAX_RESPONSES = 50  # responses read per trace; a longer run keeps the rest empty
RESPONSE_TIMEOUT = 10.0
# Step metadata ``response_content``: "filled", or "not_stored" (the API answered 404).
NOT_STORED = "not_stored"


def unread_responses(trace: dict[str, Any]) -> list[str]:
    """Return the response ids of the trace's response steps not read yet (at most
    ``MAX_RESPONSES``)."""
    ids = [
        str(step["metadata"]["response_id"])
        for step in trace.get("steps") or []
        if step["metadata"].get("span_type") == "response"
        and step["metadata"].get("response_id")
        and not step["metadata"].get("response_content")
    ]
    return ids[:MAX_RESPONSES]


def fill_responses(trace: dict[str, Any], read: dict[str, dict[str, Any] | None]) -> dict:
    """Return the trace with the response steps of ``read`` (id → content, or None when
    the API does not store it) filled in, and its input and output taken from them."""
    steps = []
    for step in trace.get("steps") or []:
        rid = step["metadata"].get("response_id")
        if step["metadata"].get("span_type") == "response" and rid in read:
            content = read[rid]
            step = {**step, "metadata": {**step["metadata"]}}
            if content is None:
                step["metadata"]["response_content"] = NOT_STORED
            else:
                step["metadata"]["response_content"] = "filled"
                step.update(
                    input=content["input"],
                    output=content["output"],
                    model=content["model"],
                    usage=_usage(content["usage"]) or step["usage"],
                )
        steps.append(step)
    llm = model_steps(steps)
    return {
        **trace,
        "steps": steps,
        "input": llm[0]["input"] if llm else trace.get("input"),
        "output": llm[-1]["output"] if llm else trace.get("output"),
    }


class ResponseReader:
    """Read stored responses through the official SDK, behind the outbound guard."""

    def __init__(self, *, host: str, secret_key: str, timeout: float = RESPONSE_TIMEOUT):
        self.host = (host or "https://api.openai.com/v1").rstrip("/")
        self._client = openai.OpenAI(
            api_key=secret_key,
            base_url=self.host,
            timeout=timeout,
            max_retries=1,
            # The base URL is the workspace's choice: connect only where it may point.
            http_client=openai.DefaultHttpxClient(transport=outbound.guarded_transport(httpx2)),
        )

    def read(self, response_id: str) -> dict[str, Any] | None:
        """Return a response's input items, output items, model and usage; None when the
        API does not store it (404). ``AdapterError`` otherwise."""
        from integrations.adapters.openai import OpenAIAdapter

        try:
            response = self._client.responses.retrieve(response_id)
            items = list(self._client.responses.input_items.list(response_id, order="asc"))
        except openai.NotFoundError:
            return None
        except openai.OpenAIError as exc:
            # The OpenAI source's wording of every other failure (401, timeouts, refusals);
            # it always raises AdapterError.
            OpenAIAdapter._call(self, _raise, exc)
            raise
        usage = response.usage.model_dump() if response.usage else None
        return {
            "input": [i.model_dump(exclude_none=True) for i in items],
            "output": [o.model_dump(exclude_none=True) for o in response.output],
            "model": response.model,
            "usage": usage,
        }


def _raise(exc: Exception) -> None:
    raise exc
