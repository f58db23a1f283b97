"""Emit a learned rule as self-contained eval code: the decision first, helpers after."""

import ast
import functools
import inspect
import textwrap

from evals.synthesis import constraints, runtime, shapes
from evals.synthesis.learner import DecisionList, Literal, Rule, judged_good
from traces.vocabulary import unit_noun

# Runtime helpers the learner may call in a rule; the others are always kept.
_RULE_HELPERS = {
    "flag",
    "has_phrase",
    "starts_with",
    "refusal",
    "json_key",
    "tool_called",
    "at_least",
}


def _runtime_parts(helpers: set[str]) -> tuple[str, str]:
    """Return (imports, the rest) of the runtime's source, minus unused rule helpers.

    The runtime's own modules (constraints.py) are inlined after it, so the emitted code
    stays one standalone file; their standard-library imports are merged with its.
    """
    return _parts(frozenset(helpers) & _RULE_HELPERS)


# Reading and parsing the modules' source took 0.2 s per render, once per fold in
# cross-validation; it is the same for the life of the process.
@functools.cache
def _parts(helpers: frozenset[str]) -> tuple[str, str]:
    imports, rest = [], []
    for module in (shapes, runtime, constraints):
        source = inspect.getsource(module)
        for node in ast.parse(source).body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            if isinstance(node, ast.FunctionDef) and node.name in _RULE_HELPERS - helpers:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("evals."):
                continue
            segment = ast.get_source_segment(source, node)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if (segment, False) not in imports:
                    imports.append((segment, False))
                continue
            rest.append((segment, isinstance(node, ast.FunctionDef)))
    body = []
    previous_def = False
    for segment, is_def in rest:
        if body:
            body.append("\n\n\n" if is_def or previous_def else "\n")
        body.append(segment)
        previous_def = is_def
    return "\n".join(s for s, _ in imports), "".join(body)


def _comment(text: str) -> str:
    return " ".join(text.split())


def _docstring(text: str) -> str:
    """Return text that parses and reads as written inside a triple-quoted docstring.

    The rule's words quote what a traced application named (a JSON key, a tool) and the
    criteria what a user wrote: a backslash there began an escape (`C:\\Users` was a
    syntax error), three double quotes ended the docstring, a NUL cannot be in source.
    """
    text = text.replace("\\", "\\\\").replace('"""', "'''")
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def _wrap(text: str, indent: str = "    ") -> list[str]:
    lines = textwrap.wrap(_comment(text), width=88, initial_indent=indent, subsequent_indent=indent)
    return [_docstring(line) for line in lines]


_VAR_NAMES = {
    "refusal": "refusal_phrase",
    "has_phrase": "phrase",
    "starts_with": "opening",
    "json_key": "key",
    "tool_called": "tool",
}


# What the emitted module defines (helpers, imports). A local of one of these names in
# eval_fn shadows it there: `refusal = refusal(v, 'start')` raised UnboundLocalError.
_EMITTED_NAMES = frozenset(
    name for module in (shapes, runtime, constraints) for name in vars(module)
)


def _var_names(lits: tuple[Literal, ...]) -> list[str]:
    """Return a readable, distinct variable name per literal (what its helper finds)."""
    names: list[str] = []
    for lit in lits:
        helper, args = lit.feature.helper, lit.feature.args
        name = args[0] if helper in ("flag", "at_least") else _VAR_NAMES.get(helper, "hit")
        taken = name in names or name in _EMITTED_NAMES or name in ("v", "trace", "conversation")
        names.append(name if not taken and name.isidentifier() else f"{name}_2")
    return names


def _concat(parts: list[tuple[bool, str]]) -> str:
    """Return a string expression from (is_variable, text) parts, literals merged."""
    merged: list[tuple[bool, str]] = []
    for is_var, text in parts:
        if merged and not is_var and not merged[-1][0]:
            merged[-1] = (False, merged[-1][1] + text)
        elif is_var or text:
            merged.append((is_var, text))
    return " + ".join(text if is_var else repr(text) for is_var, text in merged) or "''"


def _reason_parts(lit: Literal, name: str, *, lower: bool = False) -> list[tuple[bool, str]]:
    prefix, suffix, uses_match = lit.reason_parts(lower=lower)
    if not uses_match:
        return [(False, prefix + suffix)]
    return [(False, prefix), (True, name), (False, suffix)]


def _test_expr(lit: Literal, name: str, *, holds: bool = True) -> str:
    """Return the test that the literal holds (or, with holds=False, that it does not)."""
    return name if lit.holds == holds else f"not {name}"


def _rule_body(rule: Rule, argument: str) -> list[str]:
    lits = rule.literals
    names = _var_names(lits)
    lines = [f"    v = view({argument})"]
    for lit, name in zip(lits, names, strict=True):
        lines.append(f"    {name} = {lit.feature.call_source()}")
    if rule.op == "or":
        for lit, name in zip(lits, names, strict=True):
            lines.append(f"    if {_test_expr(lit, name)}:")
            lines.append(f"        return False, {_concat(_reason_parts(lit, name))}")
        first, second = (lit.absent() for lit in lits)
        second = second[:1].lower() + second[1:] if second[1:2] == second[1:2].lower() else second
        lines.append(f"    return True, {judged_good(first + ', and ' + second)!r}")
        return lines
    tests = " and ".join(_test_expr(lit, name) for lit, name in zip(lits, names, strict=True))
    parts: list[tuple[bool, str]] = []
    for i, (lit, name) in enumerate(zip(lits, names, strict=True)):
        if i:
            parts.append((False, " and "))
        parts += _reason_parts(lit, name, lower=i > 0)
    lines.append(f"    if {tests}:")
    lines.append(f"        return False, {_concat(parts)}")
    for lit, name in zip(lits[:-1], names[:-1], strict=True):
        lines.append(f"    if {_test_expr(lit, name, holds=False)}:")
        lines.append(f"        return True, {judged_good(lit.absent())!r}")
    lines.append(f"    return True, {judged_good(lits[-1].absent())!r}")
    return lines


def render(decision: DecisionList, *, criteria: str, summary: str) -> str:
    """Return the Python source of eval_fn for a learned rule (or for no rule)."""
    helpers = {lit.feature.helper for rule in decision.rules for lit in rule.literals}
    imports, helpers_source = _runtime_parts(helpers)
    lines = ['"""Eval written by the iofold offline synthesiser.', ""]
    if criteria.strip():
        lines.append("Criteria: " + _docstring(_comment(criteria)))
    lines.append(_docstring(summary))
    lines.append('"""')
    lines.append("")
    if decision.rules:
        lines.append(imports)
        lines.append("")
    lines.append("")
    # The argument is named for what is judged: eval_fn(trace) or eval_fn(conversation).
    one, many = unit_noun(decision.unit), unit_noun(decision.unit, None)
    lines.append(f"def eval_fn({one}: dict) -> tuple[bool, str]:")
    if decision.rules:
        (rule,) = decision.rules
        statement = f"The {one} is bad when {_lower(rule.condition())}; otherwise it is good."
        doc = _wrap(statement)
        doc[0] = '    """' + doc[0].lstrip()
        lines.extend(doc)
        lines.append("")
        lines.extend(
            _wrap(
                f"On the training labels: {rule.agreeing} of the {rule.matched} {many} it "
                f"calls bad are labelled bad, {rule.rest_agreeing} of the {rule.rest} it "
                "calls good are labelled good."
            )
        )
        lines.append('    """')
        lines.extend(_rule_body(rule, one))
        lines.append("")
        lines.append("")
        lines.append(
            "# Helpers: the facts the rule reads, computed the same way as when it was learned."
        )
        lines.append("")
        lines.append("")
        lines.append(helpers_source)
    else:
        verdict = "good" if decision.default else "bad"
        lines.append(f'    """No reliable eval yet: every {one} is judged {verdict}.')
        lines.append("")
        lines.extend(
            _wrap(
                "No rule beat the majority verdict under cross-validation "
                f"({decision.default_agreeing} of {decision.default_matched} training "
                f"{many} have the majority label). Label more {many} of the minority "
                f"verdict, add a note saying what made bad {many} bad, or use an LLM judge."
            )
        )
        lines.append('    """')
        lines.append(f"    return {decision.default!r}, {decision.default_reason()!r}")
    return "\n".join(lines) + "\n"


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2] == text[1:2].lower() else text
