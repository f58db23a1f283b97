"""The step facts see one agent conversation alike whatever shape its source recorded.

Each conversation (τ²-bench retail ones from ../shared/data when present, and synthetic
ones always) is written in the shape the step facts were built on (user turns as "user"
steps, agent turns listing their tool calls, tool steps with errors), then again as
other sources record it: a chat messages list with no steps (OpenAI, LangGraph's state),
Anthropic's content blocks, tool steps beside model calls whose input holds the history
and no user steps, and what the repo's own normalisers make of a Langfuse export, a
LangSmith run tree, a stored OpenAI completion, Agents SDK spans and OTLP spans from the
real OpenTelemetry SDK. The facts a rule reads (calls per tool and per kind, errors, user
and agent turns, the last action, a handoff, confirmations asked, the output's length,
and the flags built on them) must agree.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import Status, StatusCode

from evals.datasets import LabelledExample
from evals.synthesis import fit
from evals.synthesis.runtime import view
from integrations.adapters.langfuse.normalise import normalise_langfuse_export
from integrations.adapters.langsmith.normalise import normalise_runs
from integrations.adapters.openai import normalise_completion
from integrations.adapters.openai_agents import merge_trace
from integrations.otlp.normalise import attributes, build_trace, span_to_step
from tests.evals.synthesis_checks import assert_code_matches
from tests.integrations.otlp_helpers import Recorder

TAU2 = next(
    (
        p / "shared" / "data" / "tau2_retail.jsonl"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "data" / "tau2_retail.jsonl").exists()
    ),
    None,
)
NUMBERS = (
    "tool_calls",
    "read_calls",
    "write_calls",
    "distinct_tools",
    "tool_errors",
    "step_errors",
    "user_turns",
    "agent_turns",
    "turns",
    "confirmation_requests",
    "changes",
    "tool_arguments",
    "write_arguments",
    "user_words",
    "output_words",
    "output_chars",
)
FLAGS = (
    "tool_error",
    "write_called",
    "read_called",
    "handoff",
    "ended_by_handoff",
    "last_action_write",
    "last_action_read",
    "write_without_confirmation",
    "write_before_read",
    "repeated_tool_call",
    "last_tool_failed",
    "asked_after_last_change",
    "confirmed_after_last_change",
    "same_target_changed_twice",
    "failed_change_retried",
    "request_not_done",
    "claimed_success_without_change",
    "contradicts_tool_error",
    "ignores_last_error",
    "mentions_last_result",
    "write_with_unsupported_argument",
)
SYSTEM = "You are a retail agent. Authenticate the user, then help with their orders."
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


# --- conversations in the shape the facts were built on --------------------------------


def _user(text):
    return {"type": "span", "name": "user", "input": None, "output": text, "error": None}


def _agent(text=None, call=None):
    calls = [{"name": call[0], "arguments": call[1]}] if call else []
    return {
        "type": "llm",
        "name": "agent",
        "input": None,
        "output": {"content": text, "tool_calls": calls},
        "error": None,
    }


def _tool(name, arguments, output, error=None):
    return {"type": "tool", "name": name, "input": arguments, "output": output, "error": error}


def _conversation(first, steps):
    final = steps[-1]["output"]["content"]
    return {
        "input": {"system": SYSTEM, "user": first},
        "output": {"content": final},
        "steps": steps,
    }


def synthetic():
    """Three conversations: a failed change retried, a confirmed change, a handoff."""
    failed = "Error: Payment method should be the original payment method"
    return [
        _conversation(
            "Return my blender from order #W1234567.",
            [
                _agent("Hi! How can I help?"),
                _user("Return my blender from order #W1234567."),
                _agent(None, ("get_order_details", {"order_id": "#W1234567"})),
                _tool("get_order_details", {"order_id": "#W1234567"}, {"status": "delivered"}),
                _agent(
                    None,
                    ("return_delivered_order_items", {"order_id": "#W1234567", "pay": "gift_1"}),
                ),
                _tool(
                    "return_delivered_order_items",
                    {"order_id": "#W1234567", "pay": "gift_1"},
                    failed,
                    failed,
                ),
                _agent(
                    None,
                    ("return_delivered_order_items", {"order_id": "#W1234567", "pay": "card_9"}),
                ),
                _tool(
                    "return_delivered_order_items",
                    {"order_id": "#W1234567", "pay": "card_9"},
                    {"status": "return requested", "refund": 129.5},
                ),
                _agent("Your return has been processed; $129.50 goes back to your card."),
            ],
        ),
        _conversation(
            "Cancel order #W7654321 please, I ordered by mistake.",
            [
                _user("Cancel order #W7654321 please, I ordered by mistake."),
                _agent(None, ("find_user_id_by_email", {"email": "ana@example.com"})),
                _tool("find_user_id_by_email", {"email": "ana@example.com"}, "ana_42"),
                _agent("I found it. Would you like me to cancel order #W7654321? Please confirm."),
                _user("Yes, go ahead."),
                _agent(
                    None,
                    (
                        "cancel_pending_order",
                        {"order_id": "#W7654321", "reason": "ordered by mistake"},
                    ),
                ),
                _tool(
                    "cancel_pending_order",
                    {"order_id": "#W7654321", "reason": "ordered by mistake"},
                    {"order_id": "#W7654321", "status": "cancelled"},
                ),
                _agent("Order #W7654321 is cancelled. Anything else?"),
                _user("Could you also exchange my lamp?"),
                _agent("Shall I look up the lamp order for you?"),
            ],
        ),
        _conversation(
            "I want a human, now.",
            [
                _user("I want a human, now."),
                _agent(None, ("list_all_product_types", {})),
                _tool("list_all_product_types", {}, {"Lamp": "123456"}),
                _agent(None, ("transfer_to_human_agents", {"summary": "wants a human"})),
                _tool(
                    "transfer_to_human_agents", {"summary": "wants a human"}, "Transfer successful"
                ),
                _agent("I am transferring you to a human agent now."),
            ],
        ),
    ]


def tau2(limit=16):
    """Real τ² conversations, cut at the agent's last reply (the output), errors first."""
    records = [json.loads(line) for line in TAU2.open()]
    records.sort(key=lambda r: -sum(1 for s in r["steps"] if s.get("error")))
    out = []
    for record in records[:limit]:
        steps = record["steps"]
        last = max(
            i for i, s in enumerate(steps) if s["type"] == "llm" and s["output"].get("content")
        )
        out.append(
            {
                "input": record["input"],
                "output": {"content": steps[last]["output"]["content"]},
                "steps": steps[: last + 1],
            }
        )
    return out


# --- the same conversation in other shapes -----------------------------------------------


def _content(value):
    return value if isinstance(value, str) else json.dumps(value)


def _turns(trace):
    """Yield (kind, step, call id) in order; a tool step gets the id of the call it answers."""
    waiting = []
    for n, step in enumerate(trace["steps"]):
        if step["type"] == "llm":
            calls = step["output"].get("tool_calls") or []
            ids = [f"call_{n}_{i}" for i in range(len(calls))]
            waiting.extend(ids)
            yield "agent", step, ids
        elif step["type"] == "tool":
            yield "tool", step, waiting.pop(0)
        else:
            yield "user", step, None


def _system(trace):
    return trace.get("input", {}).get("system", SYSTEM)


def openai_messages(trace, *, with_calls=True, system=True):
    """The conversation before the final reply as OpenAI chat messages (and the final one)."""
    messages = [{"role": "system", "content": _system(trace)}] if system else []
    for kind, step, ids in _turns(trace):
        if kind == "user":
            messages.append({"role": "user", "content": step["output"]})
        elif kind == "agent":
            message = {"role": "assistant", "content": step["output"]["content"]}
            calls = step["output"]["tool_calls"]
            if calls and with_calls:
                message["tool_calls"] = [
                    {
                        "id": i,
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                    }
                    for i, c in zip(ids, calls, strict=True)
                ]
            messages.append(message)
        elif with_calls:
            messages.append(
                {"role": "tool", "tool_call_id": ids, "content": _content(step["output"])}
            )
    return messages


def chat_messages(trace):
    """(b) A messages list as the input, the final reply as the output, no steps."""
    messages = openai_messages(trace)
    return {"input": messages[:-1], "output": messages[-1], "steps": []}


def langgraph_state(trace):
    """(b) LangGraph's state: the output holds every message, the input the first ones."""
    messages = openai_messages(trace)
    return {"input": {"messages": messages[:2]}, "output": {"messages": messages}, "steps": []}


def anthropic_blocks(trace):
    """(c) Anthropic messages: tool_use blocks in replies, tool_result blocks from the user."""
    messages = []
    for kind, step, ids in _turns(trace):
        if kind == "user":
            messages.append({"role": "user", "content": [{"type": "text", "text": step["output"]}]})
        elif kind == "agent":
            blocks = []
            if step["output"]["content"]:
                blocks.append({"type": "text", "text": step["output"]["content"]})
            for i, call in zip(ids, step["output"]["tool_calls"], strict=True):
                blocks.append(
                    {"type": "tool_use", "id": i, "name": call["name"], "input": call["arguments"]}
                )
            messages.append({"role": "assistant", "content": blocks})
        else:
            result = {
                "type": "tool_result",
                "tool_use_id": ids,
                "content": [{"type": "text", "text": _content(step["output"])}],
            }
            if step["error"]:
                result["is_error"] = True
            messages.append({"role": "user", "content": [result]})
    return {
        "input": {"system": _system(trace), "messages": messages[:-1]},
        "output": messages[-1]["content"],
        "steps": [],
    }


def tool_steps_beside_model_calls(trace):
    """(a) Model calls whose input holds the history (no tool calls in it, none in their
    output), tool steps named after the tool with their errors, no user steps."""
    steps = []
    history = [{"role": "system", "content": _system(trace)}]
    for kind, step, _ids in _turns(trace):
        if kind == "user":
            history.append({"role": "user", "content": step["output"]})
        elif kind == "agent":
            reply = {"role": "assistant", "content": step["output"]["content"]}
            steps.append({"type": "llm", "name": "gpt-4o", "input": list(history), "output": reply})
            history.append(reply)
        else:
            steps.append(
                {
                    "type": "tool",
                    "name": step["name"],
                    "input": step["input"],
                    "output": step["output"],
                    "error": step["error"],
                }
            )
    first = next(m["content"] for m in history if m["role"] == "user")
    return {
        "input": first,
        "output": trace["output"]["content"],
        "steps": [{"type": "span", "name": "agent-run"}, *steps],
    }


# --- what the repo's normalisers make of each source's payload ---------------------------


def _at(n):
    return (START + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")


def langfuse_export(trace):
    """A Langfuse trace export: GENERATION observations with the history, TOOL ones."""
    observations = []
    history = [{"role": "system", "content": _system(trace)}]
    for n, (kind, step, ids) in enumerate(_turns(trace)):
        if kind == "user":
            history.append({"role": "user", "content": step["output"]})
            continue
        if kind == "agent":
            message = openai_messages({"steps": [step]}, system=False)[0]
            message["tool_calls"] = [
                {**c, "id": i} for i, c in zip(ids, message.get("tool_calls") or [], strict=True)
            ] or None
            observation = {
                "type": "GENERATION",
                "name": "ChatOpenAI",
                "input": list(history),
                "output": {k: v for k, v in message.items() if v is not None},
            }
            history.append(observation["output"])
        else:
            observation = {
                "type": "TOOL",
                "name": step["name"],
                "input": step["input"],
                "output": step["output"],
            }
            if step["error"]:
                observation.update(level="ERROR", statusMessage=step["error"])
            history.append(
                {"role": "tool", "tool_call_id": ids, "content": _content(step["output"])}
            )
        observations.append(
            {**observation, "id": f"obs-{n:03d}", "startTime": _at(n), "endTime": _at(n)}
        )
    first = next(m["content"] for m in history if m["role"] == "user")
    return normalise_langfuse_export(
        {
            "id": "lf-1",
            "timestamp": _at(0),
            "input": first,
            "output": trace["output"]["content"],
            "observations": observations,
        }
    )


def _lc(kind, **kwargs):
    return {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", kind],
        "kwargs": kwargs,
    }


def langsmith_runs(trace):
    """A LangSmith run tree: llm runs with serialised LangChain messages, tool runs."""
    history = [_lc("SystemMessage", content=_system(trace), type="system")]
    runs = []
    root = {
        "id": "root",
        "run_type": "chain",
        "name": "AgentExecutor",
        "dotted_order": "20261101T090000000000Zroot",
        "start_time": _at(0),
        "end_time": _at(999),
    }
    first = None
    for n, (kind, step, ids) in enumerate(_turns(trace)):
        order = f"{root['dotted_order']}.20261101T09{n // 60:02d}{n % 60:02d}000000Zrun{n:03d}"
        if kind == "user":
            first = first or step["output"]
            history.append(_lc("HumanMessage", content=step["output"], type="human"))
            continue
        if kind == "agent":
            calls = [
                {"name": c["name"], "args": c["arguments"], "id": i, "type": "tool_call"}
                for i, c in zip(ids, step["output"]["tool_calls"], strict=True)
            ]
            reply = _lc(
                "AIMessage", content=step["output"]["content"] or "", tool_calls=calls, type="ai"
            )
            run = {
                "run_type": "llm",
                "name": "ChatOpenAI",
                "inputs": {"messages": [list(history)]},
                "outputs": {
                    "generations": [[{"text": step["output"]["content"] or "", "message": reply}]]
                },
            }
            history.append(reply)
        else:
            run = {
                "run_type": "tool",
                "name": step["name"],
                "inputs": step["input"],
                "outputs": {"output": step["output"]},
                "error": step["error"],
            }
            status = "error" if step["error"] else "success"
            history.append(
                _lc(
                    "ToolMessage",
                    content=_content(step["output"]),
                    tool_call_id=ids,
                    status=status,
                    type="tool",
                )
            )
        runs.append(
            {
                **run,
                "id": f"run{n:03d}",
                "dotted_order": order,
                "start_time": _at(n),
                "end_time": _at(n),
            }
        )
    root.update(inputs={"input": first}, outputs={"output": trace["output"]["content"]})
    return normalise_runs(root, runs)


def openai_completion(trace):
    """A stored chat completion of the final reply, with its input messages."""
    messages = [{**m, "id": f"msg-{i}"} for i, m in enumerate(openai_messages(trace)[:-1])]
    completion = {
        "id": "chatcmpl-1",
        "created": 1_790_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "message": {"role": "assistant", "content": trace["output"]["content"]},
                "finish_reason": "stop",
            }
        ],
    }
    return normalise_completion(completion, messages)


def agents_sdk(trace):
    """Agents SDK spans: an agent span, generation spans with the history, function spans."""
    spans = {}
    history = [{"role": "system", "content": _system(trace)}]

    def span(n, data, error=None):
        spans[f"span_{n:03d}"] = {
            "object": "trace.span",
            "id": f"span_{n:03d}",
            "trace_id": "trace_1",
            "parent_id": "span_agent",
            "started_at": _at(n + 1),
            "ended_at": _at(n + 1),
            "span_data": data,
            "error": error,
        }

    spans["span_agent"] = {
        "object": "trace.span",
        "id": "span_agent",
        "trace_id": "trace_1",
        "parent_id": None,
        "started_at": _at(0),
        "ended_at": _at(999),
        "span_data": {"type": "agent", "name": "Retail agent", "tools": ["get_order_details"]},
    }
    for n, (kind, step, ids) in enumerate(_turns(trace)):
        if kind == "user":
            history.append({"role": "user", "content": step["output"]})
        elif kind == "agent":
            message = openai_messages({"steps": [step]}, system=False)[0]
            for i, call in zip(ids, message.get("tool_calls") or [], strict=True):
                call["id"] = i
            span(
                n,
                {
                    "type": "generation",
                    "model": "gpt-4o",
                    "input": list(history),
                    "output": [message],
                },
            )
            history.append(message)
        else:
            error = (
                {"message": "Error running tool", "data": step["error"]} if step["error"] else None
            )
            span(
                n,
                {
                    "type": "function",
                    "name": step["name"],
                    "input": json.dumps(step["input"]),
                    "output": _content(step["output"]),
                },
                error,
            )
            history.append(
                {"role": "tool", "tool_call_id": ids, "content": _content(step["output"])}
            )
    trace_object = {"object": "trace", "id": "trace_1", "workflow_name": "Retail"}
    return merge_trace(None, "trace_1", trace_object, spans)


def _parts(message):
    """An OpenAI chat message as a GenAI semantic-conventions message (role and parts)."""
    if message["role"] == "tool":
        return {
            "role": "tool",
            "parts": [
                {
                    "type": "tool_call_response",
                    "id": message["tool_call_id"],
                    "response": message["content"],
                }
            ],
        }
    parts = [{"type": "text", "content": message["content"]}] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        parts.append(
            {
                "type": "tool_call",
                "id": call["id"],
                "name": call["function"]["name"],
                "arguments": json.loads(call["function"]["arguments"]),
            }
        )
    return {"role": message["role"], "parts": parts}


def otlp(trace):
    """Spans from the real OpenTelemetry SDK in the GenAI conventions, as the receiver maps them."""
    recorder = Recorder()
    tracer = recorder.tracer
    history = []
    with tracer.start_as_current_span("invoke_agent retail") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        for kind, step, ids in _turns(trace):
            if kind == "user":
                history.append({"role": "user", "content": step["output"]})
            elif kind == "agent":
                message = openai_messages({"steps": [step]}, system=False)[0]
                for i, call in zip(ids, message.get("tool_calls") or [], strict=True):
                    call["id"] = i
                with tracer.start_as_current_span("chat gpt-4o") as chat:
                    chat.set_attribute("gen_ai.operation.name", "chat")
                    chat.set_attribute("gen_ai.system_instructions", _system(trace))
                    chat.set_attribute(
                        "gen_ai.input.messages", json.dumps([_parts(m) for m in history])
                    )
                    chat.set_attribute("gen_ai.output.messages", json.dumps([_parts(message)]))
                history.append(message)
            else:
                with tracer.start_as_current_span(f"execute_tool {step['name']}") as tool:
                    tool.set_attribute("gen_ai.operation.name", "execute_tool")
                    tool.set_attribute("gen_ai.tool.name", step["name"])
                    tool.set_attribute("gen_ai.tool.call.id", ids)
                    tool.set_attribute("gen_ai.tool.call.arguments", json.dumps(step["input"]))
                    tool.set_attribute("gen_ai.tool.call.result", _content(step["output"]))
                    if step["error"]:
                        tool.set_status(Status(StatusCode.ERROR, step["error"]))
                history.append(
                    {"role": "tool", "tool_call_id": ids, "content": _content(step["output"])}
                )
    request = encode_spans(recorder.take())
    steps = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                steps.append(span_to_step(span, resource=resource, scope=scope_spans.scope.name))
    return build_trace("otlp-1", steps)


SHAPES = {
    "chat_messages": chat_messages,
    "langgraph_state": langgraph_state,
    "anthropic_blocks": anthropic_blocks,
    "tool_steps_beside_model_calls": tool_steps_beside_model_calls,
    "langfuse_export": langfuse_export,
    "langsmith_runs": langsmith_runs,
    "openai_completion": openai_completion,
    "agents_sdk": agents_sdk,
    "otlp": otlp,
}


# Flags that quote an error message: a source may word it its own way (the Agents SDK
# writes "Error running tool: <message>"), so they are compared by the tool they name.
ERROR_FLAGS = ("tool_error", "contradicts_tool_error", "last_tool_failed", "ignores_last_error")


def facts(trace):
    v = view(trace)
    flags = {k: v["flags"][k] for k in FLAGS}
    for name in ERROR_FLAGS:
        flags[name] = flags[name].split(":")[0]
    return ({k: v["numbers"][k] for k in NUMBERS}, flags, Counter(v["tools"]))


def _assert_same(canonical, shaped):
    want_numbers, want_flags, want_tools = facts(canonical)
    numbers, flags, tools = facts(shaped)
    assert tools == want_tools
    assert numbers == want_numbers
    assert flags == want_flags


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("index", range(3))
def test_step_facts_agree_across_shapes(shape, index):
    canonical = synthetic()[index]
    _assert_same(canonical, SHAPES[shape](canonical))


@pytest.mark.skipif(TAU2 is None, reason="shared benchmark data not present")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_step_facts_agree_across_shapes_on_real_conversations(shape):
    for canonical in tau2():
        _assert_same(canonical, SHAPES[shape](canonical))


def test_the_facts_see_tool_calls_in_each_shape():
    # Not vacuous: the conversations do call tools, fail, hand off and ask to confirm.
    numbers = [facts(t)[0] for t in synthetic()]
    assert [n["tool_calls"] for n in numbers] == [3.0, 2.0, 2.0]
    assert [n["tool_errors"] for n in numbers] == [1.0, 0.0, 0.0]
    assert facts(synthetic()[2])[1]["ended_by_handoff"] == "transfer_to_human_agents"
    assert facts(synthetic()[1])[1]["asked_after_last_change"]


def test_a_call_listed_by_the_agent_and_run_as_a_step_counts_once():
    # Agent turns list their calls and a tool step ran each (the canonical shape), and a
    # call no step ran (an uninstrumented tool) still counts, once.
    trace = synthetic()[1]
    steps = [s for s in trace["steps"] if s["name"] != "find_user_id_by_email"]
    numbers, flags, tools = facts({**trace, "steps": steps})
    assert tools == Counter({"find_user_id_by_email": 1, "cancel_pending_order": 1})
    assert flags["read_called"] == "find_user_id_by_email"


def test_a_decorators_recorded_arguments_are_the_calls_own():
    # Langfuse's @observe records a tool's input as {"args": [...], "kwargs": {...}}.
    trace = synthetic()[1]
    steps = [
        {**s, "input": {"args": [], "kwargs": s["input"]}} if s["type"] == "tool" else s
        for s in trace["steps"]
    ]
    assert facts({**trace, "steps": steps}) == facts(trace)


def test_the_emitted_code_reads_other_shapes_as_predict_does():
    # Labels from a step fact on traces in the Anthropic and chat-messages shapes: the
    # rule is learned from facts that exist only once those shapes are read.
    traces = []
    for index in range(24):
        canonical = synthetic()[index % 3]
        shape = (chat_messages, anthropic_blocks, tool_steps_beside_model_calls)[index // 3 % 3]
        trace = shape(canonical)
        traces.append(trace)
    examples = [
        LabelledExample(
            trace=t, label="negative" if view(t)["numbers"]["tool_errors"] else "positive"
        )
        for t in traces
    ]
    fitted = fit(examples, criteria="Report failed tool calls.")
    assert fitted.decision.rules
    assert_code_matches(fitted, traces)


def test_the_inlined_modules_share_no_top_level_name():
    # shapes, runtime and constraints are pasted into one file of emitted code: a name two
    # of them define would silently become one of them there (and differ from .predict).
    import ast
    import inspect

    from evals.synthesis import constraints, runtime, shapes

    seen: dict[str, str] = {}
    for module in (shapes, runtime, constraints):
        for node in ast.parse(inspect.getsource(module)).body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                assert name not in seen, f"{name} is defined in {seen[name]} and {module.__name__}"
                seen[name] = module.__name__
