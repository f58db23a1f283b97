"""τ²-bench retail conversations (one trace each) split into per-turn traces by session id.

A turn starts at each customer message (span "user"): it holds that message as input,
the agent's steps and tool calls up to the next customer message, and the agent's last
reply as output. Turns are a minute apart; a conversation the customer ended carries the
end marker on its last turn.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

DATA = Path("/work/shared/data/tau2_retail.jsonl")
START = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def load(limit: int | None = None) -> list[dict[str, Any]]:
    records = []
    with DATA.open() as handle:
        for line in handle:
            records.append(json.loads(line))
            if limit is not None and len(records) >= limit:
                break
    return records


def split(
    record: dict[str, Any], *, start: dt.datetime = START, session_id: str | None = None
) -> list[dict[str, Any]]:
    """Return the per-turn normalised traces of one τ² conversation."""
    session = session_id or record["id"]
    groups: list[list[dict[str, Any]]] = [[]]
    for step in record["steps"]:
        if (
            step["type"] == "span"
            and step["name"] == "user"
            and any(s["name"] == "user" for s in groups[-1])
        ):
            groups.append([])
        groups[-1].append(step)
    turns = []
    for index, steps in enumerate(groups):
        at = start + dt.timedelta(minutes=index)
        user = next((s["output"] for s in steps if s["name"] == "user"), None)
        replies = [
            s["output"]
            for s in steps
            if s["type"] == "llm" and isinstance(s["output"], dict) and s["output"].get("content")
        ]
        last = index == len(groups) - 1
        metadata = {"task_id": record["metadata"].get("task_id")}
        if last and record["metadata"].get("ended_by_user_stop"):
            metadata["conversation_end"] = True
        turns.append(
            {
                "id": f"{session}-turn{index:02d}",
                "name": "retail agent turn",
                "timestamp": at.isoformat(),
                "input": {"user": user},
                "output": replies[-1] if replies else None,
                "steps": [
                    {
                        "id": f"{session}-turn{index:02d}-s{n}",
                        "parent_id": None,
                        "type": s["type"],
                        "name": s["name"],
                        "input": s.get("input"),
                        "output": s.get("output"),
                        "error": s.get("error"),
                        "model": "gpt-4o" if s["type"] == "llm" else None,
                        "usage": {"input": 900, "output": 60} if s["type"] == "llm" else None,
                        "start_time": (at + dt.timedelta(seconds=n)).isoformat(),
                        "end_time": (at + dt.timedelta(seconds=n + 1)).isoformat(),
                        "metadata": {},
                    }
                    for n, s in enumerate(steps)
                ],
                "metadata": metadata,
                "tags": ["tau2"],
                "user_id": None,
                "session_id": session,
                "latency_ms": float(len(steps) * 1000),
                "cost": 0.001 * sum(1 for s in steps if s["type"] == "llm"),
            }
        )
    return turns
