"""One agent conversation, whatever shape it reached iofold in, as the step facts read it.

The step facts (`runtime._step_facts`) read steps in one shape: the user's turns as steps
named "user", the agent's turns as llm steps listing their tool calls in the output
(`{"content", "tool_calls"}`), and each call as a tool step named after the tool, with
`error` set when it failed. Sources record the same conversation otherwise:

- Langfuse, LangSmith, OTLP and the Agents SDK keep the user's turns only inside the
  model calls' input messages, and the tool calls as steps named after the tool (OTLP's
  GenAI conventions name them "execute_tool <tool>");
- an OpenAI stored chat completion is a messages list (role system, user, assistant with
  `tool_calls`, tool with `tool_call_id`), a tool's failure only in its result's text;
- Anthropic's messages carry `tool_use` and `tool_result` blocks, Gemini's parts
  `functionCall` and `functionResponse`, LangChain's messages `type` human/ai/tool, the
  Responses API `function_call` items;
- an uninstrumented tool shows only as a call the model asked for.

`conversation_steps` rewrites any of these into the one shape, without counting a call
twice (a call an agent turn lists and the tool step that ran it are one call), and
`said_text` / `asked_text` read what an output and an input say (text, not roles or envelopes).
This module is inlined into emitted eval code: standard library only.
"""

import json
import re

USER_NAMES = ("user", "human", "customer", "client")
_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}
_TEXT_BLOCKS = ("text", "input_text", "output_text")
_CALL_BLOCKS = ("tool_use", "tool_call", "function_call")
_RESULT_BLOCKS = ("tool_result", "tool_call_response", "function_call_output")
# A span named for the operation and the tool ("execute_tool get_order", GenAI semconv).
_OPERATION = re.compile(r"^(?:execute_tool|tool|function|call)[\s:]+([\w.-]+)$", re.IGNORECASE)
# A tool's result that reports a failure in its text (no error field to say so).
_FAILED = re.compile(r"^\s*[\[{(\"']?\s*(?:error|exception|traceback)\b", re.IGNORECASE)


def is_user(step):
    """Return True for a step that is one of the user's turns."""
    return str(step.get("type") or "").lower() in USER_NAMES or (
        str(step.get("name") or "").lower() in USER_NAMES
    )


def tool_name(name):
    """Return a tool step's tool: "execute_tool get_order" is get_order."""
    name = str(name or "")
    found = _OPERATION.match(name.strip())
    return found.group(1) if found else name


def _parsed(value):
    """Return JSON text as the object or array it holds; anything else as it is."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _strings(value):
    """Return the strings inside a value, joined by newlines (numbers as text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "\n".join(p for p in (_strings(v) for v in value.values()) if p)
    if isinstance(value, (list, tuple)):
        return "\n".join(p for p in (_strings(v) for v in value) if p)
    return ""


def failure(output):
    """Return the error a tool's result reports in itself ("Error: ...", {"error": ...})."""
    output = _parsed(output)
    if isinstance(output, dict) and output.get("error"):
        error = output["error"]
        return error if isinstance(error, str) else json.dumps(error, sort_keys=True)
    if isinstance(output, str) and _FAILED.match(output):
        return output.strip()
    return ""


def _call(call):
    """Return a tool call in any wire shape as {id, name, arguments}."""
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    arguments = None
    for key in ("arguments", "args", "input", "parameters"):
        if key in function:
            arguments = function[key]
            break
    return {
        "id": str(call.get("id") or call.get("call_id") or call.get("tool_call_id") or ""),
        "name": str(function.get("name") or "tool"),
        "arguments": _parsed(arguments),
    }


def _result(ident, name, output, error):
    output = _parsed(output)
    if isinstance(output, list) and all(
        isinstance(b, dict) and b.get("type") in _TEXT_BLOCKS for b in output
    ):
        output = "\n".join(str(b.get("text") or "") for b in output)
    return {
        "id": str(ident or ""),
        "name": str(name or ""),
        "output": output,
        "error": str(error) if error else "",
    }


def _blocks(content, texts, calls, results):
    """Sort a message's content (text, or a list of blocks or parts) into its lists."""
    if isinstance(content, str):
        texts.append(content)
        return
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return
    for block in content:
        if isinstance(block, str):
            texts.append(block)
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in _CALL_BLOCKS:
            calls.append(_call(block))
        elif isinstance(block.get("functionCall"), dict):
            calls.append(_call(block["functionCall"]))
        elif kind in _RESULT_BLOCKS:
            error = block.get("is_error") or block.get("status") == "error"
            output = next(
                (block[k] for k in ("content", "response", "output", "result") if k in block),
                None,
            )
            ident = block.get("tool_use_id") or block.get("call_id") or block.get("id")
            results.append(_result(ident, block.get("name"), output, output if error else ""))
        elif isinstance(block.get("functionResponse"), dict):
            response = block["functionResponse"]
            found = _result(response.get("id"), response.get("name"), response.get("response"), "")
            results.append(found)
        elif kind in _TEXT_BLOCKS or (kind is None and isinstance(block.get("text"), str)):
            text = block.get("text", block.get("content"))
            if isinstance(text, str):
                texts.append(text)


def _role(item):
    role = item.get("role")
    if not isinstance(role, str):
        role = item.get("type")
        ids = item.get("id")
        if item.get("lc") is not None and isinstance(ids, list) and ids:
            role = str(ids[-1])  # a serialised LangChain message: ["...", "HumanMessage"]
    if not isinstance(role, str):
        return ""
    key = role.lower()
    for suffix in ("messagechunk", "message"):
        if key.endswith(suffix) and key != suffix:
            key = key[: len(key) - len(suffix)]
    return _ROLES.get(key, "")


def _message(item):
    """Return one chat message as an event {role, text, calls, results}, else None."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "function_call":  # a Responses API item
        return {"role": "assistant", "text": "", "calls": [_call(item)], "results": []}
    if kind == "function_call_output":
        found = _result(item.get("call_id"), "", item.get("output"), "")
        return {"role": "tool", "text": "", "calls": [], "results": [found]}
    body = item
    if item.get("lc") is not None and isinstance(item.get("kwargs"), dict):
        body = item["kwargs"]
    elif isinstance(item.get("data"), dict) and "content" in item["data"]:
        body = item["data"]  # LangChain's messages_to_dict
    role = _role(item)
    if not role or not any(k in body for k in ("content", "parts", "tool_calls", "function_call")):
        return None
    content = body.get("content", body.get("parts"))
    texts, calls, results = [], [], []
    if role == "tool":
        error = body.get("status") == "error" or body.get("is_error")
        ident = body.get("tool_call_id") or body.get("tool_use_id") or body.get("id")
        _blocks(content, [], [], results)
        if not results:
            results.append(_result(ident, body.get("name"), content, content if error else ""))
    else:
        _blocks(content, texts, calls, results)
    listed = body.get("tool_calls")
    if not listed and isinstance(body.get("additional_kwargs"), dict):
        listed = body["additional_kwargs"].get("tool_calls")
    for call in listed if isinstance(listed, list) else []:
        if isinstance(call, dict):
            calls.append(_call(call))
    if isinstance(body.get("function_call"), dict):
        calls.append(_call(body["function_call"]))
    text = "\n".join(t for t in texts if t.strip())
    return {"role": role, "text": text, "calls": calls, "results": results}


def _is_blocks(value):
    kinds = _TEXT_BLOCKS + _CALL_BLOCKS + _RESULT_BLOCKS
    return isinstance(value, list) and all(
        isinstance(b, dict) and b.get("type") in kinds for b in value
    )


def messages(value, bare=""):
    """Return the chat messages a value holds as events, or None when it is no message list.

    A list of messages; {"messages": [...]} (LangChain, LangGraph, Anthropic with its
    "system"); one message with a
    role; LangSmith's {"generations": [[{"message" | "text"}]]}; a batch [[...]]; and,
    given the role they have (`bare`), content blocks alone (Anthropic's reply content).
    """
    if bare and value and _is_blocks(value):
        value = [{"role": bare, "content": value}]
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            system = value.get("system")  # Anthropic's request: the system prompt beside
            system = [{"role": "system", "content": system}] if system else []
            value = system + value["messages"]
        elif isinstance(value.get("generations"), list):
            value = [
                g.get("message") or {"role": "assistant", "content": g.get("text")}
                for batch in value["generations"]
                for g in (batch if isinstance(batch, list) else [batch])
                if isinstance(g, dict)
            ]
        elif isinstance(value.get("role"), str):
            value = [value]
        else:
            return None
    if not isinstance(value, list) or not value:
        return None
    if len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    events = [_message(item) for item in value]
    if not events or any(e is None for e in events):
        return None
    return events


def _reply(output):
    """Return an llm step's output as one assistant event."""
    events = messages(output, "assistant")
    if events is None and isinstance(output, dict):
        event = _message({"role": "assistant", **output})
        events = [event] if event is not None else None
    if events is None:
        text = output if isinstance(output, str) else ""
        if not isinstance(output, (str, dict)):
            text = _strings(output)
        return {"role": "assistant", "text": text, "calls": [], "results": []}
    replies = [e for e in events if e["role"] == "assistant"]
    return {
        "role": "assistant",
        "text": "\n".join(e["text"] for e in replies if e["text"]),
        "calls": [c for e in replies for c in e["calls"]],
        "results": [],
    }


def reply_text(output):
    """Return what an agent turn said: its text, not its tool calls."""
    return _reply(output)["text"]


def said_text(output):
    """Return what an output says: the last reply's text when it is chat messages, else ''.

    '' leaves the output to be read as it is (a string, or any other JSON).
    """
    events = messages(output, "assistant")
    if not events:
        return ""
    replies = [e["text"] for e in events if e["role"] == "assistant" and e["text"]]
    return replies[-1] if replies else ""


def asked_text(value):
    """Return what chat messages asked: the system's and the user's text, else ''."""
    events = messages(value, "user")
    if not events:
        return ""
    return "\n".join(e["text"] for e in events if e["role"] in ("system", "user") and e["text"])


def _history(value, output):
    """Return (events, how many of them came before the output) of one model call."""
    before = messages(value, "user") or []
    after = messages(output, "assistant")
    if after is None:
        reply = _reply(output) if output is not None else None
        after = [reply] if reply and (reply["text"] or reply["calls"]) else []
    if before and len(after) >= len(before) and after[: len(before)] == before:
        return after, len(before)  # the output holds the whole conversation
    return before + after, len(before)


def _agent_step(event):
    calls = [{"name": c["name"], "arguments": c["arguments"]} for c in event["calls"]]
    return {
        "type": "llm",
        "name": "agent",
        "input": None,
        "output": {"content": event["text"] or None, "tool_calls": calls},
        "error": None,
    }


def _tool_step(name, arguments, output, error, ident):
    return {
        "type": "tool",
        "name": tool_name(name),
        "input": arguments,
        "output": output,
        "error": error or None,
        "id": ident,
    }


def _transcript(events):
    """Return the steps of a chat transcript, and after which step each message ends."""
    out = []
    ends = []
    waiting = []  # indexes of tool steps whose result has not come yet
    for event in events:
        if event["role"] == "user" and event["text"]:
            out.append({"type": "span", "name": "user", "input": None, "output": event["text"]})
        elif event["role"] == "assistant":
            out.append(_agent_step(event))
            for call in event["calls"]:
                waiting.append(len(out))
                out.append(_tool_step(call["name"], call["arguments"], None, "", call["id"]))
        for found in event["results"]:
            index = _answered(out, waiting, found)
            if index is None:
                name = found["name"] or "tool"
                out.append(_tool_step(name, None, found["output"], found["error"], found["id"]))
            else:
                waiting.remove(index)
                out[index] = {**out[index], "output": found["output"]}
                out[index]["error"] = found["error"] or None
        ends.append(len(out))
    return out, ends


def _answered(out, waiting, found):
    """Return the waiting call a result answers: by id, else by tool name, else the first."""
    for test in (
        lambda s: found["id"] and s.get("id") == found["id"],
        lambda s: found["name"] and tool_name(found["name"]) == s["name"],
        lambda s: not found["id"],
    ):
        for index in waiting:
            if test(out[index]):
                return index
    return None


def _same_call(step, other, by_id):
    if by_id:
        return bool(step.get("id")) and step.get("id") == other.get("id")
    return tool_name(step.get("name")) == tool_name(other.get("name"))


def _from_messages(trace, steps):
    """Return (the steps of a conversation its model calls' messages hold, else None, and
    the system prompt of those messages).

    The longest history (the trace's input and output, or a model call's input and
    output) is the transcript. The recorded steps join it: a tool step is the call the
    transcript made (by call id, else the tool's name, in order) and brings its result
    and error; a model call whose history the transcript begins with is that reply; any
    other step stays, after the reply or call recorded before it.
    """
    best = _history(trace.get("input"), trace.get("output"))[0]
    histories = {}
    for index, step in enumerate(steps):
        if str(step.get("type") or "") == "llm" and messages(step.get("input")) is not None:
            histories[index] = _history(step.get("input"), step.get("output"))
            if len(histories[index][0]) >= len(best):
                best = histories[index][0]
    if not any(e["role"] == "user" and e["text"] for e in best):
        return None, ""
    out, ends = _transcript(best)
    taken = set()
    later = {}  # position in out -> recorded steps that go before it
    anchor = 0
    for index, step in enumerate(steps):
        kind = str(step.get("type") or "")
        if index in histories:
            events, cut = histories[index]
            if 0 < cut <= len(best) and best[:cut] == events[:cut]:
                anchor = ends[cut] if cut < len(ends) else len(out)
                if step.get("error"):
                    name = str(step.get("name") or "llm")
                    failed = {"type": "span", "name": name, "error": step["error"]}
                    later.setdefault(anchor, []).append(failed)
                continue
        if kind == "tool":
            match = None
            for by_id in (True, False):
                match = next(
                    (
                        i
                        for i, s in enumerate(out)
                        if s["type"] == "tool" and i not in taken and _same_call(step, s, by_id)
                    ),
                    None,
                )
                if match is not None:
                    break
            if match is not None:
                taken.add(match)
                joined = dict(out[match])
                if step.get("output") is not None:
                    joined["output"] = step["output"]
                if step.get("error"):
                    joined["error"] = step["error"]
                if joined.get("input") is None:
                    joined["input"] = step.get("input")
                out[match] = joined
                anchor = max(anchor, match + 1)
                continue
        later.setdefault(anchor, []).append(step)
    merged = []
    for position in range(len(out) + 1):
        merged.extend(later.get(position, []))
        if position < len(out):
            merged.append(out[position])
    return merged, "\n".join(e["text"] for e in best if e["role"] == "system" and e["text"])


def _ran(call, index, steps, tools, taken):
    """Return the tool step that ran an agent turn's call: a later one of its id, else of
    its tool, else any of its tool not yet taken; None when no step ran it."""
    name = tool_name(call["name"])
    after = [j for j in tools if j > index and j not in taken]
    for j in after:
        if call["id"] and steps[j].get("id") == call["id"]:
            return j
    for j in after + [j for j in tools if j < index and j not in taken]:
        if tool_name(steps[j].get("name")) == name:
            return j
    return None


def _with_requested_calls(steps):
    """Return the steps with a tool step for each call an agent turn asked for and no step ran."""
    tools = [i for i, s in enumerate(steps) if str(s.get("type") or "") == "tool"]
    taken = set()
    added = {}
    for index, step in enumerate(steps):
        if str(step.get("type") or "") not in ("llm", "agent") or step.get("output") is None:
            continue
        for call in _reply(step.get("output"))["calls"]:
            match = _ran(call, index, steps, tools, taken)
            if match is None:
                added.setdefault(index, []).append(
                    _tool_step(call["name"], call["arguments"], None, "", call["id"])
                )
            else:
                taken.add(match)
    if not added:
        return steps
    out = []
    for index, step in enumerate(steps):
        out.append(step)
        out.extend(added.get(index, []))
    return out


def _decorated(value):
    """Return a tool's arguments as a tracing decorator recorded them ({"args": [...],
    "kwargs": {...}}, Langfuse's @observe) as the call's own: the keywords, or the list."""
    if isinstance(value, dict) and value and all(k in ("args", "kwargs") for k in value):
        positional, keywords = value.get("args") or [], value.get("kwargs") or {}
        if isinstance(keywords, dict) and keywords and not positional:
            return keywords
        if isinstance(positional, list) and positional and not keywords:
            return positional
    return value


def conversation_steps(trace, steps):
    """Return (a trace's steps in the one shape the step facts read, the system prompt).

    The system prompt is that of the model calls' messages, when the steps come from them
    (the agent was told it, as it was told the input); else ''.
    """
    system = ""
    if not any(is_user(s) for s in steps):
        found, system = _from_messages(trace, steps)
        if found is not None:
            steps = found
    steps = _with_requested_calls(steps)
    out = []
    for step in steps:
        if str(step.get("type") or "") == "tool":
            name = tool_name(step.get("name"))
            error = step.get("error") or failure(step.get("output"))
            arguments = _decorated(step.get("input"))
            if name != step.get("name") or error != step.get("error"):
                step = {**step, "name": name, "error": error or None}
            if arguments is not step.get("input"):
                step = {**step, "input": arguments}
        out.append(step)
    return out, system
