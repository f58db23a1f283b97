"""The judge channel: eval code reaches a model only through the runner, only with a
question, context and choices (or a prompt), and only as the trusted handler allows.

Attacks run with the jail alone (no validation, no restricted builtins), where eval code
can reach the harness's own sending function, so only the runner's checks stand.
"""

from dataclasses import replace

import pytest

from sandbox import run
from sandbox.calls import NO_CHANNEL, CallRefused
from sandbox.runner import WROTE_INTO_RESULTS, run_jail_only, too_many_calls

JUDGE = """from iofold_eval import judge, JudgeError

def eval_fn(trace):
    try:
        answer = judge("Is it polite?", context=trace["text"])
    except JudgeError as exc:
        return False, "refused: " + str(exc)
    return answer == "yes", answer
"""

# With the jail alone, the harness's `ask` is one closure away: send what it likes,
# bound to the current trace's nonce like an honest call.
RAW_CALL = """import iofold_eval

def eval_fn(trace):
    ask = [c.cell_contents for c in iofold_eval.judge.__closure__
           if getattr(c.cell_contents, "__name__", "") == "ask"][0]
    try:
        ask(FIELDS)
    except iofold_eval.JudgeError as exc:
        return False, "refused: " + str(exc)
    return True, "answered"
"""


class Recorder:
    def __init__(self, answer="yes"):
        self.requests = []
        self.answer = answer

    def __call__(self, request, index):
        self.requests.append((request, index))
        return self.answer


def test_calls_reach_the_handler_with_the_trace_they_came_from(fast_limits):
    handler = Recorder()
    results = run(JUDGE, [{"text": "a"}, {"text": "b"}], fast_limits, calls=handler)

    assert [r.passed for r in results] == [True, True]
    # Each call is bound to its trace's index, whichever jail made it first.
    assert sorted((r.context, i) for r, i in handler.requests) == [("a", 0), ("b", 1)]
    assert handler.requests[0][0].choices == ("yes", "no")


def test_without_a_channel_the_eval_is_told_why(fast_limits):
    [result] = run(JUDGE, [{"text": "a"}], fast_limits)

    assert result.reason == "refused: " + NO_CHANNEL


def test_a_refusal_reaches_the_eval_as_judge_error(fast_limits):
    def spent(request, index):
        raise CallRefused("the judge budget for this run is spent")

    [result] = run(JUDGE, [{"text": "a"}], fast_limits, calls=spent)

    assert result.reason == "refused: the judge budget for this run is spent"


def test_eval_code_cannot_name_a_model_or_host_through_judge(fast_limits):
    code = JUDGE.replace('context=trace["text"]', 'context="x", model="evil", base_url="http://x"')
    handler = Recorder()

    [result] = run(code, [{"text": "a"}], fast_limits, calls=handler)

    assert "TypeError" in result.error and "unexpected keyword argument" in result.error
    assert handler.requests == []


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        (
            '(("kind", "judge"), ("question", "q"), ("context", ""), ("choices", ["yes", "no"]),'
            ' ("base_url", "http://169.254.169.254/"))',
            "judge() takes only a question, a context and choices",
        ),
        ('(("kind", "llm"), ("prompt", "hi"), ("model", "gpt-evil"))', "llm() takes only a prompt"),
        ('(("kind", "http"), ("url", "http://127.0.0.1:5432/"))', "unknown call"),
        ('(("kind", "llm"), ("prompt", "x" * 200000))', "prompt is longer than"),
        (
            '(("kind", "judge"), ("question", "q"), ("context", ""), ("choices", ["yes"]))',
            "choices must be 2 to 10 strings",
        ),
        # The handler's provider and cache would fail to encode them ("internal error").
        ('(("kind", "llm"), ("prompt", "hi" + chr(0xD800)))', "prompt contains a NUL"),
        (
            '(("kind", "judge"), ("question", "q"), ("context", "\\x00"), ("choices", ["y", "n"]))',
            "context contains a NUL character or a lone surrogate",
        ),
    ],
)
def test_the_runner_refuses_any_other_request_before_the_handler(fast_limits, fields, refusal):
    handler = Recorder()

    [result] = run_jail_only(RAW_CALL.replace("FIELDS", fields), [{}], fast_limits, calls=handler)

    assert result.passed is False and refusal in result.reason
    assert handler.requests == []


def test_a_call_without_the_traces_nonce_stops_the_jail(fast_limits):
    code = """import os

def eval_fn(trace):
    os.write(3, b'{"c":{"kind":"llm","prompt":"hi"},"n":"0000000000000000"}\\n')
    return True, "sent"
"""
    handler = Recorder()

    results = run_jail_only(code, [{}, {}], fast_limits, calls=handler)

    assert results[0].error == WROTE_INTO_RESULTS
    assert handler.requests == []


# Keeps calling whatever the answer: the trace's clock stops while a call waits, so only
# a count of its calls ends it before the jail's wall-time limit.
FLOOD = """from iofold_eval import judge, JudgeError

def eval_fn(trace):
    while trace["flood"]:
        try:
            judge("Is it polite?", context=trace["text"])
        except JudgeError:
            pass
    return judge("Is it polite?", context=trace["text"]) == "yes", "asked once"
"""


def test_a_trace_that_keeps_calling_is_stopped_at_the_limit_per_trace(fast_limits):
    limits = replace(fast_limits, calls_per_trace=5, batch_timeout_s=10)
    asked = []

    def budget_spent_for_the_flood(request, index):
        asked.append(index)
        if index == 1:
            raise CallRefused("the judge budget for this run is spent")
        return "yes"

    traces = [
        {"flood": False, "text": "a"},
        {"flood": True, "text": "b"},
        {"flood": False, "text": "c"},
    ]
    results = run(FLOOD, traces, limits, calls=budget_spent_for_the_flood)

    assert results[1].error == too_many_calls(5)
    assert "more than 5 judge()/llm() calls on this trace" in results[1].error
    # The handler (a cache look-up, a budget) saw five of its calls; the others were judged.
    assert asked.count(1) == 5
    assert [(r.passed, r.error) for r in (results[0], results[2])] == [(True, None), (True, None)]
