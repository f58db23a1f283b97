"""Model calls from eval code: what the jail may ask the runner, and how it is answered.

Eval code calls `judge(question, context=..., choices=...)` or `llm(prompt)` from the
`iofold_eval` module the harness builds. The harness writes the request as one line on
its result stream, `{"c": {...}, "n": nonce of the current trace}`, and waits for a reply
frame (kind "R") on its input. The runner parses the request here, strictly: only the
fields below, only strings, bounded sizes. Nothing in a request names a model, a host, a
URL or a key; which provider answers, with which model and key, is the trusted caller's
choice (`CallHandler`), so the channel cannot be pointed anywhere else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

REPLY_FRAME = b"R"
# Bounds on what one request may carry (characters).
MAX_PROMPT_CHARS = 100_000
MAX_CHOICE_CHARS = 100
MAX_CHOICES = 10
# What no UTF-8 text (a provider's request, a database text column) can hold: NUL and
# lone surrogates. Eval code can make them; traces (stored as jsonb) cannot carry them.
NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
NO_CHANNEL = (
    "judge() and llm() are not available in this run: it has no LLM provider channel "
    "(run the eval through iofold, with a provider configured)"
)


@dataclass(frozen=True)
class CallRequest:
    """One judge() or llm() call, as the eval made it."""

    kind: str  # "judge" or "llm"
    prompt: str = ""  # llm(): the whole prompt
    question: str = ""  # judge(): the question, the context and the allowed answers
    context: str = ""
    choices: tuple[str, ...] = ()


# The trusted side: (request, index of the trace that made it) -> reply text; it raises
# CallRefused with a message the eval sees (budget spent, provider error, timeout ...).
CallHandler = Callable[[CallRequest, int], str]


class CallRefused(Exception):
    """A call the runner answers with an error; the message goes back to the eval."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _text(value: object, name: str, limit: int) -> str:
    if type(value) is not str:
        raise CallRefused(f"{name} must be a string")
    if len(value) > limit:
        raise CallRefused(f"{name} is longer than {limit} characters")
    if NOT_TEXT.search(value):
        raise CallRefused(f"{name} contains a NUL character or a lone surrogate")
    return value


def parse_request(message: object) -> CallRequest:
    """Return the request in `message` (the "c" field of a call line) or raise CallRefused."""
    if type(message) is not dict:
        raise CallRefused("a call must be an object")
    kind = message.get("kind")
    if kind == "llm":
        if set(message) != {"kind", "prompt"}:
            raise CallRefused("llm() takes only a prompt")
        return CallRequest(kind="llm", prompt=_text(message["prompt"], "prompt", MAX_PROMPT_CHARS))
    if kind == "judge":
        if set(message) != {"kind", "question", "context", "choices"}:
            raise CallRefused("judge() takes only a question, a context and choices")
        question = _text(message["question"], "question", MAX_PROMPT_CHARS)
        context = _text(message["context"], "context", MAX_PROMPT_CHARS)
        if len(question) + len(context) > MAX_PROMPT_CHARS:
            raise CallRefused(f"question and context are longer than {MAX_PROMPT_CHARS} characters")
        choices = message["choices"]
        if type(choices) is not list or not 2 <= len(choices) <= MAX_CHOICES:
            raise CallRefused(f"choices must be 2 to {MAX_CHOICES} strings")
        cleaned = tuple(_text(c, "a choice", MAX_CHOICE_CHARS).strip() for c in choices)
        if any(not c for c in cleaned) or len({c.lower() for c in cleaned}) != len(cleaned):
            raise CallRefused("choices must be distinct, non-empty strings")
        return CallRequest(kind="judge", question=question, context=context, choices=cleaned)
    raise CallRefused("unknown call: eval code may call judge() and llm()")


def reply_frame(*, text: str | None = None, error: str | None = None) -> bytes:
    """Return the frame that answers one call: the text, or the error the eval raises."""
    body = {"error": error} if error is not None else {"text": text}
    payload = json.dumps(body, ensure_ascii=True).encode()
    return b"".join((REPLY_FRAME, bytes(8), len(payload).to_bytes(4, "big"), payload))


def answer(handler: CallHandler | None, message: object, index: int) -> bytes:
    """Return the reply frame for one call line's request, never raising for its content."""
    try:
        request = parse_request(message)
        if handler is None:
            raise CallRefused(NO_CHANNEL)
        text = handler(request, index)
        if type(text) is not str:
            raise CallRefused("the provider gave no text")
        return reply_frame(text=text)
    except CallRefused as exc:
        return reply_frame(error=exc.message)
    except Exception:
        # A fault in the trusted handler fails this call, not the whole run.
        return reply_frame(error="the call failed on an internal error")
