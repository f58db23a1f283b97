"""Large batches: parallel jails, results written in blocks, and pre-encoded traces."""

import datetime as dt
import json
import uuid

import pytest

from sandbox import Limits, drop_spare, run, run_json, runner
from sandbox.runner import MIN_TRACES_PER_JAIL, _chunks, run_jail_only

PARITY = "def eval_fn(trace):\n    return trace['n'] % 2 == 0, str(trace['n'])\n"


def test_a_large_batch_split_across_parallel_jails_keeps_order():
    count = 2 * MIN_TRACES_PER_JAIL + 7
    results = run(PARITY, [{"n": n} for n in range(count)], Limits(parallel_jails=2))
    assert [r.reason for r in results] == [str(n) for n in range(count)]
    assert [r.passed for r in results] == [n % 2 == 0 for n in range(count)]


def test_batches_are_split_by_chunk_size_and_by_the_parallel_limit():
    chunks, workers = _chunks(10_000, Limits(chunk_size=3000, parallel_jails=1))
    assert workers == 1 and [len(c) for c in chunks] == [2500] * 4
    chunks, _ = _chunks(10, Limits(parallel_jails=8))
    assert [list(c) for c in chunks] == [list(range(10))]


def test_a_crash_in_the_middle_of_a_block_is_blamed_on_the_right_trace():
    # Results are written in blocks; the crash loses the unwritten ones, so the runner
    # must find the culprit by running the rest again, not blame the first lost trace.
    code = """
import os

def eval_fn(trace):
    if trace["n"] == 37:
        os._exit(0)
    return True, str(trace["n"])
"""
    results = run_jail_only(code, [{"n": n} for n in range(60)])
    assert [r.reason for r in results[:37]] == [str(n) for n in range(37)]
    assert results[37].passed is None and "exit code 0" in results[37].error
    assert [r.reason for r in results[38:]] == [str(n) for n in range(38, 60)]


def test_slow_traces_are_reported_in_time_for_the_watchdog():
    # Each trace stays under its timeout, the batch takes longer than timeout + grace:
    # buffered results must still reach the runner before its watchdog gives up.
    code = "import time\n\ndef eval_fn(trace):\n    time.sleep(0.45)\n    return True, 'slept'\n"
    limits = Limits(trace_timeout_s=0.5, batch_timeout_s=30)
    results = run_jail_only(code, [{}] * 7, limits)
    assert [(r.passed, r.error) for r in results] == [(True, None)] * 7


def test_run_json_takes_traces_already_encoded():
    traces = [{"n": 4, "note": "caf\u00e9\nline"}, {"n": 5}]
    texts = [json.dumps(traces[0], indent=2), json.dumps(traces[1]).encode()]
    code = "def eval_fn(trace):\n    return trace['n'] % 2 == 0, trace.get('note', '-')\n"
    results = run_json(code, texts)
    assert [(r.passed, r.reason) for r in results] == [(True, "caf\u00e9\nline"), (False, "-")]


def test_run_json_reports_invalid_json_per_trace():
    results = run_json(PARITY, ['{"n": 2}', "{not json", b'{"n": 3} trailing', '{"n": 1}'])
    assert [r.passed for r in results] == [True, None, None, False]
    assert results[1].error.startswith("the trace is not valid JSON")
    assert results[2].error.startswith("the trace is not valid JSON")


def test_values_marshal_cannot_carry_reach_the_eval_as_json_text():
    # Dicts travel in marshal format; a trace holding a datetime or a UUID falls back to
    # JSON, where such values become their str(), as they would in a JSON column.
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    code = "def eval_fn(trace):\n    return isinstance(trace['at'], str), str(trace['at'])\n"
    results = run(code, [{"at": when}, {"at": "plain"}, {"at": uuid.UUID(int=7)}])
    assert [(r.passed, r.reason) for r in results] == [
        (True, str(when)),
        (True, "plain"),
        (True, str(uuid.UUID(int=7))),
    ]


def test_a_trace_that_cannot_be_encoded_raises():
    # Neither marshal (the datetime) nor JSON (the cycle) can carry it.
    circular = {"at": dt.datetime(2026, 1, 1)}
    circular["self"] = circular
    with pytest.raises(ValueError):
        run(PARITY, [{"n": 1}, circular])


def test_a_jail_started_ahead_judges_the_next_batch_and_ends_when_dropped():
    first = run_json(PARITY, ['{"n": 1}'], ahead=True)
    spare = runner._spare[1]
    assert spare.poll() is None  # waiting for its input, having run nothing

    second = run_json(PARITY, ['{"n": 2}', '{"n": 3}'])

    assert [(r.passed, r.reason) for r in first + second] == [
        (False, "1"),
        (True, "2"),
        (False, "3"),
    ]
    assert runner._spare is None and spare.poll() is not None  # taken, and done
    run_json(PARITY, ['{"n": 4}'], ahead=True)
    left = runner._spare[1]
    drop_spare()
    assert runner._spare is None and left.poll() is not None


def test_a_jail_started_ahead_is_not_used_with_other_limits_or_once_too_old(monkeypatch):
    run_json(PARITY, ['{"n": 1}'], ahead=True)
    spare = runner._spare[1]
    results = run_json(PARITY, ['{"n": 2}'], Limits(memory_mb=200))
    assert [r.reason for r in results] == ["2"] and spare.poll() is not None

    run_json(PARITY, ['{"n": 3}'], ahead=True)
    spare = runner._spare[1]
    monkeypatch.setattr(runner, "SPARE_MAX_AGE_S", 0.0)
    assert [r.reason for r in run_json(PARITY, ['{"n": 4}'])] == ["4"]
    assert spare.poll() is not None
