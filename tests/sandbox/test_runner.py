"""Verdicts and per-trace errors from the real nsjail backend."""

import sandbox
from sandbox import Limits, run

LENGTH_EVAL = """
import json


def eval_fn(trace):
    text = json.dumps(trace["output"])
    print("checking", trace["id"])
    if len(text) > 10:
        return True, "long answer"
    return False, "answer too short"
"""


def trace(i, output):
    return {"id": f"t{i}", "input": "q", "output": output, "steps": [], "metadata": {}}


def test_verdicts_come_back_per_trace_in_order():
    traces = [trace(0, "a long enough answer"), trace(1, "no"), trace(2, "another long answer")]
    results = run(LENGTH_EVAL, traces)
    assert [r.passed for r in results] == [True, False, True]
    assert [r.reason for r in results] == ["long answer", "answer too short", "long answer"]
    assert all(r.error is None and r.warning is None for r in results)
    assert results[1].output == "checking t1\n"
    assert all(r.duration_ms >= 0 for r in results)


def test_large_batches_are_split_into_chunks_without_losing_order():
    traces = [trace(i, "x" * (i % 20)) for i in range(25)]
    results = run(LENGTH_EVAL, traces, Limits(chunk_size=7))
    assert len(results) == 25
    assert [r.passed for r in results] == [len('"' + "x" * (i % 20) + '"') > 10 for i in range(25)]
    assert [r.output for r in results] == [f"checking t{i}\n" for i in range(25)]


def test_empty_trace_list_returns_no_results():
    assert run(LENGTH_EVAL, []) == []


def test_return_values_that_are_not_bool_and_str_are_errors():
    code = """
def eval_fn(trace):
    kind = trace["kind"]
    if kind == "none":
        return None
    if kind == "int":
        return 1, "ok"
    if kind == "three":
        return True, "a", "b"
    if kind == "reason":
        return True, 42
    if kind == "list":
        return [True, "ok"]
    return True, "fine"
"""
    kinds = ["none", "int", "three", "reason", "list", "ok"]
    results = run(code, [{"kind": k} for k in kinds])
    for result in results[:-1]:
        assert result.passed is None
        assert "eval_fn must return" in result.error
    assert "NoneType" in results[0].error
    assert "int, not bool" in results[1].error
    assert "int, not str" in results[3].error
    assert results[-1].passed is True and results[-1].error is None


def test_exceptions_name_the_line_in_the_eval_code():
    code = """def eval_fn(trace):
    steps = trace["steps"]
    first = steps[0]
    return True, first["name"]
"""
    results = run(code, [{"steps": []}, {"steps": [{"name": "search"}]}, {}])
    assert results[0].passed is None
    assert results[0].error.startswith("IndexError: list index out of range (line 3")
    assert "first = steps[0]" in results[0].error
    assert (results[1].passed, results[1].reason) == (True, "search")
    assert results[2].error.startswith("KeyError: 'steps' (line 2")


def test_error_in_module_level_code_is_reported_on_every_trace():
    code = "import json\nLIMIT = 1 / 0\n\ndef eval_fn(trace):\n    return True, ''\n"
    results = run(code, [{}, {}])
    assert all("ZeroDivisionError" in r.error and "line 2" in r.error for r in results)


def test_invalid_code_is_not_run_and_every_trace_says_why():
    results = run("import os\ndef eval_fn(trace):\n    return True, ''\n", [{}, {}])
    assert [r.passed for r in results] == [None, None]
    assert all("rejected before running" in r.error and "'os'" in r.error for r in results)


def test_printed_output_is_capped_per_trace():
    code = "def eval_fn(trace):\n    print('y' * 50000)\n    return True, 'printed'\n"
    results = run(code, [{}], Limits(output_chars=100))
    assert results[0].passed is True
    assert results[0].output.startswith("y" * 100)
    assert "output truncated: 50001 characters printed" in results[0].output
    assert len(results[0].output) < 200


def test_slow_trace_times_out_and_the_next_trace_still_runs(fast_limits):
    code = """
import time

def eval_fn(trace):
    if trace["slow"]:
        while True:
            pass
    return True, "quick"
"""
    # `time` is not on the allow-list; this eval needs no import.
    code = code.replace("import time\n", "")
    results = run(code, [{"slow": True}, {"slow": False}], fast_limits)
    assert results[0].passed is None
    assert results[0].error == "timed out after 1 s"
    assert (results[1].passed, results[1].reason) == (True, "quick")


def test_configured_limits_are_used_when_none_are_passed():
    sandbox.configure(limits=Limits(trace_timeout_s=0.5))
    code = "def eval_fn(trace):\n    while True:\n        pass\n"
    results = run(code, [{}])
    assert results[0].error == "timed out after 0.5 s"


# What legitimate evals use: every allowed module, classes with dunder methods and
# super(), typing.NamedTuple and collections.namedtuple (compiled from a string inside
# the stdlib), lru_cache, annotations, a literal .format(), getattr with a literal name.
EVERYDAY_EVAL = """
import json
import re
import statistics
from collections import Counter, defaultdict, namedtuple
from datetime import datetime
from functools import lru_cache, reduce
from typing import NamedTuple, Optional
import string
import difflib
import unicodedata
import itertools
import math


class Finding(NamedTuple):
    ok: bool
    why: str


Pair = namedtuple("Pair", "a b", defaults=(0,))


class Checker:
    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __repr__(self) -> str:
        return f"Checker({self.limit})"

    def check(self, text: Optional[str]) -> Finding:
        words = Counter(re.findall(r"\\w+", text or ""))
        return Finding(sum(words.values()) >= self.limit, f"{sum(words.values())} words")


class Strict(Checker):
    def __init__(self):
        self.limit = 3
        super().check("")


@lru_cache(maxsize=None)
def norm(s: str) -> str:
    return unicodedata.normalize("NFKC", s).lower()


def eval_fn(trace: dict) -> tuple[bool, str]:
    out = trace.get("output")
    if not isinstance(out, str):
        out = json.dumps(out)
    ts = datetime.fromisoformat(trace.get("timestamp", "2026-01-01T00:00:00"))
    mean = statistics.mean([len(s.get("name", "")) for s in trace.get("steps", [])] or [0])
    ratio = difflib.SequenceMatcher(None, norm(out), "hello").ratio()
    groups = defaultdict(list)
    for k, g in itertools.groupby(sorted(out.split())):
        groups[len(k)].append(k)
    total = reduce(lambda a, b: a + b, [1, 2, 3])
    finding = Strict().check(out)
    msg = "{} at {}: {:.2f} {}".format(finding.why, ts.year, ratio, string.ascii_letters[:3])
    getattr(out, "upper")
    hasattr(trace, "get")
    return finding.ok and math.isfinite(mean) and total == 6, msg + repr(Pair(1)) + repr(Strict())
"""


def test_everyday_eval_code_runs_under_the_restricted_builtins():
    traces = [{"output": "hello there big world", "steps": [{"name": "ab"}]}, {"output": {"a": 1}}]
    expected = [
        (True, "4 words at 2026: 0.38 abcPair(a=1, b=0)Checker(3)", None),
        (False, "2 words at 2026: 0.00 abcPair(a=1, b=0)Checker(3)", None),
    ]
    assert sandbox.validate(EVERYDAY_EVAL) == []
    for results in (run(EVERYDAY_EVAL, traces), run(EVERYDAY_EVAL, traces, validate_code=False)):
        assert [(r.passed, r.reason, r.error) for r in results] == expected
