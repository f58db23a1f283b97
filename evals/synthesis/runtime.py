"""Helpers shared by the synthesiser and the eval code it emits.

The source of this module is copied verbatim into every generated eval, so it must
stay within the eval allow-list: standard-library imports from the allow-list only,
no dunder names, no eval/exec/open/getattr. The learner calls the very same
functions, which is what keeps `FittedEval.predict` and the emitted code in step.
"""

import json
import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_OPENING_WORDS = 20
_START_WORDS = 5
_PATTERNS = {
    "url": re.compile(r"https?://\S+"),
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
    "code_block": re.compile(r"```"),
    "numbered_list": re.compile(r"(?m)^\s*\d+[.)]\s"),
    "bullet_list": re.compile(r"(?m)^\s*[-*]\s"),
    "heading": re.compile(r"(?m)^\s*#{1,6}\s"),
    "digit": re.compile(r"\d"),
    "question": re.compile(r"\?\s*$"),
    "empty": re.compile(r"^\s*$"),
}
REFUSAL_PHRASES = (
    "i'm sorry",
    "i am sorry",
    "sorry",
    "i apologize",
    "i apologise",
    "i cannot",
    "i can't",
    "i can not",
    "i won't",
    "i will not",
    "i'm not able",
    "i am not able",
    "i'm unable",
    "i am unable",
    "i must decline",
    "i don't think it's appropriate",
    "as an ai",
    "i'm just an ai",
    "i am just an ai",
    "not within my programming",
    "as a language model",
    "it is not appropriate",
    "it's not appropriate",
    "it is not ethical",
    "it's not ethical",
    "not able to provide",
    "cannot provide",
    "can't assist",
    "cannot assist",
    "can't help with",
    "cannot help with",
    "against my",
    "i must point out",
)


def _text(value):
    """Return every string and number inside a JSON value, joined by newlines."""
    parts = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, (int, float)):
            parts.append(str(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(list(item)))
    return "\n".join(parts)


def _words(text):
    """Return the lower-case words of a text (apostrophes normalised)."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return _WORD.findall(text)


def _json(output):
    """Return the output as parsed JSON (object or array), or None."""
    if isinstance(output, (dict, list)):
        if isinstance(output, dict) and len(output) == 1:
            (inner,) = output.values()
            parsed = _json(inner) if isinstance(inner, str) else None
            if parsed is not None:
                return parsed
        return output
    if isinstance(output, str):
        candidate = output.strip()
        if candidate.startswith("```"):
            candidate = candidate.strip("`").strip()
            candidate = candidate.removeprefix("json")
        try:
            parsed = json.loads(candidate)
        except ValueError:
            return None
        if isinstance(parsed, (dict, list)):
            return parsed
    return None


def _number(value):
    """Return value as a float, or None when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def view(trace):
    """Return the pre-computed facts about a trace that the rules look at."""
    if not isinstance(trace, dict):
        trace = {}
    steps = trace.get("steps")
    steps = [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
    out_text = _text(trace.get("output"))
    out_words = _words(out_text)
    in_words = _words(_text(trace.get("input")))
    parsed = _json(trace.get("output"))
    tools = [str(s.get("name") or "") for s in steps if s.get("type") == "tool"]
    return {
        "out_raw": out_text,
        "out": " " + " ".join(out_words) + " ",
        "opening": " " + " ".join(out_words[:_OPENING_WORDS]) + " ",
        "start": " " + " ".join(out_words[:_START_WORDS]) + " ",
        "in": " " + " ".join(in_words) + " ",
        "json": parsed,
        "keys": sorted(str(k) for k in parsed) if isinstance(parsed, dict) else [],
        "tools": tools,
        "numbers": {
            "steps": float(len(steps)),
            "tool_calls": float(len(tools)),
            "step_errors": float(sum(1 for s in steps if s.get("error"))),
            "output_chars": float(len(out_text)),
            "output_words": float(len(out_words)),
            "latency_ms": _number(trace.get("latency_ms")),
            "cost": _number(trace.get("cost")),
        },
        "errors": [str(s.get("error")) for s in steps if s.get("error")],
    }


def has_phrase(v, field, phrase):
    """Return the phrase when the words of a field contain it, else ''."""
    return phrase if " " + phrase + " " in v[field] else ""


def starts_with(v, phrase):
    """Return the phrase when the output begins with it, else ''."""
    return phrase if v["start"].startswith(" " + phrase + " ") else ""


def refusal(v, field):
    """Return the first refusal phrase found in a field, else ''."""
    for phrase in REFUSAL_PHRASES:
        if " " + phrase + " " in v[field]:
            return phrase
    return ""


def pattern(v, name):
    """Return the first match of a built-in pattern in the raw output, else ''."""
    found = _PATTERNS[name].search(v["out_raw"])
    return (found.group(0).strip() or name) if found else ""


def json_valid(v):
    """Return 'valid' when the output is a JSON object or array, else ''."""
    return "valid" if v["json"] is not None else ""


def json_key(v, key):
    """Return the key when the output is a JSON object holding it, else ''."""
    return key if key in v["keys"] else ""


def step_error(v):
    """Return the first step error message, else ''."""
    return v["errors"][0][:120] if v["errors"] else ""


def tool_called(v, name):
    """Return the tool name when a tool step of that name exists, else ''."""
    return name if name in v["tools"] else ""


def at_least(v, measure, threshold):
    """Return the measured value as text when it is at least the threshold, else ''."""
    value = v["numbers"][measure]
    if value is None or value < threshold:
        return ""
    return str(int(value)) if value == int(value) else str(round(value, 6))
