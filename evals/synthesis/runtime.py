"""Helpers shared by the synthesiser and the eval code it emits.

The source of this module is copied into every generated eval, so it must stay within
the eval allow-list: standard-library imports from the allow-list only, no dunder
names, no eval/exec/open/getattr. The learner calls the very same functions, which is
what keeps `FittedEval.predict` and the emitted code in step.

`view(trace)` computes every fact a rule may test once: word strings for phrase
tests, numeric measures (lengths, ratios, step counts) and named flags (text shapes,
phrase lexicons, facts comparing fields, facts about the steps). A flag is the text
that made it true, or '' when it does not hold.
"""

import json
import re
import unicodedata

from evals.synthesis.constraints import comparison_facts, instruction_facts
from evals.synthesis.shapes import asked_text, conversation_steps, is_user, reply_text, said_text

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
# Other scripts: scripts written without spaces between words (Thai, Lao, Myanmar,
# Khmer, Japanese kana, Chinese) read a character as a word, so a phrase is a run of
# characters; elsewhere a word is letters and digits with the combining marks that are
# part of it (accents, Hebrew and Arabic points, Indic vowel signs, joiners).
_UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0003134f"
)
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670"
    "\u06d6-\u06ed\u0900-\u0963\u0966-\u0dff\u1ab0-\u1aff\u1dc0-\u1dff\u200c\u200d"
    "\u20d0-\u20ff\ufe20-\ufe2f"
)
_LETTER = f"(?:(?![{_UNSPACED}])[^\\W_]|[{_MARKS}])"
_WORD_ANY = re.compile(f"[{_UNSPACED}]|{_LETTER}+(?:'{_LETTER}+)*")
_OPENING_WORDS = 20
_START_WORDS = 5
# Text shapes, searched in the raw text so that punctuation counts.
_SHAPES = {
    "url": r"https?://[^\s)\]>\"']+",
    "md_link": r"(?<!!)\[[^\]\n]{1,200}\]\([^)\s]*\)",
    "md_image": r"!\[[^\]\n]{0,200}\]\([^)\s]*\)",
    # Dot-separated labels: a sentence's full stop after the address is not part of it.
    "email": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "phone": r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)",
    "date": (
        r"\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}|(?:jan|feb|mar|apr|may|jun|jul"
        r"|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4})\b"
    ),
    "street_address": (
        r"\b\d{1,5} (?:[A-Z][a-z]+ ){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd"
        r"|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Broadway)\b"
    ),
    "id_token": r"(?<![\w#])#?(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9][\w-]{5,}\b",
    "long_number": r"(?<![\d.])\d{6,}(?![\d.])",
    "money": r"(?:[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)? ?(?:USD|EUR|GBP|dollars)\b)",
    "percent": r"\d(?:\.\d+)? ?(?:%|percent\b)",
    "placeholder": r"\[(?:[A-Z][A-Za-z ]{1,30}|[a-z_]{2,30})\]|<[A-Z_]{3,30}>|\{\{?\s*\w+\s*\}\}?",
    "quote": r"(?m)^\s*>\s*\S|\"[^\"\n]{20,}\"|\u201c[^\u201d\n]{20,}\u201d",
    "heading": r"(?m)^\s*#{1,6}\s+\S",
    "bullet_list": r"(?m)^\s*[-*\u2022]\s+\S",
    "numbered_list": r"(?m)^\s*\d+[.)]\s+\S",
    "code_block": r"```",
    "inline_code": r"(?<!`)`[^`\n]+`(?!`)",
    "table": r"(?m)^\s*\|.*\|\s*$\n^\s*\|?\s*:?-{3,}",
    "bold": r"\*\*[^*\n]+\*\*|__[^_\n]+__",
    "question": r"\?\s*[\"')\]]?\s*$",
    "exclamation": r"!",
    "empty": r"^\s*$",
}
_SHAPE_RES = {name: re.compile(source, re.IGNORECASE) for name, source in _SHAPES.items()}
_SHAPE_RES["street_address"] = re.compile(_SHAPES["street_address"])
_SHAPE_RES["placeholder"] = re.compile(_SHAPES["placeholder"])
# Phrase lexicons, matched on whole words of the lower-cased text.
LEXICONS = {
    "refusal": (
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
        "i must advise against",
        "i would advise against",
        "i strongly advise against",
        "i must politely",
        "i must clarify",
        "i don't think it's accurate",
        "it is not accurate",
        "it's not accurate",
        "i'm not comfortable",
        "i am not comfortable",
        "i'd rather not",
        "i would rather not",
        "my apologies",
    ),
    "apology": (
        "sorry",
        "apologize",
        "apologise",
        "apologies",
        "my mistake",
        "unfortunately",
        "regret",
    ),
    "hedge": (
        "i think",
        "i believe",
        "might",
        "may be",
        "maybe",
        "perhaps",
        "possibly",
        "probably",
        "not sure",
        "not certain",
        "it seems",
        "it appears",
        "likely",
        "could be",
        "as far as i know",
        "i'm not sure",
        "generally",
        "typically",
    ),
    "success": (
        "successfully",
        "has been",
        "have been",
        "is now",
        "confirmed",
        "completed",
        "all set",
        "done",
        "processed",
        "updated",
    ),
    "failure": (
        "error",
        "failed",
        "unable to",
        "could not",
        "couldn't",
        "not possible",
        "issue",
        "problem",
    ),
    "asks_confirmation": (
        "please confirm",
        "can you confirm",
        "could you confirm",
        "would you like",
        "do you want",
        "shall i",
        "should i",
        "yes to proceed",
        "confirm that",
    ),
    "disclaimer": (
        "consult",
        "professional",
        "not a substitute",
        "disclaimer",
        "for informational purposes",
        "not legal advice",
        "not medical advice",
        "seek help",
    ),
    "confirmation": (
        "yes",
        "yeah",
        "yep",
        "confirm",
        "confirmed",
        "go ahead",
        "proceed",
        "please do",
        "sure",
        "ok",
        "okay",
        "correct",
        "that's right",
    ),
}
# A generic vocabulary of what tools do, read from the first verb of the tool's name.
READ_VERBS = frozenset(
    [
        "get",
        "find",
        "list",
        "search",
        "lookup",
        "look",
        "fetch",
        "read",
        "query",
        "check",
        "calculate",
        "compute",
        "view",
        "show",
        "retrieve",
        "describe",
        "count",
        "browse",
        "load",
        "inspect",
        "verify",
        "validate",
    ]
)
WRITE_VERBS = frozenset(
    [
        "create",
        "update",
        "modify",
        "cancel",
        "book",
        "send",
        "delete",
        "remove",
        "transfer",
        "refund",
        "exchange",
        "return",
        "add",
        "set",
        "place",
        "submit",
        "post",
        "pay",
        "charge",
        "write",
        "insert",
        "edit",
        "change",
        "reserve",
        "purchase",
        "order",
        "upgrade",
        "issue",
        "apply",
        "assign",
        "close",
        "open",
        "approve",
        "reject",
        "schedule",
        "move",
        "rename",
        "save",
    ]
)
HANDOFF_WORDS = ("human", "handoff", "hand_off", "escalate", "escalation", "operator")
_KEY_VALUE = re.compile(r"(?m)^\s*[A-Za-z][\w ()/-]{0,40}:\s*(\S[^\n]{1,80}?)\s*$")
_NAME = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w.])")
_SENTENCE = re.compile(r"[.!?]+(?=\s|$)")
_DIGITS = re.compile(r"(?<![\d.,])\d{4,}(?![\d])")
_COPY_WORDS = 8
# Families of error messages, matched in the lower-cased text of a failed step.
ERROR_KINDS = {
    "not_found": (
        "not found",
        "no such",
        "does not exist",
        "doesn't exist",
        "unknown",
        "missing",
        "404",
    ),
    "invalid": (
        "invalid",
        "should",
        "must",
        "cannot",
        "can't",
        "not allowed",
        "mismatch",
        "malformed",
        "bad request",
        "unsupported",
        "insufficient",
        "exceed",
        "400",
        "422",
    ),
    "permission": (
        "permission",
        "forbidden",
        "unauthori",
        "not authori",
        "denied",
        "access",
        "401",
        "403",
    ),
    "timeout": (
        "timeout",
        "timed out",
        "time out",
        "deadline",
        "rate limit",
        "too many requests",
        "unavailable",
        "429",
        "503",
    ),
}


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
    if text.isascii():
        return _WORD.findall(text)
    # One spelling of each accented letter (e + U+0301 is é), as a reader sees them.
    return _WORD_ANY.findall(unicodedata.normalize("NFC", text))


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


# Sympathy is not a refusal or an apology for failing: drop it before matching those.
_SYMPATHY = re.compile(
    r" (?:i'm |i am |so |really |very )*sorry (?:to hear|for your loss|about your) "
)


def _lexicon(padded, name):
    """Return the first phrase of a lexicon found in padded words, else ''."""
    if name in ("refusal", "apology"):
        padded = _SYMPATHY.sub(" ", padded)
    for phrase in LEXICONS[name]:
        if " " + phrase + " " in padded:
            return phrase
    return ""


def _padded(words):
    return " " + " ".join(words) + " "


def _tool_kind(name):
    """Return 'handoff', 'write', 'read' or 'other' for a tool name."""
    lowered = name.lower()
    if any(word in lowered for word in HANDOFF_WORDS):
        return "handoff"
    parts = re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
    verb = parts[0] if parts else ""
    if verb in WRITE_VERBS:
        return "write"
    if verb in READ_VERBS:
        return "read"
    return "other"


def _salient(text):
    """Return the values in a text worth finding again: numbers, IDs, names, field values."""
    found = set()
    for token in _NUMBER.findall(text):
        digits = token.replace(",", "")
        if len(digits.replace(".", "")) >= 3:
            found.add(digits)
    found.update(m.group(0).lstrip("#") for m in _SHAPE_RES["id_token"].finditer(text))
    found.update(_NAME.findall(text))
    found.update(v.strip() for v in _KEY_VALUE.findall(text) if len(v.strip()) >= 3)
    return found


def _mentions(values, raw):
    """Return the first (sorted) value that occurs in the raw text, else ''."""
    if not values or not raw:
        return ""
    lowered = raw.lower().replace(",", "")
    for value in sorted(values, key=lambda s: (-len(s), s)):
        if value.lower().replace(",", "") in lowered:
            return value
    return ""


def _repetition(words):
    """Return the percentage of the output's four-word runs that already appeared in it."""
    runs = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    if not runs:
        return 0.0
    return round(100.0 * (len(runs) - len(set(runs))) / len(runs), 1)


def _copied_run(out_words, in_words):
    """Return the first run of _COPY_WORDS output words also found in the input, else ''."""
    if len(out_words) < _COPY_WORDS or len(in_words) < _COPY_WORDS:
        return ""
    seen = {tuple(in_words[i : i + _COPY_WORDS]) for i in range(len(in_words) - _COPY_WORDS + 1)}
    for i in range(len(out_words) - _COPY_WORDS + 1):
        run = tuple(out_words[i : i + _COPY_WORDS])
        if run in seen:
            return " ".join(run)
    return ""


def _identifiers(text):
    """Return the ID-like tokens and numbers of four or more digits in a text."""
    found = {m.group(0).lstrip("#") for m in _SHAPE_RES["id_token"].finditer(text)}
    found.update(_DIGITS.findall(text))
    return found


def _unsupported(text, grounded):
    """Return the first (sorted) identifier in text that the grounded text lacks, else ''."""
    lowered = grounded.lower()
    for token in sorted(_identifiers(text)):
        if token.lower() not in lowered:
            return token
    return ""


def _error_kind(text):
    """Return the first error family whose phrase the text contains, else ''."""
    lowered = text.lower()
    for kind, phrases in ERROR_KINDS.items():
        if any(phrase in lowered for phrase in phrases):
            return kind
    return ""


def _arguments(value):
    """Return the leaf values (text) of a tool call's arguments, and how many there are."""
    if isinstance(value, dict):
        leaves = []
        for item in value.values():
            leaves.extend(_arguments(item)[0])
        return leaves, len(value)
    if isinstance(value, (list, tuple)):
        leaves = []
        for item in value:
            leaves.extend(_arguments(item)[0])
        return leaves, len(value)
    if isinstance(value, bool) or value is None:
        return [], 0
    return [str(value)], 1


def _unsupported_argument(value, grounded):
    """Return the first argument value of three or more characters nobody gave, else ''."""
    lowered = grounded.lower()
    for leaf in _arguments(value)[0]:
        text = leaf.strip()
        if len(text) >= 3 and text.lower() not in lowered:
            return text
    return ""


def _first_argument(value):
    """Return a tool call's first argument value as text (what it acts on), else ''."""
    if isinstance(value, dict) and value:
        first = next(iter(value.values()))
        return first if isinstance(first, str) else json.dumps(first, sort_keys=True)
    return ""


def _step_facts(steps, in_raw):
    """Return (tools, numbers, flags, (tool results, last one), tool errors, grounded text).

    Grounded text is what the agent was told: the input, the user's turns and what the
    tools returned (not what the agent itself wrote).
    """
    grounded = [in_raw]
    write_unsupported = ""
    tools = []
    kinds = []
    errors = []
    tool_errors = []
    user_turns = []
    agent_turns = 0
    # A model call is an agent turn; an "agent" step only where no model call was recorded
    # (it wraps them: the Agents SDK's agent span, OTLP's invoke_agent).
    turn_kinds = ("llm",) if any(s.get("type") == "llm" for s in steps) else ("llm", "agent")
    results = []
    write_unconfirmed = ""
    write_argument = ""
    error_kinds = {}
    arguments = 0
    write_arguments = 0
    last_failed = False
    last_result = ""
    last_user = None
    changes = 0  # changing tool calls that did not fail
    targets = {}  # first argument of a change (what it acted on) -> the tool that did it
    same_target = ""
    failed_writes = set()
    retried = ""
    asked = 0  # agent turns asking the user to confirm
    user_words = 0
    # What happened after the last change: the agent asked to confirm, the user confirmed.
    pending_ask = pending_confirm = ""
    for step in steps:
        kind = str(step.get("type") or "")
        name = str(step.get("name") or "")
        error = step.get("error")
        if error:
            errors.append(str(error))
            error_kinds.setdefault(_error_kind(str(error)), str(error))
        if is_user(step):
            said = _text(step.get("output")) or _text(step.get("input"))
            grounded.append(said)
            last_user = _padded(_words(said))
            user_turns.append(last_user)
            user_words += len(_words(said))
            # A yes counts only as an answer to a request for confirmation.
            if pending_ask and not pending_confirm and _lexicon(last_user, "confirmation"):
                pending_confirm = said.strip()[:60]
        elif kind == "tool":
            tool_kind = _tool_kind(name)
            tools.append(name)
            kinds.append(tool_kind)
            count = _arguments(step.get("input"))[1]
            arguments += count
            last_failed = bool(error)
            if error:
                tool_errors.append(name + ": " + str(error))
            else:
                results.append(_text(step.get("output")))
                last_result = results[-1]
            if tool_kind == "write":
                write_arguments += count
                if name in failed_writes and not retried:
                    retried = name
                if error:
                    failed_writes.add(name)
                else:
                    changes += 1
                    pending_ask = pending_confirm = ""
                    target = _first_argument(step.get("input"))
                    if target and target in targets and not same_target:
                        same_target = targets[target] + ", then " + name + ": " + target
                    targets.setdefault(target, name)
                if not write_argument:
                    invented = _unsupported_argument(step.get("input"), "\n".join(grounded))
                    write_argument = name + ": " + invented if invented else ""
            confirmed = last_user is not None and _lexicon(last_user, "confirmation")
            if tool_kind == "write" and not confirmed and not write_unconfirmed:
                write_unconfirmed = name
            if tool_kind == "write" and not write_unsupported:
                invented = _unsupported(_text(step.get("input")), "\n".join(grounded))
                write_unsupported = name + ": " + invented if invented else ""
            if not error:
                grounded.append(_text(step.get("output")))
        elif kind in turn_kinds:
            agent_turns += 1
            said = reply_text(step.get("output"))
            if said and _lexicon(_padded(_words(said)), "asks_confirmation"):
                asked += 1
                pending_ask = pending_ask or said.strip()[:60]
    last_kind = kinds[-1] if kinds else ""
    numbers = {
        "steps": float(len(steps)),
        "tool_calls": float(len(tools)),
        "read_calls": float(kinds.count("read")),
        "write_calls": float(kinds.count("write")),
        "distinct_tools": float(len(set(tools))),
        "step_errors": float(len(errors)),
        "tool_errors": float(len(tool_errors)),
        "user_turns": float(len(user_turns)),
        "agent_turns": float(agent_turns),
        "tool_arguments": float(arguments),
        "write_arguments": float(write_arguments),
        "changes": float(changes),
        "confirmation_requests": float(asked),
        "user_words": float(user_words),
    }
    flags = {
        "step_error": errors[0][:120] if errors else "",
        "tool_error": tool_errors[0][:120] if tool_errors else "",
        "write_called": next((t for t, k in zip(tools, kinds, strict=True) if k == "write"), ""),
        "read_called": next((t for t, k in zip(tools, kinds, strict=True) if k == "read"), ""),
        "handoff": next((t for t, k in zip(tools, kinds, strict=True) if k == "handoff"), ""),
        "ended_by_handoff": tools[-1] if last_kind == "handoff" else "",
        "last_action_write": tools[-1] if last_kind == "write" else "",
        "last_action_read": tools[-1] if last_kind == "read" else "",
        "write_without_confirmation": write_unconfirmed,
        "write_before_read": (
            tools[kinds.index("write")]
            if "write" in kinds and "read" not in kinds[: kinds.index("write")]
            else ""
        ),
        "repeated_tool_call": next((t for i, t in enumerate(tools) if t in tools[:i]), ""),
        "write_with_unsupported_id": write_unsupported[:120],
        "write_with_unsupported_argument": write_argument[:120],
        "last_tool_failed": tool_errors[-1][:120] if tools and last_failed else "",
        "user_confirmed": next((u.strip() for u in user_turns if _lexicon(u, "confirmation")), "")[
            :60
        ],
    }
    flags["asked_after_last_change"] = pending_ask
    flags["confirmed_after_last_change"] = pending_confirm
    flags["same_target_changed_twice"] = same_target[:120]
    flags["failed_change_retried"] = retried
    for kind in ERROR_KINDS:
        flags["error_" + kind] = error_kinds.get(kind, "")[:120]
    return tools, numbers, flags, (results, last_result), tool_errors, "\n".join(grounded)


# What a user asks an agent to do, by a generic verb vocabulary: request words (and
# their -s/-ed/-ing forms) mapped to one action, and the same for the first verb of a
# changing tool's name. Words that are mostly nouns in requests ("order", "charge") are
# left out.
REQUEST_ACTIONS = {
    "cancel": "cancel",
    "return": "return",
    "refund": "return",
    "exchange": "exchange",
    "swap": "exchange",
    "replace": "exchange",
    "modify": "modify",
    "change": "modify",
    "update": "modify",
    "edit": "modify",
    "book": "book",
    "reserve": "book",
    "reschedule": "modify",
    "delete": "delete",
    "remove": "delete",
    "send": "send",
    "create": "create",
    "upgrade": "upgrade",
    "downgrade": "upgrade",
}


def _action_of_word(word):
    """Return the action a request word names (cancel, cancels, cancelled ...), else ''."""
    for suffix in ("", "s", "es", "d", "ed", "led", "ing", "ling"):
        if suffix and not word.endswith(suffix):
            continue
        stem = word[: len(word) - len(suffix)] if suffix else word
        if stem in REQUEST_ACTIONS:
            return REQUEST_ACTIONS[stem]
        if suffix in ("d", "ed", "ing") and stem + "e" in REQUEST_ACTIONS:
            return REQUEST_ACTIONS[stem + "e"]
    return ""


def _action_of_tool(name):
    """Return the action a changing tool performs, by the first verb of its name, else ''."""
    parts = re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
    return REQUEST_ACTIONS.get(parts[0], "") if parts else ""


def _request_facts(steps, out_padded):
    """Return flags comparing what the user asked for with what the agent did.

    Requested actions come from the user's turns (a generic verb vocabulary), changes
    from the changing tool calls that did not fail; the final answer's claim of success
    is set against them.
    """
    requested = {}  # action -> the user's word that asked for it
    done = set()
    confirmations = 0
    changes = 0
    last_change_failed = False
    tool_calls = 0
    for step in steps:
        if is_user(step):
            words = _words(_text(step.get("output")) or _text(step.get("input")))
            if _lexicon(_padded(words), "confirmation"):
                confirmations += 1
            for word in words:
                action = _action_of_word(word)
                if action:
                    requested.setdefault(action, word)
        elif str(step.get("type") or "") == "tool":
            tool_calls += 1
            if _tool_kind(str(step.get("name") or "")) == "write":
                last_change_failed = bool(step.get("error"))
                if not step.get("error"):
                    changes += 1
                    done.add(_action_of_tool(str(step.get("name") or "")))
    unmet = sorted(a for a in requested if a not in done)
    # Only where tools ran: a plain answer's "has been" is no claim about a change.
    claimed = _lexicon(out_padded, "success") if tool_calls else ""
    flags = {
        "request_not_done": requested[unmet[0]] if unmet else "",
        "confirmations_outnumber_changes": (
            str(confirmations) + " confirmations, " + str(changes) + " changes"
            if confirmations > changes
            else ""
        ),
        "claimed_success_without_change": (
            claimed if claimed and (not changes or last_change_failed) else ""
        ),
    }
    return flags


def _is_conversation(item):
    return isinstance(item.get("turns"), list) and isinstance(item.get("messages"), list)


def _flatten(conversation):
    """Return a conversation as one trace: the user's turns as steps between its turns' steps.

    Every trace fact then holds over the whole conversation (tool errors across turns, a
    handoff anywhere, a change made without the user confirming); the output is the last
    assistant message, so output facts read the conversation's ending.
    """
    steps = []
    users = [m for m in conversation["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    replies = [
        m for m in conversation["messages"] if isinstance(m, dict) and m.get("role") == "assistant"
    ]
    turns = [t for t in conversation["turns"] if isinstance(t, dict)]
    # A step recorded again by a later turn (a stored chat completion lists every earlier
    # tool call of its history) is one step: its first place, its latest result.
    seen = {}
    for index, turn in enumerate(turns):
        said = users[index].get("content") if index < len(users) else None
        steps.append({"type": "span", "name": "user", "output": said})
        for step in turn.get("steps") or []:
            if not isinstance(step, dict):
                continue
            key = step.get("id")
            if isinstance(key, str) and key and key in seen:
                if step.get("output") is not None or step.get("error"):
                    steps[seen[key]] = step
                continue
            if isinstance(key, str) and key:
                seen[key] = len(steps)
            steps.append(step)
    costs = [t.get("cost") for t in turns if isinstance(t.get("cost"), (int, float))]
    latencies = [
        t.get("latency_ms") for t in turns if isinstance(t.get("latency_ms"), (int, float))
    ]
    return {
        "input": users[0].get("content") if users else None,
        "output": replies[-1].get("content") if replies else None,
        "steps": steps,
        "latency_ms": sum(latencies) if latencies else None,
        "cost": sum(costs) if costs else None,
    }


def _repeated_user(conversation):
    """Return a user message that says again what an earlier one said, else ''.

    Again: it holds at least 90 % of the earlier message's words (of three or more), so a
    restated request counts and two requests of one template about different things do not.
    """
    seen = []
    for message in conversation["messages"]:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        text = _text(message.get("content"))
        words = set(_words(text))
        if len(words) >= 3:
            for earlier in seen:
                if len(words & earlier) >= 0.9 * len(earlier):
                    return text[:80]
            seen.append(words)
    return ""


def _conversation_facts(conversation):
    """Return (numbers, flags) only a conversation has: its turns and how it ended."""
    turns = [t for t in conversation["turns"] if isinstance(t, dict)]
    failing = [
        t
        for t in turns
        if any(
            isinstance(s, dict) and s.get("type") == "tool" and s.get("error")
            for s in t.get("steps") or []
        )
    ]
    last = turns[-1] if turns else {}
    last_errors = [
        str(s.get("name")) + ": " + str(s.get("error"))
        for s in last.get("steps") or []
        if isinstance(s, dict) and s.get("error")
    ]
    numbers = {"turns": float(len(turns)), "turns_with_tool_errors": float(len(failing))}
    flags = {"user_repeated": _repeated_user(conversation), "last_turn_failed": ""}
    if last_errors:
        flags["last_turn_failed"] = last_errors[0][:120]
    return numbers, flags


def view(trace):
    """Return the pre-computed facts about a trace (or a conversation) that rules look at."""
    if not isinstance(trace, dict):
        trace = {}
    if _is_conversation(trace):
        extra_numbers, extra_flags = _conversation_facts(trace)
        trace = _flatten(trace)
    else:
        extra_numbers = {"turns": 1.0, "turns_with_tool_errors": 0.0}
        extra_flags = {"user_repeated": "", "last_turn_failed": ""}
    steps = trace.get("steps")
    steps = [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
    # Whatever shape the source recorded the conversation in (shapes.py): user turns,
    # agent turns with their calls, tool steps with their errors.
    steps, system = conversation_steps(trace, steps)
    # Chat messages are read for what they say: the last reply, the system's and the
    # user's words (not roles, ids or tool results); other outputs and inputs as they are.
    out_raw = said_text(trace.get("output")) or _text(trace.get("output"))
    if trace.get("output") is None:
        replies = [reply_text(s.get("output")) for s in steps if s.get("type") == "llm"]
        out_raw = next((r for r in reversed(replies) if r), "")
    in_raw = asked_text(trace.get("input")) or _text(trace.get("input"))
    out_words = _words(out_raw)
    in_words = _words(in_raw)
    out_padded = _padded(out_words)
    parsed = _json(trace.get("output"))
    # What the agent was told includes a system prompt the input does not hold.
    told_raw = in_raw if system in in_raw else in_raw + "\n" + system
    tools, step_numbers, flags, told, tool_errors, grounded = _step_facts(steps, told_raw)
    results, last_result = told
    lines = [line for line in out_raw.splitlines() if line.strip()]
    letters = [c for c in out_raw if c.isalpha()]
    upper = sum(1 for c in letters if c.isupper())
    numbers = {
        "output_chars": float(len(out_raw)),
        "output_words": float(len(out_words)),
        "output_sentences": float(len(_SENTENCE.findall(out_raw))),
        "output_lines": float(len(lines)),
        "output_paragraphs": float(len([p for p in re.split(r"\n\s*\n", out_raw) if p.strip()])),
        "input_words": float(len(in_words)),
        "output_input_ratio": round(len(out_words) / max(1, len(in_words)), 3),
        "uppercase_share": round(100.0 * upper / len(letters), 1) if letters else 0.0,
        "repetition_share": _repetition(out_words),
        "latency_ms": _number(trace.get("latency_ms")),
        "cost": _number(trace.get("cost")),
        **step_numbers,
    }
    for name, pattern in _SHAPE_RES.items():
        found = pattern.search(out_raw)
        flags["out_" + name] = (found.group(0).strip() or name)[:80] if found else ""
    for name in ("url", "md_link", "email", "phone", "date", "street_address", "id_token"):
        found = _SHAPE_RES[name].search(in_raw)
        flags["in_" + name] = found.group(0).strip()[:80] if found else ""
    for name in LEXICONS:
        if name != "confirmation":
            flags["out_" + name] = _lexicon(out_padded, name)
    flags["in_refusal"] = _lexicon(_padded(in_words), "refusal")
    flags["out_json"] = "valid" if parsed is not None else ""
    flags["copies_input_value"] = _mentions(
        {v.strip() for v in _KEY_VALUE.findall(in_raw) if len(v.strip()) >= 3}, out_raw
    )
    flags["copies_input_number"] = _mentions(
        {t.replace(",", "") for t in _NUMBER.findall(in_raw) if len(t) >= 3}, out_raw
    )
    flags["copies_input_name"] = _mentions(set(_NAME.findall(in_raw)), out_raw)
    flags["copies_input_id"] = _mentions(
        {m.group(0).lstrip("#") for m in _SHAPE_RES["id_token"].finditer(in_raw)}, out_raw
    )
    flags["copies_input_run"] = _copied_run(out_words, in_words)
    flags["mentions_tool_result"] = _mentions(_salient("\n".join(results)), out_raw)
    flags["mentions_last_result"] = _mentions(_salient(last_result), out_raw)
    flags["output_unsupported_id"] = _unsupported(out_raw, grounded)
    claimed = flags["out_success"] if not flags["out_failure"] else ""
    flags["contradicts_tool_error"] = (
        tool_errors[-1][:80] + " / '" + claimed + "'" if tool_errors and claimed else ""
    )
    numbers.update(extra_numbers)
    flags.update(extra_flags)
    # Instructions the input states (length limits, case, required terms, format) and
    # whether the output keeps them, and what the output shares with the input:
    # constraints.py, inlined into emitted code.
    for facts in (instruction_facts, comparison_facts):
        said_numbers, said_flags = facts(in_raw, out_raw)
        numbers.update(said_numbers)
        flags.update(said_flags)
    flags.update(_request_facts(steps, out_padded))
    # The request was resolved at the end: the last answer claims success and neither the
    # last turn nor the answer reports a failure.
    flags["last_turn_resolved"] = (
        flags["out_success"]
        if flags["out_success"] and not (flags["out_failure"] or extra_flags["last_turn_failed"])
        else ""
    )
    # The last tool call failed and the final answer neither apologises nor mentions it.
    flags["ignores_last_error"] = (
        flags["last_tool_failed"]
        if flags["last_tool_failed"] and not (flags["out_failure"] or flags["out_apology"])
        else ""
    )
    return {
        "out_raw": out_raw,
        "out": out_padded,
        "opening": _padded(out_words[:_OPENING_WORDS]),
        "start": _padded(out_words[:_START_WORDS]),
        "in": _padded(in_words),
        "json": parsed,
        "keys": sorted(str(k) for k in parsed) if isinstance(parsed, dict) else [],
        "tools": tools,
        "numbers": numbers,
        "flags": flags,
    }


def flag(v, name):
    """Return the text that makes a named fact true, else ''."""
    return v["flags"][name]


def has_phrase(v, field, phrase):
    """Return the phrase when the words of a field contain it, else ''."""
    return phrase if " " + phrase + " " in v[field] else ""


def starts_with(v, phrase):
    """Return the phrase when the output begins with it, else ''."""
    return phrase if v["start"].startswith(" " + phrase + " ") else ""


def refusal(v, field):
    """Return the first refusal phrase found in a field, else ''."""
    return _lexicon(v[field], "refusal")


def json_key(v, key):
    """Return the key when the output is a JSON object holding it, else ''."""
    return key if key in v["keys"] else ""


def tool_called(v, name, times):
    """Return the tool name when a tool step of that name ran at least `times` times."""
    return name if v["tools"].count(name) >= times else ""


def at_least(v, measure, threshold):
    """Return the measured value as text when it is at least the threshold, else ''."""
    value = v["numbers"][measure]
    if value is None or value < threshold:
        return ""
    return str(int(value)) if value == int(value) else str(round(value, 6))
