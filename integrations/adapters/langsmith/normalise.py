"""LangSmith runs (v2 query or legacy query) to the normalised trace shape."""

from __future__ import annotations

from typing import Any

from integrations.adapters.base import as_text, finite_float, listed, normal_time, parse_time

TYPE_MAP = {
    "llm": "llm",
    "embedding": "llm",
    "prompt": "span",
    "parser": "span",
    "tool": "tool",
    "chain": "chain",
    "retriever": "retriever",
}
PENDING = "pending"


def run_status(run: dict[str, Any]) -> str:
    """Return ``success``, ``error`` or ``pending``; a run without an end is pending."""
    status = str(run.get("status") or "").lower()
    if status in ("success", "error", PENDING):
        return status
    return PENDING if not run.get("end_time") else ("error" if run.get("error") else "success")


def parent_of(run: dict[str, Any]) -> str | None:
    """Return the run's parent id: the last of ``parent_run_ids``, else from ``dotted_order``."""
    parents = listed(run.get("parent_run_ids"))
    if parents:
        return str(parents[-1])
    if run.get("parent_run_id"):
        return str(run["parent_run_id"])
    # dotted_order is "<time>Z<run id>.<time>Z<run id>...", root first.
    parts = str(run.get("dotted_order") or "").split(".")
    if len(parts) >= 2 and "Z" in parts[-2]:
        return parts[-2].split("Z", 1)[1] or None
    return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _extra(run: dict[str, Any]) -> dict[str, Any]:
    extra = run.get("extra")
    return extra if isinstance(extra, dict) else {}


def _metadata(run: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    metadata = run.get("metadata")
    if not isinstance(metadata, dict):
        metadata = extra.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
    return dict(metadata)


def _model(extra: dict[str, Any], metadata: dict[str, Any]) -> str | None:
    value = metadata.get("ls_model_name")
    if isinstance(value, str) and value:
        return value
    params = extra.get("invocation_params")
    if isinstance(params, dict):
        return _first_text(params, ("model", "model_name"))
    return None


def _first_text(values: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """Return the first of these keys' values that is non-empty text."""
    for key in keys:
        value = values.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def normalise_run(run: dict[str, Any], *, known_ids: set[str]) -> dict[str, Any]:
    """Turn one run into a step.

    Every field is built to the step schema whatever the source sent (a name that is no
    text is written out as text), so a page of these needs no schema check
    (``TracePage.checked``); a time that is no date raises ``ValueError``.
    """
    get = run.get  # a sync normalises every run of every trace: each key is read once
    run_type = str(get("run_type") or "chain").lower()
    extra = _extra(run)
    metadata = _metadata(run, extra)
    metadata["langsmith_run_type"] = run_type
    cost = finite_float(get("total_cost"))
    if cost:
        metadata["cost"] = cost
    if tags := listed(get("tags")):
        metadata["tags"] = tags
    prompt, completion = _int(get("prompt_tokens")), _int(get("completion_tokens"))
    parent = parent_of(run)
    error = get("error")
    return {
        "id": str(run["id"]),
        "parent_id": parent if parent in known_ids else None,
        "type": TYPE_MAP.get(run_type, "span"),
        "name": as_text(get("name")) or run_type,
        "input": get("inputs"),
        "output": get("outputs"),
        "error": (str(error) or "error") if error else None,
        "model": _model(extra, metadata),
        "usage": None
        if prompt is None and completion is None
        else {"input": prompt or 0, "output": completion or 0},
        "start_time": normal_time(get("start_time")),
        "end_time": normal_time(get("end_time")),
        "metadata": metadata,
    }


def normalise_runs(root: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Build a normalised trace from its root run and every run of its tree."""
    by_id = {str(r["id"]): r for r in [root, *runs]}
    ordered = sorted(by_id.values(), key=lambda r: (str(r.get("dotted_order") or ""), str(r["id"])))
    known = set(by_id)
    steps = [normalise_run(r, known_ids=known) for r in ordered]
    start, end = parse_time(root.get("start_time")), parse_time(root.get("end_time"))
    metadata = _metadata(root, _extra(root))
    session = _first_text(metadata, ("session_id", "thread_id", "conversation_id"))
    user = metadata.get("user_id") if isinstance(metadata.get("user_id"), str) else None
    if root.get("total_cost") is not None:
        cost = finite_float(root["total_cost"])
    else:  # the runs' costs add up only when the root has none (read only then)
        costs = [
            c for c in (finite_float(r.get("total_cost")) for r in by_id.values()) if c is not None
        ]
        cost = sum(costs) if costs else None
    return {
        "id": str(root["id"]).strip(),
        "name": as_text(root.get("name")),
        "timestamp": normal_time(root.get("start_time")),
        "input": root.get("inputs"),
        "output": root.get("outputs"),
        "steps": steps,
        "metadata": metadata,
        "tags": [str(t) for t in listed(root.get("tags"))],
        "user_id": user or None,
        "session_id": session or (str(root["thread_id"]) if root.get("thread_id") else None),
        "latency_ms": (end - start).total_seconds() * 1000 if start and end else None,
        "cost": cost,
    }
