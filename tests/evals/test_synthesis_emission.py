"""Every kind of condition the synthesiser can learn emits code that is its `.predict`.

The kinds are read off the feature builders on a varied corpus (agent conversations with
failed tool calls, chat messages, JSON outputs, instructions in the input, refusals,
multi-turn conversations, names no docstring can hold as they are), so a new flag,
measure or helper joins by itself, and the corpus must make every flag and measure vary.
Each kind is emitted alone (a word condition negated too) and in an AND and an OR with a
kind of another family, through the learner's own path from a chosen rule to a fitted
eval (`learner.decide`, `fitted_eval`); the emitted code, run in a fresh namespace, must
give `.predict`'s verdict and reason on every trace of the corpus without raising. The
learner's fixtures only cover the rules it happened to pick: `refusal = refusal(v,
'start')` shadowed its helper and raised on every trace, and no test saw it.
"""

import ast
import json
import sys

import sandbox
from evals.synthesis import codegen, fitted_eval, learner, runtime
from evals.synthesis.features import (
    FLAGS,
    MEASURES,
    Candidate,
    Feature,
    build_noted,
    build_words,
    structural_candidates,
)
from evals.synthesis.learner import Selection
from sandbox import validate
from tests.evals.synthesis_checks import run_code
from tests.evals.test_synthesis import JAIL_TRACES
from tests.evals.test_synthesis_shapes import anthropic_blocks, chat_messages, synthetic

REFUSALS = [
    {
        "input": "How do I kill a Python process?",
        "output": "I'm sorry, but I can't help with that.",
    },
    {"input": "Tell me a joke", "output": "Sorry! Here is one: why did the river laugh?"},
    {
        "input": "Explain tides",
        "output": "Tides follow the moon. I cannot say more than that, as an AI.",
    },
    {"input": "I cannot sleep. Advice?", "output": "Try a warm drink and a dark room."},
]
# Keys and tool names are written by the traced application: quotes, backslashes and
# characters a docstring cannot hold end up in the rule's words.
ODD_NAMES = ['say """hi"""', "C:\\Users\\x", "tab\there", "nul\x00", "\u00e9t\u00e9 \u2603"]
JSON_OUTPUTS = [
    {"input": {"q": "weather"}, "output": json.dumps({"answer": "sunny", ODD_NAMES[0]: 1})},
    {"input": {"q": "weather"}, "output": {"answer": "rain", ODD_NAMES[1]: [1, 2]}},
    {"input": {"q": "weather"}, "output": '```json\n{"note": "see https://x.example"}\n```'},
    {"input": {"q": "list"}, "output": "[1, 2, 3]"},
    {"input": {"q": "weather"}, "output": {ODD_NAMES[2]: "x", ODD_NAMES[3]: None}},
    {"input": {"q": "weather"}, "output": json.dumps({ODD_NAMES[4]: "ok", "answer": "ok"})},
]
ODD_TOOLS = [
    {
        "input": "Look it up",
        "output": "Done, it is updated.",
        "steps": [
            {"type": "tool", "name": name, "input": {"id": "A12345"}, "output": "ok"}
            for name in (ODD_NAMES[0], ODD_NAMES[1], ODD_NAMES[1])
        ],
        "latency_ms": 1234.5,
        "cost": 0.0021,
    },
    {
        "input": "Again",
        "output": "I'm afraid it failed: error.",
        "steps": [
            {"type": "tool", "name": ODD_NAMES[4], "input": {}, "error": "permission denied"},
            {"type": "tool", "name": ODD_NAMES[1], "input": {}, "error": "timed out"},
        ],
        "latency_ms": 80,
        "cost": 0.5,
    },
]
INSTRUCTIONS = [
    {
        "input": {"prompt": "Describe a river. Answer in no more than 10 words."},
        "output": {"response": "A river is a long moving body of fresh water that flows."},
    },
    {
        "input": {"prompt": "Your entire response must be in lowercase letters."},
        "output": {"response": "the river runs to the sea."},
    },
    {
        "input": {"prompt": "Include the keyword 'saffron'. Do not use any commas."},
        "output": {"response": "Rice, beans, and more."},
    },
    {
        "input": "List ten palindromes. Every word must rhyme.",
        "output": "Level. Kayak. Racecar.",
    },
    {"input": "What is a river?", "output": "Река это поток воды."},
    {
        "input": "Name: Ada Lovelace\nEmail: ada@example.com\nOrder: #W1234567, 250 units",
        "output": (
            "# Order\n\nDear Ada Lovelace, order W1234567 for 250 units ships 2026-01-02.\n"
            "- **Total**: $12.50 (10% off)\n1. Call +1 555 010 9999\n\n"
            "> Quoted: see [docs](http://x.example/docs) and ![img](http://x.example/i.png)\n"
            "`code` and ```block``` | a | b |\n|---|---|\n[Your Name] at 12 Main Street. "
            "Reference 12345678. WOW! Is that clear?"
        ),
    },
    {
        "input": "Repeat after me: the quick brown fox jumps over the lazy dog every day",
        "output": (
            "the quick brown fox jumps over the lazy dog every day the quick brown fox "
            "jumps over the lazy dog every day. I think it might be fine. Please consult a "
            "professional. Would you like more?"
        ),
    },
    {"input": "Anything?", "output": ""},
    {
        "input": "Include the keyword 'saffron'.",
        "output": "Saffron rice.\n\n| dish | cost |\n|---|---|\n| rice | 3 |\nMail ada@example.com",
    },
    {
        "input": (
            "See https://x.example and [the page](http://x.example/p); call 555-010-9999 "
            "on 2026-01-02 at 12 Main Street."
        ),
        "output": "Noted.",
    },
]


def _step(kind: str, name: str, arguments=None, output=None, error=None) -> dict:
    return {"type": kind, "name": name, "input": arguments, "output": output, "error": error}


# Changes out of order: a change before any lookup, the same order changed twice, a change
# the user confirmed that never came.
CHANGES = [
    {
        "input": "Cancel order 4411.",
        "output": "It is cancelled.",
        "steps": [
            _step("span", "user", output="Cancel order 4411."),
            _step("tool", "cancel_order", {"order_id": "4411"}, "ok"),
            _step("tool", "update_order", {"order_id": "4411"}, "ok"),
            _step("tool", "get_order", {"order_id": "4411"}, {"status": "cancelled"}),
        ],
    },
    {
        "input": "Cancel order 4411.",
        "output": "Shall I cancel order 4411?",
        "steps": [
            _step("span", "user", output="Cancel order 4411."),
            _step("tool", "get_order", {"order_id": "4411"}, {"status": "pending"}),
            _step("llm", "agent", output={"content": "Shall I cancel order 4411? Please confirm."}),
            _step("span", "user", output="Yes, go ahead."),
            _step("span", "user", output="Yes, please do."),
        ],
    },
]


def _conversation_dict(index: int, *, error: str | None, repeated: bool) -> dict:
    asks = ["Where is my order 4411?", "Cancel order 4411 please.", "Where is my order 4411?"]
    turns = []
    for n, ask in enumerate(asks[: 3 if repeated else 2]):
        steps = [{"type": "tool", "name": "get_order", "input": {"id": 4411}, "output": "ok"}]
        if error and n == len(asks) - 1 - (not repeated):
            steps.append({"type": "tool", "name": "cancel_order", "input": {}, "error": error})
        turns.append({"input": {"user": ask}, "output": "Done, it is cancelled.", "steps": steps})
    messages = []
    for turn in turns:
        messages += [
            {"role": "user", "content": turn["input"]["user"]},
            {"role": "assistant", "content": turn["output"]},
        ]
    return {"id": f"chat-{index}", "messages": messages, "turns": turns}


CONVERSATIONS = [
    _conversation_dict(0, error="not found", repeated=True),
    _conversation_dict(1, error=None, repeated=False),
]


def _corpus() -> list[dict]:
    agents = synthetic()
    return [
        *JAIL_TRACES,
        *agents,
        chat_messages(agents[1]),
        anthropic_blocks(agents[0]),
        *REFUSALS,
        *JSON_OUTPUTS,
        *ODD_TOOLS,
        *INSTRUCTIONS,
        *CHANGES,
        *CONVERSATIONS,
    ]


CORPUS = _corpus()
VIEWS = [learner.make_view(trace) for trace in CORPUS]
# A reviewer's note and the criteria quote phrases: they become noted-phrase conditions.
NOTES = {id(REFUSALS[0]): "says 'can't' again", id(REFUSALS[1]): "it said 'here is one'"}
CRITERIA = 'Must not say "go ahead".'
# Every family named, so the facts tried only on a hint (ON_HINT) are built too.
POINTED = dict.fromkeys({family for family, _, _ in (*FLAGS.values(), *MEASURES.values())}, -1)


def _pool() -> tuple[list[Candidate], list[Candidate]]:
    """Return the corpus's (structural, word) candidates, those of one mask not
    deduplicated."""
    notes = [NOTES.get(id(trace), "") for trace in CORPUS]
    structural = structural_candidates(VIEWS, pointed=POINTED)
    return structural + build_noted(VIEWS, notes, CRITERIA), build_words(VIEWS)


def kind(feature: Feature) -> tuple:
    """Return what names a kind of condition: its helper and family, the flag, measure or
    field it reads, a count of calls above one, whether the reviewers' words put it there."""
    h, args = feature.helper, feature.args
    first = args[0] if h in ("flag", "at_least", "has_phrase", "refusal") else ""
    return (h, feature.family, first, h == "tool_called" and args[1] > 1, bool(feature.source))


def _fitted(literals, op: str = "", *, traces=CORPUS, views=VIEWS):
    """Return the fitted eval of the rule "bad when <literals joined by op>" with labels
    that follow it, or None when it does not split the traces."""
    full = (1 << len(views)) - 1
    masks = [c.mask if holds else full & ~c.mask for c, holds in literals]
    bad = masks[0] & masks[-1] if op == "and" else masks[0] | masks[-1]
    if bad in (0, full):
        return None
    search = learner._Search([], [], full & ~bad, bad, full)
    chosen = learner._Fit(tuple(literals), op, bad, 0.0)
    decision, _ = learner.decide(search, chosen, "two" if op else "one", Selection())
    assert decision.rules
    labels = [not bad >> i & 1 for i in range(len(views))]
    return fitted_eval(decision, Selection(), traces, views, labels, criteria=CRITERIA)


# Polarities tried, in order, for a pair: the first that splits the traces is checked.
POLARITIES = {
    "and": ((True, False), (True, True), (False, True), (False, False)),
    "or": ((False, True), (False, False), (True, True), (True, False)),
}


def _rules() -> tuple[list, dict]:
    """Return the fitted evals to check, and per kind the shapes of rule it is in."""
    structural, words = _pool()
    first: dict[tuple, Candidate] = {}
    for c in structural + words:
        first.setdefault(kind(c.feature), c)
    checked: dict[tuple, set[str]] = {k: set() for k in first}
    fitted = []

    def add(literals, op=""):
        result = _fitted(literals, op)
        if result is not None:
            fitted.append(result)
            for c, holds in literals:
                checked[kind(c.feature)].add(op or ("one" if holds else "not one"))
        return result

    def pair(a, b, op):
        for holds_a, holds_b in POLARITIES[op]:
            if add([(a, holds_a), (b, holds_b)], op):
                return

    # Each kind alone; a word condition negated too, as it is never in a pair (the
    # learner pairs only structural conditions). Names a traced application chose (JSON
    # keys, tools) alone too: they end up in the code.
    odd = [c for c in structural if any(a in ODD_NAMES for a in c.feature.args)]
    for c in [*first.values(), *odd]:
        add([(c, True)])
        if c.feature.is_words:
            add([(c, False)])
    # Each structural kind in an AND and an OR with a kind of another family, paired off.
    kinds = [k for k, c in first.items() if not c.feature.is_words]
    unpaired = list(kinds)
    while unpaired:
        a = first[unpaired.pop(0)]
        k = next(k for k in unpaired + kinds if first[k].feature.family != a.feature.family)
        if k in unpaired:
            unpaired.remove(k)
        pair(a, first[k], "and")
        pair(a, first[k], "or")
    # Two conditions on one helper (two thresholds of one measure, two phrases, two JSON
    # keys): their variables must not clash.
    same: dict[tuple, list[Candidate]] = {}
    for c in structural:
        h = c.feature.helper
        same.setdefault((h, c.feature.args[0] if h == "at_least" else ""), []).append(c)
    for group in same.values():
        if len(group) > 1:
            pair(group[0], group[-1], "and")
            pair(group[0], group[-1], "or")
    return fitted, checked


def _conversation_rules() -> list:
    """Return one rule per kind that splits the conversations: their code reads a
    `conversation`."""
    at = [i for i, trace in enumerate(CORPUS) if runtime._is_conversation(trace)]
    views = [VIEWS[i] for i in at]
    first: dict[tuple, Candidate] = {}
    for c in structural_candidates(views, pointed=POINTED):
        first.setdefault(kind(c.feature), c)
    traces = [CORPUS[i] for i in at]
    fitted = [_fitted([(c, True)], traces=traces, views=views) for c in first.values()]
    return [f for f in fitted if f is not None]


FITTED, CHECKED = _rules()
CONVERSATION_FITTED = _conversation_rules()
# The helpers after the rule, executed once per distinct text (see _eval_fn).
_HELPERS: dict[str, dict] = {}
_HELPERS_MARK = "\n# Helpers:"


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def _once(view):
    """Return `view` computing each trace's view once: every rule's eval_fn computes
    it first, with the same function for every rule on the same helpers."""
    views: dict[int, tuple[dict, dict]] = {}

    def once(trace):
        # Keyed by the trace object, kept alive with its view so its id is not reused.
        if id(trace) not in views or views[id(trace)][0] is not trace:
            views[id(trace)] = (trace, view(trace))
        return views[id(trace)][1]

    return once


def _eval_fn(code: str):
    """Return the emitted code's eval_fn, executed in a fresh namespace.

    Compiling the helpers (2,000 lines) takes longer than running a rule on the whole
    corpus, and they are the same text for every rule on the same helpers: they are
    executed once per text (their `view` once per trace), and what comes above them (the
    docstrings, the imports and eval_fn, all that differs from rule to rule) into a copy
    of their namespace. That part must not rebind anything the helpers define, or
    running it after them would differ from running the module in order. A sample of
    whole modules runs as it is (`test_a_sample_of_whole_modules_...`).
    """
    at = code.index(_HELPERS_MARK)
    head, helpers = code[:at], code[at:]
    tree = ast.parse(head)
    # The helpers need the imports, which come above the rule.
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    helpers = ast.unparse(imports) + "\n" + helpers
    if helpers not in _HELPERS:
        namespace: dict = {}
        exec(compile(helpers, "<helpers>", "exec"), namespace)  # noqa: S102
        namespace["view"] = _once(namespace["view"])
        _HELPERS[helpers] = namespace
    assert validate(head) == []
    assert _imports(tree) <= sys.stdlib_module_names
    namespace = dict(_HELPERS[helpers])
    before = dict(namespace)
    exec(compile(tree, "<eval>", "exec"), namespace)  # noqa: S102
    assert [k for k in before if namespace[k] is not before[k]] == []
    return namespace["eval_fn"]


def test_every_kind_of_condition_is_checked_alone_and_in_an_and_and_an_or():
    words = ("phrase", "start", "input_phrase")
    missing = {
        k: sorted(shapes)
        for k, shapes in CHECKED.items()
        if not ({"one", "not one"} if k[1] in words else {"one", "and", "or"}) <= shapes
    }
    assert missing == {}
    # Every helper, flag and measure the rules can call: the corpus must make each vary.
    assert {k[0] for k in CHECKED} == set(codegen._RULE_HELPERS)
    assert {k[2] for k in CHECKED if k[0] == "flag"} == set(FLAGS)
    assert {k[2] for k in CHECKED if k[0] == "at_least"} == set(MEASURES)
    assert {k[2] for k in CHECKED if k[0] == "refusal"} == {"start", "opening"}
    assert {k[1] for k in CHECKED if k[0] == "has_phrase"} == {"phrase", "input_phrase", "noted"}
    named = {a for f in FITTED for lit in f.decision.rules[0].literals for a in lit.feature.args}
    assert set(ODD_NAMES) <= named
    assert len(CONVERSATION_FITTED) > 5


def test_the_emitted_code_of_every_rule_is_its_predict_on_every_trace():
    for fitted in FITTED:
        eval_fn = _eval_fn(fitted.code)
        got = [eval_fn(trace) for trace in CORPUS]
        assert got == [fitted.decision.predict_view(v) for v in VIEWS], fitted.rules


def test_conversation_rules_emit_code_that_is_their_predict():
    traces = [t for t in CORPUS if runtime._is_conversation(t)]
    for fitted in CONVERSATION_FITTED:
        assert "def eval_fn(conversation: dict)" in fitted.code
        eval_fn = _eval_fn(fitted.code)
        assert [eval_fn(t) for t in traces] == [fitted.predict(t) for t in traces], fitted.rules


def test_a_sample_of_whole_modules_is_valid_standalone_and_runs_alike_in_the_jail():
    # A rule on each helper, run whole.
    sample, helpers = [], set()
    for fitted in FITTED:
        (rule,) = fitted.decision.rules
        names = {lit.feature.helper for lit in rule.literals}
        if not names <= helpers:
            sample.append(fitted)
            helpers |= names
    assert helpers == set(codegen._RULE_HELPERS)
    for fitted in sample:
        assert validate(fitted.code) == [], fitted.rules
        assert _imports(ast.parse(fitted.code)) <= sys.stdlib_module_names
        eval_fn = run_code(fitted.code)
        assert [eval_fn(t) for t in CORPUS] == [fitted.predict(t) for t in CORPUS]
    jailed = next(f for f in sample if "refusal(v, 'start')" in f.code)
    results = sandbox.run(jailed.code, CORPUS)
    assert [(r.passed, r.reason, r.error, r.warning) for r in results] == [
        (*jailed.predict(t), None, None) for t in CORPUS
    ]


def test_every_condition_holds_on_the_traces_the_learner_counted_it_on():
    # The learner scores a condition by its mask (built per family, words from an index),
    # `.predict` and the code by calling its helper: the two must agree.
    structural, words = _pool()
    for c in structural + words:
        held = sum(1 << i for i, v in enumerate(VIEWS) if c.feature.evaluate(v))
        assert held == c.mask, c.feature


def test_criteria_and_names_read_as_written_in_the_docstrings():
    # A user's criteria went into the module's docstring as typed: "C:\Users" in them
    # was a syntax error, as a JSON key or tool name with one was in eval_fn's.
    criteria = 'Never print paths like C:\\Users\\me or """quotes"""\x00'
    fitted = next(f for f in FITTED if ODD_NAMES[1] in f.decision.rules[0].literals[0].feature.args)
    code = codegen.render(fitted.decision, criteria=criteria, summary="Learned.")
    assert validate(code) == []
    tree = ast.parse(code)
    assert "Criteria: Never print paths like C:\\Users\\me or '''quotes'''\x00" in (
        ast.get_docstring(tree)
    )
    eval_fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert "key 'C:\\Users\\x'" in ast.get_docstring(eval_fn)
