"""Judge templates for common criteria, and the judge and hybrid eval code made from them.

A judge eval is ordinary eval code: it holds the set's criteria, the reviewers' notes
and labelled examples as data, and on each trace picks the few examples most like it
(inside the jail, with difflib), writes the prompt and asks `judge()`. A hybrid runs a
code eval first and asks the judge only when the code's verdict is one the labels show
it cannot be trusted with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from evals.datasets import LabelledExample

# Characters of a trace's material kept in an example and in the prompt.
EXAMPLE_CHARS = 600
MATERIAL_CHARS = 4000
MAX_EXAMPLES = 40
MAX_NOTES = 20
DEFAULT_SHOTS = 3
# A yes/no question, asked on every trace with the criteria, notes and examples: a longer
# one only adds cost to each call (and far past this the jail refuses the call itself).
MAX_QUESTION_CHARS = 2000
HYBRID_MARKER = "# --- the judge, for what the code cannot decide ---"


@dataclass(frozen=True)
class Criterion:
    key: str
    title: str
    question: str
    # What of the trace the judge reads: "reply", "conversation" or "tool_results".
    material: str


CRITERIA = {
    c.key: c
    for c in (
        Criterion(
            "instruction_following",
            "Instruction following",
            "Does the assistant's reply follow every instruction the user gave, "
            "including format, length and constraints?",
            "conversation",
        ),
        Criterion(
            "refusal",
            "Refusal appropriateness",
            "Is the assistant's decision to refuse or to help appropriate: it refuses only "
            "requests that are actually unsafe or out of scope, and helps with the rest?",
            "conversation",
        ),
        Criterion(
            "faithfulness",
            "Faithfulness to tool results and context",
            "Is every claim in the assistant's reply supported by the tool results or "
            "retrieved context shown, with nothing invented or contradicted?",
            "tool_results",
        ),
        Criterion(
            "policy",
            "Policy compliance",
            "Does the assistant's reply comply with the policy stated in the criteria?",
            "conversation",
        ),
        Criterion(
            "tone",
            "Tone",
            "Is the assistant's reply polite, professional and suited to the user?",
            "reply",
        ),
        Criterion(
            "criteria",
            "The eval set's own criteria",
            "Does this trace meet the criteria?",
            "conversation",
        ),
    )
}
DEFAULT_CRITERION = "criteria"
MATERIALS = ("reply", "conversation", "tool_results")


# The function both the jail and the service use to turn a trace into judge material.
# A conversation eval set's item is a conversation dict (docs/conversations.md): its
# material is its messages in order. Material longer than the limit keeps its opening
# and its end, so the judge always reads the reply (or the latest turns).
MATERIAL_SOURCE = """
def material(trace, kind, limit):
    def text(value):
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, default=str)

    if isinstance(trace.get("messages"), list):
        return conversation_material(trace["messages"], kind, limit, text)
    parts = []
    if kind != "reply":
        parts.append("User: " + text(trace.get("input"))[:limit])
    if kind == "tool_results":
        for step in trace.get("steps") or []:
            if isinstance(step, dict) and step.get("type") in ("tool", "retrieval"):
                parts.append("Tool " + str(step.get("name")) + ": " + text(step.get("output")))
    parts.append("Assistant: " + text(trace.get("output")))
    return clip("\\n".join(parts), limit)


def conversation_material(messages, kind, limit, text):
    messages = [m for m in messages if isinstance(m, dict)]
    if kind == "reply":
        replies = [m for m in messages if m.get("role") == "assistant"]
        messages = replies[-1:]
    parts = []
    for message in messages:
        role = "User" if message.get("role") == "user" else "Assistant"
        parts.append(role + ": " + text(message.get("content") or ""))
        if kind == "tool_results":
            for call in message.get("tool_calls") or []:
                if isinstance(call, dict):
                    result = call.get("error") or call.get("output")
                    parts.append("Tool " + str(call.get("name")) + ": " + text(result))
    return clip("\\n".join(parts), limit)


def clip(joined, limit):
    if len(joined) <= limit:
        return joined
    half = limit // 2
    return joined[:half] + "\\n[...]\\n" + joined[len(joined) - half :]


def judged_noun(trace):
    return "conversation" if isinstance(trace.get("messages"), list) else "trace"
"""

JUDGE_BODY = """
def pick_examples(probe, shots):
    scored = []
    for example in EXAMPLES:
        if example["text"] == probe:
            continue  # the trace itself, when it is one of the labelled examples
        ratio = difflib.SequenceMatcher(None, example["text"], probe).ratio()
        scored.append((-ratio, example["text"], example))
    scored.sort(key=lambda item: (item[0], item[1]))
    good = [s[2] for s in scored if s[2]["label"] == "good"]
    bad = [s[2] for s in scored if s[2]["label"] == "bad"]
    chosen = []
    while len(chosen) < shots and (good or bad):
        if bad:
            chosen.append(bad.pop(0))
        if good and len(chosen) < shots:
            chosen.append(good.pop(0))
    return chosen


def judge_eval_fn(trace):
    current = material(trace, MATERIAL, MATERIAL_CHARS)
    parts = ["Criteria:\\n" + CRITERIA]
    if NOTES:
        parts.append("Reviewers' notes:\\n" + "\\n".join("- " + n for n in NOTES))
    # The trace as an example would show it: how the trace itself is found among them.
    probe = material(trace, MATERIAL, EXAMPLE_CHARS)
    for number, example in enumerate(pick_examples(probe, SHOTS), start=1):
        answer = "yes" if example["label"] == "good" else "no"
        note = " (" + example["note"] + ")" if example["note"] else ""
        parts.append(f"Example {number}:\\n{example['text']}\\nAnswer: {answer}{note}")
    parts.append("The " + judged_noun(trace) + " to judge:\\n" + current)
    answer = judge(QUESTION, context="\\n\\n".join(parts), choices=("yes", "no"))
    return answer == "yes", "The judge answered " + answer + " to: " + QUESTION
"""


def _literal(value) -> str:
    # JSON of strings, lists and dicts of strings is a valid Python literal.
    return json.dumps(value, ensure_ascii=False, indent=1)


def example_data(examples: Sequence[LabelledExample], material: str) -> list[dict]:
    """Return the labelled examples a judge eval carries: text, label and note."""
    namespace: dict = {"json": json}
    exec(MATERIAL_SOURCE, namespace)  # noqa: S102 - our own constant source
    rows = []
    for example in examples:
        if example.label not in ("positive", "negative"):
            continue
        rows.append(
            {
                "text": namespace["material"](example.trace, material, EXAMPLE_CHARS),
                "label": "good" if example.label == "positive" else "bad",
                "note": (example.note or "")[:300],
            }
        )
    # Both labels kept when there are many: the newest first within each.
    good = [r for r in rows if r["label"] == "good"][: MAX_EXAMPLES // 2]
    bad = [r for r in rows if r["label"] == "bad"][: MAX_EXAMPLES // 2]
    return good + bad


def judge_code(
    *,
    criteria: str,
    question: str,
    material: str,
    examples: Sequence[LabelledExample],
    shots: int = DEFAULT_SHOTS,
) -> str:
    """Return the code of a judge eval: criteria, notes and examples, asked of judge()."""
    notes = [e.note.strip()[:300] for e in examples if (e.note or "").strip()][:MAX_NOTES]
    head = "\n".join(
        [
            "import difflib",
            "import json",
            "",
            "from iofold_eval import judge",
            "",
            f"CRITERIA = {_literal(criteria.strip() or 'The trace is good.')}",
            f"QUESTION = {_literal(question.strip())}",
            f"MATERIAL = {_literal(material)}",
            f"NOTES = {_literal(notes)}",
            f"EXAMPLES = {_literal(example_data(examples, material))}",
            f"SHOTS = {int(shots)}",
            f"EXAMPLE_CHARS = {EXAMPLE_CHARS}",
            f"MATERIAL_CHARS = {MATERIAL_CHARS}",
        ]
    )
    return f"{head}\n\n{MATERIAL_SOURCE}\n{JUDGE_BODY}\n\ndef eval_fn(trace):\n" + (
        "    return judge_eval_fn(trace)\n"
    )


def hybrid_code(*, code: str, judge: str, trusted: Sequence[bool]) -> str:
    """Return a hybrid: `code`'s verdicts in `trusted` stand, the rest go to `judge`.

    Which verdicts to trust comes from the labels (see `trusted_verdicts`): a code eval
    whose every "fail" was right on the training labels keeps its fails, and so on.
    """
    code_part = re.sub(r"^def eval_fn\(", "def code_eval_fn(", code, count=1, flags=re.M)
    judge_part = re.sub(r"\ndef eval_fn\(trace\):\n    return judge_eval_fn\(trace\)\n$", "", judge)
    return (
        f"{code_part.rstrip()}\n\n\n{HYBRID_MARKER}\n"
        f"{judge_part.rstrip()}\n\n\nTRUSTED = {sorted(set(trusted))!r}\n\n\n"
        "def eval_fn(trace):\n"
        "    passed, reason = code_eval_fn(trace)\n"
        "    if passed in TRUSTED:\n"
        '        return passed, "Decided by code: " + reason\n'
        "    return judge_eval_fn(trace)\n"
    )


def trusted_verdicts(
    pairs: Sequence[tuple[str, bool | None]], *, precision: float = 0.95, minimum: int = 3
) -> list[bool]:
    """Return the code verdicts the training labels support: right `precision` of the time."""
    trusted = []
    for verdict in (True, False):
        labels = [label for label, v in pairs if v is verdict and label in ("positive", "negative")]
        if len(labels) < minimum:
            continue
        right = sum(1 for label in labels if (label == "positive") is verdict)
        if right / len(labels) >= precision:
            trusted.append(verdict)
    return trusted
