"""Emit a learned decision list as self-contained eval code."""

import ast
import inspect
import textwrap

from evals.synthesis import runtime
from evals.synthesis.learner import DecisionList

_ALWAYS = {"_text", "_words", "_json", "_number", "view"}


def _runtime_source(helpers: set[str]) -> str:
    """Return the runtime module's source, minus its docstring and unused helpers."""
    source = inspect.getsource(runtime)
    tree = ast.parse(source)
    keep = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.FunctionDef) and node.name not in _ALWAYS | helpers:
            continue
        keep.append(ast.get_source_segment(source, node))
    parts = []
    previous = ""
    for segment in keep:
        kind = "def" if segment.startswith("def ") else "import" if "import " in segment[:7] else ""
        if parts:
            if "def" in (kind, previous):
                parts.append("\n\n\n")
            elif kind != previous:
                parts.append("\n\n")
            else:
                parts.append("\n")
        parts.append(segment)
        previous = kind
    return "".join(parts)


def _comment(text: str) -> str:
    return " ".join(text.split())


def _comment_lines(text: str) -> list[str]:
    return textwrap.wrap(
        _comment(text), width=88, initial_indent="    # ", subsequent_indent="    #   "
    )


def render(decision: DecisionList, *, criteria: str, summary: str) -> str:
    """Return the Python source of eval_fn for a decision list."""
    helpers = {rule.feature.helper for rule in decision.rules}
    lines = ['"""Eval written by the iofold offline synthesiser.', ""]
    if criteria.strip():
        lines.append("Criteria: " + _comment(criteria).replace('"""', "'''"))
    lines.append(summary)
    lines.append('"""')
    lines.append("")
    lines.append(_runtime_source(helpers))
    lines.append("")
    lines.append("")
    lines.append("def eval_fn(trace: dict) -> tuple[bool, str]:")
    lines.append('    """Return (True, reason) when the trace is good, else (False, reason)."""')
    lines.append("    v = view(trace)")
    for number, rule in enumerate(decision.rules, start=1):
        lines.extend(_comment_lines(f"Rule {number}: {rule.describe()}."))
        prefix, suffix, uses_match = rule.feature.reason_parts(rule.holds)
        call = rule.feature.call_source()
        if rule.holds:
            lines.append(f"    hit = {call}")
            lines.append("    if hit:")
            if uses_match:
                expr = f"{prefix!r} + hit" + (f" + {suffix!r}" if suffix else "")
            else:
                expr = repr(prefix + suffix)
        else:
            lines.append(f"    if not {call}:")
            expr = repr(prefix + suffix)
        lines.append(f"        return {rule.verdict!r}, {expr}")
    verdict = "good" if decision.default else "bad"
    if decision.rules:
        lines.extend(
            _comment_lines(
                f"Otherwise: {verdict} ({decision.default_agreeing} of "
                f"{decision.default_matched} remaining training traces agree)."
            )
        )
    else:
        lines.extend(
            _comment_lines(
                "No rule beat the majority verdict under cross-validation, so every trace "
                f"is judged {verdict} ({decision.default_agreeing} of "
                f"{decision.default_matched} training traces agree)."
            )
        )
    lines.append(f"    return {decision.default!r}, {decision.default_reason()!r}")
    return "\n".join(lines) + "\n"
