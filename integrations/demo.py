"""Deterministic sample traces for a demo workspace: agent runs with tool calls, some failing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.store import UpsertResult
from iofold.pipeline import ingest_traces

# Fixed, so that running the demo command twice changes nothing.
BASE_TIME = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

SCENARIOS = [
    # (agent, question template, tool, tool input key, good answer template)
    ("support-agent", "Where is my order #{n}?", "lookup_order", "order_id",
     "Your order #{n} was shipped on Monday and arrives by {day}."),
    ("support-agent", "Can I return shoes I bought {days} days ago?", "search_docs", "query",
     "Yes: returns are free within 30 days, so you have {left} days left."),
    ("travel-agent", "What's the weather in {city} tomorrow?", "get_weather", "city",
     "Tomorrow in {city}: {temp}°C and {sky}."),
    ("booking-agent", "Book a table for {people} in {city} tonight.", "book_table", "city",
     "Booked: a table for {people} at 19:30 in {city}. Confirmation code {code}."),
]  # fmt: skip
CITIES = ["Berlin", "Lisbon", "Osaka", "Toronto", "Nairobi", "Lima"]
DAYS = ["Thursday", "Friday", "Saturday"]
SKIES = ["sunny", "light rain", "cloudy"]
TOOL_ERRORS = [
    "TimeoutError: upstream did not answer in 2s",
    "HTTPError: 503 Service Unavailable",
    "KeyError: 'status'",
]


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def demo_trace(index: int, *, seed: int = 0) -> dict[str, Any]:
    """Return one normalised demo trace; the same index and seed give the same trace."""
    rng = random.Random(f"iofold-demo-{seed}-{index}")
    agent, question_t, tool, key, answer_t = SCENARIOS[index % len(SCENARIOS)]
    values = {
        "n": rng.randint(1000, 9999),
        "days": rng.randint(3, 45),
        "city": rng.choice(CITIES),
        "people": rng.randint(2, 8),
        "day": rng.choice(DAYS),
        "temp": rng.randint(-3, 31),
        "sky": rng.choice(SKIES),
        "code": f"R{rng.randint(100, 999)}",
    }
    values["left"] = max(0, 30 - values["days"])
    question = question_t.format(**values)
    outcome = rng.choices(["good", "tool_error", "hallucination", "refusal"], [6, 2, 1, 1])[0]
    if outcome == "good" and values["days"] > 30 and tool == "search_docs":
        outcome = "hallucination"  # claims a return window that has passed

    start = BASE_TIME + timedelta(minutes=17 * index)
    t = start
    steps: list[dict[str, Any]] = []

    def step(kind: str, name: str, ms: int, **fields: Any) -> dict[str, Any]:
        nonlocal t
        begin, t = t, t + timedelta(milliseconds=ms)
        item = {
            "id": f"demo-{seed}-{index}-{len(steps) + 1}",
            "parent_id": f"demo-{seed}-{index}-0",
            "type": kind,
            "name": name,
            "input": None,
            "output": None,
            "error": None,
            "model": None,
            "usage": None,
            "start_time": _iso(begin),
            "end_time": _iso(t),
            "metadata": {},
            **fields,
        }
        steps.append(item)
        return item

    tool_args = {
        key: values["city"] if key == "city" else values["n"] if key == "order_id" else question
    }
    step(
        "llm", "plan", rng.randint(300, 900),
        model="gpt-4o-mini",
        input=[{"role": "system", "content": f"You are a helpful {agent.replace('-', ' ')}."},
               {"role": "user", "content": question}],
        output={"role": "assistant", "content": None,
                "tool_calls": [{"id": f"call_{index}", "type": "function",
                                "function": {"name": tool, "arguments": tool_args}}]},
        usage={"input": rng.randint(120, 400), "output": rng.randint(15, 40)},
    )  # fmt: skip
    if outcome == "refusal":
        steps.pop()  # refused without planning a tool call
        t = start
        answer = "I'm sorry, but I can't help with that request."
    elif outcome == "tool_error":
        step("tool", tool, rng.randint(1500, 2100), input=tool_args, error=rng.choice(TOOL_ERRORS))
        answer = "Sorry, I could not reach the service right now. Please try again later."
    else:
        result = {
            "status": "ok",
            **{k: v for k, v in values.items() if k in ("city", "temp", "sky", "n")},
        }
        step("tool", tool, rng.randint(80, 600), input=tool_args, output=result)
        answer = answer_t.format(**values)
        if outcome == "hallucination":
            answer = answer.replace(f"{values['left']} days", "90 days").replace(
                "arrives by", "arrived on"
            )
    step(
        "llm", "answer", rng.randint(400, 1200),
        model="gpt-4o-mini",
        input=[{"role": "user", "content": question}],
        output={"role": "assistant", "content": answer},
        usage={"input": rng.randint(200, 600), "output": rng.randint(20, 80)},
    )  # fmt: skip
    root = {
        "id": f"demo-{seed}-{index}-0",
        "parent_id": None,
        "type": "agent",
        "name": agent,
        "input": {"question": question},
        "output": {"answer": answer},
        "error": None,
        "model": None,
        "usage": None,
        "start_time": _iso(start),
        "end_time": _iso(t),
        "metadata": {},
    }
    tokens = sum(
        (s["usage"] or {}).get("input", 0) * 1.5e-7 + (s["usage"] or {}).get("output", 0) * 6e-7
        for s in steps
    )
    return {
        "id": f"demo-{seed}-{index:04d}",
        "name": agent,
        "timestamp": _iso(start),
        "input": {"question": question},
        "output": {"answer": answer},
        "steps": [root, *steps],
        "metadata": {"environment": "demo", "scenario": outcome},
        "tags": ["demo", agent.split("-")[0]],
        "user_id": f"user-{index % 9}",
        "session_id": f"session-{index // 3}",
        "latency_ms": (t - start).total_seconds() * 1000,
        "cost": round(tokens, 8),
    }


def create_demo_traces(*, workspace, count: int = 48, seed: int = 0) -> UpsertResult:
    """Create (or refresh) ``count`` realistic demo traces in ``workspace`` (source "demo")."""
    traces = [demo_trace(index, seed=seed) for index in range(count)]
    return ingest_traces(workspace=workspace, source="demo", traces=traces)
