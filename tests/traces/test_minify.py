"""The compact trace: what evals read survives, the rest shrinks, always the same way."""

import copy
import json

import pytest
from django.urls import reverse

import sandbox
from evals.generation.prompts import PromptExample, build_generation_prompt
from evals.sandboxing import sandbox_limits
from traces.minify import MAX_VALUE_CHARS, cut, minify_trace

POLICY = "# Retail policy\n" + "Authenticate the user before any write action. " * 200
CATALOGUE = json.dumps([{"item": i, "price": i * 3, "stock": "many"} for i in range(120)])


def agent_trace(n: int, *, refund: bool = True, failed: bool = False) -> dict:
    return {
        "id": f"t{n}",
        "name": "retail agent",
        "timestamp": "2026-03-01T12:00:00+00:00",
        "input": {"system": POLICY, "question": f"Refund order #{n}"},
        "output": "Your refund is on its way." if refund else "I cannot help with that.",
        "steps": [
            {
                "id": f"s{n}-1",
                "parent_id": None,
                "type": "llm",
                "name": "agent",
                "model": "gpt-4o",
                "input": [
                    {"role": "system", "content": POLICY},
                    {"role": "user", "content": f"Refund order #{n}"},
                ],
                "output": {
                    "content": None,
                    "tool_calls": [{"name": "refund_order", "arguments": {"order_id": n}}],
                },
                "error": None,
                "usage": {"input": 2400, "output": 20},
                "start_time": "2026-03-01T12:00:00+00:00",
                "end_time": "2026-03-01T12:00:01+00:00",
                "metadata": {"span_kind": "generation", "raw": CATALOGUE},
            },
            {
                "id": f"s{n}-2",
                "parent_id": f"s{n}-1",
                "type": "tool",
                "name": "refund_order",
                "input": {"order_id": n},
                "output": CATALOGUE,
                "error": "order not found: " + "x" * 50 if failed else None,
                "model": None,
                "usage": None,
                "start_time": "2026-03-01T12:00:01+00:00",
                "end_time": "2026-03-01T12:00:02+00:00",
                "metadata": {},
            },
        ],
        "metadata": {"tier": "gold"},
        "tags": ["retail"],
        "cost": 0.0123,
        "latency_ms": 2000.0,
    }


# Evals of the kinds generation writes: each reads a different part of the trace.
EVALS = {
    "final answer": """def eval_fn(trace):
    return "refund" in str(trace.get("output") or "").lower(), "answer"
""",
    "tool names and arguments": """def eval_fn(trace):
    for step in trace.get("steps") or []:
        out = step.get("output") if isinstance(step, dict) else None
        for call in (out or {}).get("tool_calls", []) if isinstance(out, dict) else []:
            if call.get("name") == "refund_order" and call.get("arguments", {}).get("order_id"):
                return True, "refund called"
    return False, "no refund call"
""",
    "errors": """def eval_fn(trace):
    failed = [s for s in trace.get("steps") or [] if isinstance(s, dict) and s.get("error")]
    return not failed, f"{len(failed)} failed steps"
""",
    "roles": """def eval_fn(trace):
    roles = []
    for step in trace.get("steps") or []:
        if isinstance(step, dict) and isinstance(step.get("input"), list):
            roles += [m.get("role") for m in step["input"] if isinstance(m, dict)]
    return roles == ["system", "user"], ",".join(str(r) for r in roles)
""",
    "step types and cost": """def eval_fn(trace):
    kinds = [s.get("type") for s in trace.get("steps") or [] if isinstance(s, dict)]
    return kinds == ["llm", "tool"] and (trace.get("cost") or 0) < 0.05, "shape"
""",
}


@pytest.mark.parametrize("name", sorted(EVALS))
def test_evals_give_the_same_verdicts_on_the_compact_trace(name):
    traces = [agent_trace(1), agent_trace(2, refund=False, failed=True)]
    compact = [minify_trace(t) for t in traces]
    full = sandbox.run(EVALS[name], traces, sandbox_limits())
    small = sandbox.run(EVALS[name], compact, sandbox_limits())
    assert [r.error for r in full + small] == [None] * 4
    assert [(r.passed, r.reason) for r in small] == [(r.passed, r.reason) for r in full]


def test_compact_keeps_roles_tools_errors_and_the_answer_and_drops_the_rest():
    trace = agent_trace(7, failed=True)
    original = copy.deepcopy(trace)
    compact = minify_trace(trace)

    assert trace == original  # the stored trace is not touched
    assert compact == minify_trace(original)  # deterministic
    assert compact["output"] == "Your refund is on its way."
    llm, tool = compact["steps"]
    assert [m["role"] for m in llm["input"]] == ["system", "user"]
    assert llm["output"]["tool_calls"] == [{"name": "refund_order", "arguments": {"order_id": 7}}]
    assert (tool["name"], tool["input"], tool["error"]) == (
        "refund_order",
        {"order_id": 7},
        original["steps"][1]["error"],
    )
    for dropped in ("id", "parent_id", "usage", "start_time", "end_time", "metadata"):
        assert dropped not in llm
    assert "timestamp" not in compact and compact["cost"] == 0.0123
    # Long values are cut with their original length kept.
    assert f"of {len(POLICY)} chars trimmed" in compact["input"]["system"]
    assert len(compact["input"]["system"]) <= MAX_VALUE_CHARS
    assert f"of {len(CATALOGUE)} chars trimmed" in tool["output"]
    assert len(json.dumps(compact)) < len(json.dumps(original)) / 5


def test_cut_keeps_both_ends_and_short_text_whole():
    assert cut("short", 10) == "short"
    text = "A" * 500 + "Z" * 500
    small = cut(text, 100)
    assert len(small) <= 100 and small.startswith("A") and small.endswith("Z")
    assert "of 1000 chars trimmed" in small


def _short_trace(n: int) -> dict:
    """A small trace made long by one policy text and one tool result."""
    return {
        "id": f"p{n}",
        "input": {"system": POLICY, "question": f"Refund order #{n}"},
        "output": "Refunded." if n % 2 == 0 else "I cannot help.",
        "steps": [{"id": f"s{n}", "type": "tool", "name": "refund_order",
                   "input": {"order_id": n}, "output": CATALOGUE, "error": None}],
    }  # fmt: skip


def test_the_prompt_minifies_before_it_drops_examples(monkeypatch):
    examples = [
        PromptExample(_short_trace(n), "positive" if n % 2 == 0 else "negative") for n in range(10)
    ]
    # Room for about 1,000 characters per example: ten whole traces (~12,000 characters
    # each), or ten trimmed to the 1,200-character floor, do not fit; ten compact ones do.
    budget = 3500
    prompt = build_generation_prompt(criteria="Refunds", examples=examples, token_budget=budget)
    assert prompt.approx_tokens <= budget
    assert "10 traces: 5 GOOD, 5 BAD." in prompt.user
    assert prompt.user.count("refund_order") == 10
    assert f"of {len(CATALOGUE)} chars trimmed" in prompt.user

    # Without the compact form, the same budget shows fewer examples.
    monkeypatch.setattr("evals.generation.prompts.minify_trace", lambda trace: trace)
    fewer = build_generation_prompt(criteria="Refunds", examples=examples, token_budget=budget)
    assert len(fewer.trace_ids) < 10


@pytest.mark.django_db
def test_reviewer_sees_the_compact_view(client, workspace, owner):
    from tests.traces.factories import TraceFactory

    trace = TraceFactory(workspace=workspace, data=agent_trace(3))
    client.force_login(owner)
    page = client.get(reverse("traces:detail", args=[workspace.slug, trace.pk]))
    assert b'data-testid="compact-view"' in page.content
    assert f"of {len(POLICY)} chars trimmed".encode() in page.content


def test_a_deeply_nested_value_ends_in_a_marker():
    deep: dict = {"leaf": 1}
    for _ in range(2000):
        deep = {"k": deep}
    compact = minify_trace({"id": "d", "output": "ok", "input": deep})
    text = json.dumps(compact)
    assert "nested deeper than" in text and compact["output"] == "ok"
