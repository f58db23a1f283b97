"""The prompt a judge()/llm() call becomes, and how a judge's answer is read.

Standard library only, with no imports at all: the export of a judge or hybrid eval
copies this module's source into the standalone script, so both ask the same thing.
"""

JUDGE_SYSTEM = (
    "You judge one aspect of an AI application's behaviour from the material given. "
    "Answer on the first line with exactly one of the allowed answers and nothing else; "
    "on the second line give one short sentence of reasoning."
)
LLM_SYSTEM = "You help evaluate an AI application's behaviour. Answer concisely."


def render_call(kind, *, question="", context="", choices=(), prompt=""):
    """Return (system, user) for a judge() or llm() call."""
    if kind == "llm":
        return LLM_SYSTEM, prompt
    parts = [f"Question: {question}"]
    if context:
        parts.append(f"Material:\n{context}")
    parts.append("Allowed answers: " + ", ".join(choices))
    return JUDGE_SYSTEM, "\n\n".join(parts)


def pick_choice(text, choices):
    """Return the allowed answer on the judge's first line; ValueError if it gave none."""
    stripped = text.strip()
    first = stripped.splitlines()[0] if stripped else ""
    cleaned = first.strip().strip("*.:!\"'`").strip().lower()
    for choice in choices:
        if cleaned == choice.lower():
            return choice
    # "No, it refuses." is "no"; "Nothing is wrong, so yes" is not: the answer is a word.
    for choice in sorted(choices, key=len, reverse=True):
        rest = cleaned[len(choice) :]
        if cleaned.startswith(choice.lower()) and not (rest[:1].isalnum() or rest[:1] == "_"):
            return choice
    raise ValueError(f"the judge answered {first[:80]!r}, not one of {', '.join(choices)}")
