"""Versioned meta-prompts for generating and refining eval functions.

Changing any template text changes what a stored prompt version means: bump the
version constant with it (a test pins each version's fingerprint).

Budgets are in approximate tokens, counted as characters / 4. A trace that does not fit
whole is first minified (``traces.minify``: what evals read, long values cut with their
lengths kept), and the examples that fit are counted by their minified size, so
minification comes before dropping examples. Traces are then trimmed further to fit
without losing what usually decides a label: the trace's input and output, step
errors, step names and types. Step payloads go first. The result depends only on
the arguments, so the same labels always produce the same prompt.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sandbox.validate import ALLOWED_IMPORTS, FORBIDDEN_NAMES, JUDGE_MODULE
from traces.minify import minify_trace

# v3: a trace that does not fit whole is first shown in its compact form (traces.minify).
# gen-v4: with a real provider, generated code may call the judge (JUDGE_SECTION).
GENERATION_PROMPT_VERSION = "gen-v4"
REFINE_PROMPT_VERSION = "refine-v3"

CHARS_PER_TOKEN = 4
# Below this an example is too trimmed to teach anything; show fewer examples instead.
MIN_EXAMPLE_TOKENS = 300
DEFAULT_MAX_EXAMPLES = 30
MAX_NOTE_CHARS = 600
MAX_ERROR_CHARS = 4000
# Room for the example-count line, whose digits are known only after selection.
COUNT_LINE_SLACK = 160

Label = Literal["positive", "negative"]


class PromptBudgetError(ValueError):
    """The fixed parts of the prompt leave no room for a single example."""


@dataclass(frozen=True)
class PromptExample:
    """A labelled trace: `positive` is a thumbs-up (good), `negative` a thumbs-down."""

    trace: dict[str, Any]
    label: Label
    note: str = ""


@dataclass(frozen=True)
class Contradiction:
    """A labelled trace on which the current eval disagrees with the reviewer.

    `eval_passed` is None when the eval raised or timed out; `eval_reason` then
    holds the error.
    """

    trace: dict[str, Any]
    label: Label
    note: str
    eval_passed: bool | None
    eval_reason: str


@dataclass(frozen=True)
class Prompt:
    """A built prompt, its template version and the traces it shows."""

    system: str
    user: str
    version: str
    trace_ids: tuple[str, ...] = ()

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.user}]

    @property
    def approx_tokens(self) -> int:
        return approx_tokens(self.system) + approx_tokens(self.user)


def approx_tokens(text: str) -> int:
    """Return the approximate token count of `text` (characters / 4, rounded up)."""
    return -(-len(text) // CHARS_PER_TOKEN)


TRACE_SCHEMA = """\
{
  "id": str, "name": str | None, "timestamp": ISO-8601 str,
  "input": any JSON,            # what the user or caller sent
  "output": any JSON,           # the application's final answer
  "steps": [                    # observations in start order; may be empty
    {"id": str, "parent_id": str | None,
     "type": "llm" | "tool" | "retriever" | "agent" | "chain" | "span" | "event",
     "name": str, "input": any JSON, "output": any JSON,
     "error": str | None,       # set when the step failed
     "model": str | None, "usage": {"input": int, "output": int} | None,
     "start_time": str | None, "end_time": str | None, "metadata": dict},
    ...
  ],
  "metadata": dict, "tags": [str], "user_id": str | None, "session_id": str | None,
  "latency_ms": float | None, "cost": float | None,
}"""

# Appended to the system prompt when the eval set judges whole conversations
# (docs/conversations.md): the function then receives this dict, not a trace.
CONVERSATION_SECTION = """

## Conversations

This eval set judges whole conversations, not single traces. eval_fn receives one \
conversation (the examples below are conversations too), with its turns in order:

    def eval_fn(conversation: dict) -> tuple[bool, str]:

{
  "id": str,                    # the session / thread / conversation id
  "messages": [                 # two per turn: the user's message, then the answer
    {"role": "user" | "assistant", "content": str,
     "tool_calls": [{"name": str, "arguments": any JSON, "output": any JSON,
                     "error": str | None}, ...]},   # the assistant's, in that turn
    ...
  ],
  "turns": [trace, ...],        # each turn as a trace of the schema above
  "metadata": {"source": str, "turn_count": int, "started_at": str,
               "last_activity_at": str, "ended_by_marker": bool,
               "user_id": str | None, "has_error": bool, "cost": float | None},
  "is_complete": bool,
}

Judge the conversation as a whole: whether the user's request was resolved by the end, \
whether the user had to repeat themselves, tool errors across turns, handoffs."""

# Appended to the generation prompt when the workspace has a real provider with money left
# this month (docs/judges.md): code first, the judge only for what code cannot see.
JUDGE_SECTION = """

## An LLM judge, for what code cannot see

Some criteria need reading for meaning, which rules do badly: whether a reply follows a \
subtle instruction, whether a refusal was warranted, whether an answer is faithful to a \
tool result. For those, and only those, the code may also import:

    from {module} import judge, llm, JudgeError

- judge(question, *, context="", choices=("yes", "no")) asks an LLM judge and returns \
one of choices (2 to 10 distinct strings).
- llm(prompt) returns the model's text.
- Every call costs money and time, and runs have a budget. Decide with code everything \
code can see (structure, tool calls and their errors, lengths, refusal phrases) and \
call the judge only for the traces code cannot decide, with one short, specific \
question and only the context it needs. Use no judge at all when rules reproduce the \
labels.
- Both raise JudgeError (no provider, budget spent, timeout). Let it propagate: the \
trace then shows the error instead of a guessed verdict (the one exception to \
"never raise")."""

SYSTEM_TEMPLATE = """\
You write Python evaluation functions for traces of an LLM application. A team has \
reviewed some traces by hand; your function must reproduce their judgement on traces \
it has never seen.

## Contract

Define exactly this function:

    def eval_fn(trace: dict) -> tuple[bool, str]:

Return (True, reason) when the trace is good and (False, reason) when it is bad. The \
reason is one short sentence for a human reviewer saying what decided the verdict. \
eval_fn must never raise: any field may be missing, null or of an unexpected type, so \
guard every access and still return a verdict.

## Trace schema

Every trace is a plain dict (JSON types only) of this shape:

{schema}

## Rules

- Imports: only {imports}. Nothing else can be imported.
- Forbidden: any name or attribute with double underscores (dunder access); the \
builtins {forbidden}; getattr, setattr, hasattr or delattr with a computed name; any \
file, process or network I/O; string annotations and anything that evaluates a string \
as code (functools.singledispatch, typing.get_type_hints, forward references); \
str.format or format_map except on a literal whose fields read no attribute or item \
(use f-strings). Code using them is rejected before it runs.
- Standard library only, deterministic (no randomness, no clock): the same trace \
always gets the same verdict. Keep it fast, well under a second on a large trace.
- Capture the criteria with general, readable rules rather than matching the exact \
wording of the examples. Judge by content, never by ids, timestamps or other fields \
that only identify a trace.

## Examples

Examples may be trimmed to fit. A trace that does not fit whole is shown compact \
first: step ids, times, token usage, step metadata and empty fields are left out, and \
long strings are cut in the middle and marked "…[N of M chars trimmed]…" (M is the \
original length), long lists "…[N of M items trimmed]…". Tighter still, long strings \
are marked "…[N chars trimmed]…", long lists and objects are shortened with a similar marker, \
step inputs and outputs may be replaced by "[omitted: N chars]", and runs of steps by \
an entry {{"_omitted_steps": N, "kinds": {{...}}}}. The traces eval_fn receives are \
complete and never contain these markers.

## Answer format

Answer with exactly one ```python code block holding the complete module: imports, \
any helpers, and eval_fn. No other code blocks."""

GENERATION_USER_TEMPLATE = """\
## Criteria

{criteria}

## Labelled traces

{count_line}
{examples}
## Task

Write eval_fn so that it returns True for the GOOD traces and False for the BAD ones, \
for the reasons the reviewers give, and judges new traces by the same criteria."""

REFINE_USER_TEMPLATE = """\
## Criteria

{criteria}

## Current eval function

```python
{code}
```

## Labelled traces

{count_line}
{examples}
## Task

The current eval_fn disagrees with the reviewers on the DISAGREEMENT cases above. \
Revise it so that it agrees with them there while keeping every AGREEMENT case right, \
and judges new traces by the same criteria. Answer with the complete revised module."""

RETRY_TEMPLATE = """\
Your previous answer could not be used:

{error}

Fix the problem and answer again with the complete module (imports, helpers and \
eval_fn) in exactly one ```python code block, following the contract and the rules."""

TEMPLATES = {
    GENERATION_PROMPT_VERSION: (
        SYSTEM_TEMPLATE,
        GENERATION_USER_TEMPLATE,
        TRACE_SCHEMA,
        JUDGE_SECTION,
    ),
    REFINE_PROMPT_VERSION: (SYSTEM_TEMPLATE, REFINE_USER_TEMPLATE, TRACE_SCHEMA),
}


def build_system_prompt(*, conversations: bool = False, judge: bool = False) -> str:
    """Return the system prompt shared by generation and refinement; `judge` offers the
    judge module (only when the workspace has a provider that can answer it)."""
    system = SYSTEM_TEMPLATE.format(
        schema=TRACE_SCHEMA,
        imports=", ".join(ALLOWED_IMPORTS),
        # The validator's own list, so the prompt never promises what it rejects.
        forbidden=", ".join(sorted(FORBIDDEN_NAMES)),
    )
    if conversations:
        system += CONVERSATION_SECTION
    if judge:
        system += JUDGE_SECTION.format(module=JUDGE_MODULE)
    return system


def is_conversation(item: Any) -> bool:
    """Whether an example is a conversation dict (traces.conversations.conversation_dict)."""
    return (
        isinstance(item, dict)
        and isinstance(item.get("turns"), list)
        and (isinstance(item.get("messages"), list))
    )


def build_generation_prompt(
    *,
    criteria: str,
    examples: Sequence[PromptExample],
    token_budget: int,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    judge: bool = False,
) -> Prompt:
    """Return the prompt asking for a new eval_fn from the criteria and labelled traces.

    Positives and negatives alternate (in the given order) so that whatever prefix
    fits the budget stays balanced. `judge` offers judge()/llm() (JUDGE_SECTION).
    """
    items = [_example_item(example) for example in _alternate(examples)][:max_examples]
    return _assemble(
        template=GENERATION_USER_TEMPLATE,
        fields={"criteria": criteria.strip()},
        items=items,
        token_budget=token_budget,
        version=GENERATION_PROMPT_VERSION,
        judge=judge,
    )


def build_refine_prompt(
    *,
    criteria: str,
    current_code: str,
    contradictions: Sequence[Contradiction],
    examples: Sequence[PromptExample],
    token_budget: int,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> Prompt:
    """Return the prompt asking to revise `current_code` where it disagrees with reviewers.

    Disagreements come first, two for every agreeing example, so a tight budget keeps
    the cases to fix and still some of the cases not to break.
    """
    fixes = [_contradiction_item(c) for c in _alternate(contradictions)]
    keeps = [_example_item(example, agreement=True) for example in _alternate(examples)]
    ordered: list[_Item] = []
    while fixes or keeps:
        ordered.extend(fixes[:2])
        ordered.extend(keeps[:1])
        fixes, keeps = fixes[2:], keeps[1:]
    return _assemble(
        template=REFINE_USER_TEMPLATE,
        fields={"criteria": criteria.strip(), "code": current_code.strip("\n")},
        items=ordered[:max_examples],
        token_budget=token_budget,
        version=REFINE_PROMPT_VERSION,
    )


def build_retry_message(error: str) -> str:
    """Return the follow-up user message feeding a validation or runtime error back."""
    return RETRY_TEMPLATE.format(error=truncate_middle(error.strip(), MAX_ERROR_CHARS))


# Assembly ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    header: str
    trace: dict[str, Any]
    label: Label
    kind: str  # "example" or "disagreement"


def _label_word(label: str) -> str:
    if label == "positive":
        return "GOOD (positive)"
    if label == "negative":
        return "BAD (negative)"
    raise ValueError(f"example label must be 'positive' or 'negative', not {label!r}")


def _note_line(note: str) -> str:
    note = " ".join(note.split())
    return f"Reviewer's note: {truncate_middle(note, MAX_NOTE_CHARS) if note else '(none)'}"


def _example_item(example: PromptExample, *, agreement: bool = False) -> _Item:
    prefix = "AGREEMENT — " if agreement else ""
    header = f"{prefix}reviewer: {_label_word(example.label)}\n{_note_line(example.note)}"
    return _Item(header=header, trace=example.trace, label=example.label, kind="example")


def _contradiction_item(case: Contradiction) -> _Item:
    if case.eval_passed is None:
        verdict = f"eval_fn failed: {truncate_middle(case.eval_reason, 500)}"
    else:
        verdict = f"eval_fn returned {case.eval_passed}: {truncate_middle(case.eval_reason, 500)!r}"
    header = f"DISAGREEMENT — reviewer: {_label_word(case.label)}; {verdict}"
    header += f"\n{_note_line(case.note)}"
    return _Item(header=header, trace=case.trace, label=case.label, kind="disagreement")


def _alternate[T: (PromptExample, Contradiction)](items: Sequence[T]) -> list[T]:
    """Return positives and negatives interleaved, each class in its given order."""
    for item in items:
        _label_word(item.label)
    positives = [item for item in items if item.label == "positive"]
    negatives = [item for item in items if item.label == "negative"]
    merged: list[T] = []
    for index in range(max(len(positives), len(negatives))):
        merged.extend(positives[index : index + 1])
        merged.extend(negatives[index : index + 1])
    return merged


def _render_item(number: int, item: _Item, trace_json: str) -> str:
    return f"### Trace {number} — {item.header}\n```json\n{trace_json}\n```\n\n"


def _assemble(
    *,
    template: str,
    fields: dict[str, str],
    items: list[_Item],
    token_budget: int,
    version: str,
    judge: bool = False,
) -> Prompt:
    system = build_system_prompt(
        conversations=any(is_conversation(i.trace) for i in items), judge=judge
    )
    budget_chars = token_budget * CHARS_PER_TOKEN
    skeleton = template.format(**fields, count_line="", examples="")
    available = budget_chars - len(system) - len(skeleton) - COUNT_LINE_SLACK
    min_chars = MIN_EXAMPLE_TOKENS * CHARS_PER_TOKEN
    if items and available < min_chars:
        needed = approx_tokens(system) + approx_tokens(skeleton) + MIN_EXAMPLE_TOKENS
        raise PromptBudgetError(
            f"a token budget of {token_budget} leaves no room for examples (need about {needed})"
        )

    wrappers = [len(_render_item(n, item, "")) for n, item in enumerate(items, 1)]
    full = [wrap + len(_dump(item.trace)) for wrap, item in zip(wrappers, items, strict=True)]
    compact = [
        min(size, wrap + len(_dump(minify_trace(item.trace))))
        for wrap, size, item in zip(wrappers, full, items, strict=True)
    ]
    count = len(items)
    # The largest prefix in which every example can get its compact size or the minimum:
    # an example is dropped only when minifying the others does not make room for it.
    while count and sum(min(size, min_chars) for size in compact[:count]) > available:
        count -= 1
    shares = _water_fill(full[:count], available)

    shown = items[:count]
    rendered = []
    for index, item in enumerate(shown):
        trace_json = render_trace(item.trace, max_chars=shares[index] - wrappers[index])
        rendered.append(_render_item(index + 1, item, trace_json))
    user = template.format(
        **fields,
        count_line=_count_line(shown, total=len(items)),
        examples="".join(rendered),
    )
    trace_ids = tuple(str(item.trace.get("id", "")) for item in shown)
    return Prompt(system=system, user=user, version=version, trace_ids=trace_ids)


def _count_line(shown: list[_Item], *, total: int) -> str:
    good = sum(item.label == "positive" for item in shown)
    bad = len(shown) - good
    line = f"{len(shown)} traces: {good} GOOD, {bad} BAD"
    disagreements = sum(item.kind == "disagreement" for item in shown)
    if disagreements:
        line += f"; {disagreements} DISAGREEMENT"
    if total > len(shown):
        line += f" (a balanced selection of {total}; the rest did not fit)"
    return line + ".\n"


def _water_fill(sizes: list[int], total: int) -> list[int]:
    """Split `total` so small items get their full size and the rest share equally."""
    shares = [0] * len(sizes)
    remaining = total
    left = len(sizes)
    for index in sorted(range(len(sizes)), key=lambda i: (sizes[i], i)):
        shares[index] = min(sizes[index], remaining // left)
        remaining -= shares[index]
        left -= 1
    return shares


# Trace trimming ---------------------------------------------------------------


def truncate_middle(text: str, limit: int) -> str:
    """Return `text` cut to about `limit` characters, keeping its start and end."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    marker = f"…[{cut} chars trimmed]…"
    keep = max(limit - len(marker), 0)
    head = (keep + 1) // 2
    tail = keep - head
    cut = len(text) - head - tail
    marker = f"…[{cut} chars trimmed]…"
    return text[:head] + marker + (text[len(text) - tail :] if tail else "")


def shrink(value: Any, *, max_str: int, max_items: int) -> Any:
    """Return `value` with long strings, lists and objects shortened, recursively."""
    if isinstance(value, str):
        return truncate_middle(value, max_str)
    if isinstance(value, list):
        if len(value) > max_items:
            dropped = len(value) - max_items
            keep = [*value[: max_items - 1], f"…[{dropped} items trimmed]…", value[-1]]
            return [shrink(v, max_str=max_str, max_items=max_items) for v in keep]
        return [shrink(v, max_str=max_str, max_items=max_items) for v in value]
    if isinstance(value, dict):
        result = {}
        for index, (key, inner) in enumerate(value.items()):
            if index == max_items:
                result["…"] = f"[{len(value) - max_items} keys trimmed]"
                break
            result[str(key)] = shrink(inner, max_str=max_str, max_items=max_items)
        return result
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


Trace = dict[str, Any]
# A trim level maps the trace trimmed so far (and the original, for honest sizes) to
# a smaller trace.
TrimLevel = Callable[[Trace, Trace], Trace]


def _steps(trace: Trace) -> list[Any]:
    steps = trace.get("steps")
    return steps if isinstance(steps, list) else []


def _map_steps(trace: Trace, fn: Callable[[int, dict[str, Any]], dict[str, Any]]) -> Trace:
    if not _steps(trace):
        return trace
    steps = [fn(i, dict(s)) if isinstance(s, dict) else s for i, s in enumerate(_steps(trace))]
    return {**trace, "steps": steps}


def _shrink_step_payloads(max_str: int, max_items: int) -> TrimLevel:
    def apply(trace: Trace, original: Trace) -> Trace:
        def step_fn(index: int, step: dict[str, Any]) -> dict[str, Any]:
            for key in ("input", "output", "metadata"):
                if key in step:
                    step[key] = shrink(step[key], max_str=max_str, max_items=max_items)
            return step

        trace = _map_steps(trace, step_fn)
        for key in ("metadata", "tags"):
            if key in trace:
                trace = {**trace, key: shrink(trace[key], max_str=max_str, max_items=max_items)}
        return trace

    return apply


def _omit_step_field(*keys: str) -> TrimLevel:
    def apply(trace: Trace, original: Trace) -> Trace:
        # Step indexes still match the original here: steps collapse only later.
        original_steps = _steps(original)

        def step_fn(index: int, step: dict[str, Any]) -> dict[str, Any]:
            source = original_steps[index] if index < len(original_steps) else step
            for key in keys:
                if key not in step or step[key] in (None, "", {}, []):
                    continue
                if key == "metadata":
                    step[key] = {}
                elif not str(step[key]).startswith("[omitted"):
                    size = len(_dump(source.get(key) if isinstance(source, dict) else step[key]))
                    step[key] = f"[omitted: {size} chars]"
            return step

        return _map_steps(trace, step_fn)

    return apply


def _slim_steps(trace: Trace, original: Trace) -> Trace:
    """Keep only what identifies a step and whether it failed."""
    kept = ("id", "parent_id", "type", "name", "error", "input", "output")
    return _map_steps(trace, lambda index, step: {k: step[k] for k in kept if k in step})


def _shrink_own(
    *, input_chars: int, output_chars: int, error_chars: int, max_items: int
) -> TrimLevel:
    def apply(trace: Trace, original: Trace) -> Trace:
        trace = dict(trace)
        if "input" in trace:
            trace["input"] = shrink(trace["input"], max_str=input_chars, max_items=max_items)
        if "output" in trace:
            trace["output"] = shrink(trace["output"], max_str=output_chars, max_items=max_items)

        def step_fn(index: int, step: dict[str, Any]) -> dict[str, Any]:
            if isinstance(step.get("error"), str):
                step["error"] = truncate_middle(step["error"], error_chars)
            if isinstance(step.get("name"), str):
                step["name"] = truncate_middle(step["name"], 120)
            return step

        return _map_steps(trace, step_fn)

    return apply


def _collapse_steps(edge: int, max_errors: int) -> TrimLevel:
    """Keep the first and last `edge` steps and failed ones; summarise the rest."""

    def apply(trace: Trace, original: Trace) -> Trace:
        steps = _steps(trace)
        if len(steps) <= 2 * edge + 1:
            return trace
        failed = [i for i, s in enumerate(steps) if isinstance(s, dict) and s.get("error")]
        keep = {*range(edge), *range(len(steps) - edge, len(steps)), *failed[:max_errors]}
        collapsed: list[Any] = []
        run: list[Any] = []
        for index, step in enumerate(steps):
            if index not in keep:
                run.append(step)
                continue
            if run:
                collapsed.append(_omitted_marker(run))
                run = []
            collapsed.append(step)
        if run:
            collapsed.append(_omitted_marker(run))
        return {**trace, "steps": collapsed}

    return apply


def _omitted_marker(run: list[Any]) -> dict[str, Any]:
    count = 0
    kinds: Counter[str] = Counter()
    for step in run:
        if isinstance(step, dict) and "_omitted_steps" in step:
            # An earlier, wider collapse already summarised these.
            count += step["_omitted_steps"]
            kinds.update(step.get("kinds", {}))
        else:
            count += 1
            if isinstance(step, dict):
                kinds[f"{step.get('type')}:{truncate_middle(str(step.get('name')), 60)}"] += 1
    return {"_omitted_steps": count, "kinds": dict(kinds.most_common(12))}


def _clear_metadata(trace: Trace, original: Trace) -> Trace:
    return {**trace, "metadata": {}} if trace.get("metadata") else trace


# Cumulative, in order: step payloads shrink and go before the trace's own input and
# output are touched; step names, types and errors survive until the steps collapse,
# and failed steps survive the collapse.
TRIM_LEVELS: tuple[TrimLevel, ...] = (
    _shrink_step_payloads(2000, 20),
    _shrink_step_payloads(400, 8),
    _shrink_step_payloads(120, 4),
    _omit_step_field("input", "metadata"),
    _omit_step_field("output"),
    _slim_steps,
    _shrink_own(input_chars=2000, output_chars=6000, error_chars=1000, max_items=20),
    _collapse_steps(edge=20, max_errors=40),
    _collapse_steps(edge=5, max_errors=20),
    _clear_metadata,
    _shrink_own(input_chars=600, output_chars=1500, error_chars=300, max_items=8),
    _collapse_steps(edge=2, max_errors=5),
    _shrink_own(input_chars=200, output_chars=500, error_chars=200, max_items=4),
)


def render_trace(trace: Trace, *, max_chars: int) -> str:
    """Return the trace as JSON in at most `max_chars` characters: whole, else minified,
    then trimmed by levels."""
    text = _dump(trace)
    if len(text) <= max_chars:
        return text
    # The compact form first: it loses nothing an eval usually reads.
    current = minify_trace(trace) if isinstance(trace, dict) else trace
    text = _dump(current)
    for level in TRIM_LEVELS:
        if len(text) <= max_chars:
            return text
        current = level(current, trace)
        text = _dump(current)
    # Only a pathological trace gets here; the JSON is then cut like any long string.
    return truncate_middle(text, max_chars) if len(text) > max_chars else text
