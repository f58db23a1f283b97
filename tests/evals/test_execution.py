"""Queued and immediate eval runs in the real sandbox (nsjail)."""

import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import sandbox
from evals.exceptions import EvalError
from evals.execution import runs as execution
from evals.execution.runs import (
    execute_run,
    reap_stale_runs,
    record_completed_run,
    record_results,
    run_eval_now,
    start_run,
    trace_json,
)
from evals.judging.session import Usage
from evals.models import Eval, EvalExecution, EvalRun
from iofold.reaper import reap_stale_runs_task
from tests.conftest import dead_owner, wait_for
from tests.evals.builders import ALWAYS_PASS_CODE, BAD, GOOD, labelled_set, make_eval
from tests.traces.factories import TraceFactory, trace_data

pytestmark = pytest.mark.django_db

CRASHES_ON_BAD = """def eval_fn(trace):
    if "cannot" in str(trace.get("output")):
        raise ValueError("boom")
    return True, "fine"
"""


def test_queued_run_records_one_verdict_per_trace(workspace, django_capture_on_commit_callbacks):
    eval_set, traces = labelled_set(workspace, good=3, bad=2)
    eval = make_eval(eval_set, version=1)
    with django_capture_on_commit_callbacks() as callbacks:
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual", enqueue=True)
    assert len(callbacks) == 1  # run_eval_task is enqueued only after commit
    assert run.status == "queued" and run.total == 5

    run = execute_run(run_id=run.pk)

    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 5, 3, 2, 0)
    verdicts = {e.trace.data["output"]: (e.passed, e.reason) for e in run.executions.all()}
    assert verdicts == {
        GOOD: (True, "The assistant answered"),
        BAD: (False, "The assistant refused"),
    }


def test_errors_are_counted_apart_and_never_pass(workspace):
    eval_set, traces = labelled_set(workspace, good=1, bad=1)
    eval = make_eval(eval_set, version=1, code=CRASHES_ON_BAD)

    executions = run_eval_now(eval=eval, traces=traces)

    by_output = {e.trace.data["output"]: e for e in executions}
    assert by_output[GOOD].passed is True
    assert by_output[BAD].passed is None
    assert "ValueError: boom" in by_output[BAD].error
    run = EvalRun.objects.get(eval=eval)
    assert (run.passed, run.errors) == (1, 1)


def test_running_again_replaces_the_verdict_and_claims_once(workspace):
    eval_set, traces = labelled_set(workspace, good=1, bad=1)
    eval = make_eval(eval_set, version=1)
    run_eval_now(eval=eval, traces=traces)
    run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual", enqueue=False)

    execute_run(run_id=run.pk)
    execute_run(run_id=run.pk)  # a redelivered task finds the run finished

    assert EvalExecution.objects.filter(eval=eval).count() == 2
    assert set(EvalExecution.objects.filter(eval=eval).values_list("run_id", flat=True)) == {run.pk}


def test_ids_of_other_workspaces_are_dropped(workspace, other_workspace):
    eval_set, traces = labelled_set(workspace, good=1, bad=0)
    foreign = TraceFactory(workspace=other_workspace)
    eval = make_eval(eval_set, version=1, code=ALWAYS_PASS_CODE)

    run = start_run(eval=eval, trace_ids=[traces[0].pk, foreign.pk], trigger="api", enqueue=False)
    run = execute_run(run_id=run.pk)

    assert run.trace_ids == [traces[0].pk] and run.done == 1
    assert not EvalExecution.objects.filter(trace=foreign).exists()


def test_stale_running_run_is_reaped(workspace):
    eval_set, traces = labelled_set(workspace, good=1, bad=0)
    eval = make_eval(eval_set, version=1)
    run = start_run(eval=eval, trace_ids=[traces[0].pk], trigger="manual", enqueue=False)
    EvalRun.objects.filter(pk=run.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    assert reap_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == "failed" and "stopped responding" in run.error


def test_the_sweep_hands_runs_of_a_dead_worker_to_their_own_task(
    workspace, monkeypatch, django_capture_on_commit_callbacks
):
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    eval = make_eval(eval_set, version=1)
    ids = [t.pk for t in traces]
    manual = start_run(eval=eval, trace_ids=ids, trigger="manual", enqueue=False)
    automatic = start_run(eval=eval, trace_ids=ids, trigger="automatic", enqueue=False)
    EvalRun.objects.filter(pk__in=[manual.pk, automatic.pk]).update(
        status="running", owner=dead_owner(), heartbeat_at=timezone.now()
    )
    sent = []
    monkeypatch.setattr("evals.tasks.run_eval_task.delay", lambda pk: sent.append(("run", pk)))
    # Sent behind what people wait for (evals.queue.BACKGROUND): no one watches it.
    monkeypatch.setattr(
        "evals.tasks.run_automatic_eval_task.apply_async",
        lambda args, priority: sent.append(("automatic", *args, priority)),
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert reap_stale_runs_task() == 2

    assert sorted(sent) == [("automatic", automatic.pk, 9), ("run", manual.pk)]
    assert set(EvalRun.objects.values_list("status", "takeovers")) == {("queued", 1)}


@pytest.mark.django_db(transaction=True)
def test_a_run_taken_over_by_another_worker_stops_after_its_chunk(workspace, monkeypatch, settings):
    """The heartbeat thread notices the row is no longer its own; the chunk loop stops."""
    settings.IOFOLD_RUN_HEARTBEAT_SECONDS = 0.05
    monkeypatch.setattr(execution, "EXECUTE_CHUNK", 1)
    eval_set, traces = labelled_set(workspace, good=3, bad=0)
    # Not enqueued: committed at once here, a worker left running by an earlier worker test
    # would take the run before this test runs it (CI: "eval run not claimed").
    run = start_run(
        eval=make_eval(eval_set, version=1),
        trace_ids=[t.pk for t in traces],
        trigger="api",
        enqueue=False,
    )
    run_json = sandbox.run_json
    chunks = []

    def taken_over_after_the_first_chunk(code, texts, limits, **kwargs):
        if chunks:
            # The first batch is written while this one is in the sandbox: the takeover
            # comes after that write, or the write would see it and stop there instead.
            wait_for(
                lambda: EvalRun.objects.get(pk=run.pk).done == 1,
                timeout=10,
                message="the first batch was not written",
            )
            EvalRun.objects.filter(pk=run.pk).update(owner="another-worker")
            (heartbeat,) = [
                t for t in threading.enumerate() if t.name == f"heartbeat-EvalRun-{run.pk}"
            ]
            wait_for(lambda: heartbeat.lost, timeout=10, message="the heartbeat did not notice")
        chunks.append(texts)
        return run_json(code, texts, limits, **kwargs)

    monkeypatch.setattr(sandbox, "run_json", taken_over_after_the_first_chunk)
    result = execute_run(run_id=run.pk)

    assert len(chunks) == 2  # the chunk in hand is recorded, the third is left
    assert (result.status, result.owner, result.done) == ("running", "another-worker", 2)


def test_too_many_traces_for_an_immediate_run(workspace, monkeypatch):
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    monkeypatch.setattr(execution, "MAX_NOW_TRACES", 1)
    with pytest.raises(EvalError, match="too many"):
        run_eval_now(eval=make_eval(eval_set, version=1), traces=traces)


# Awkward but valid data: non-ASCII, an escaped line break, quotes, big and float numbers.
AWKWARD = {
    "output": 'Grüße, 東京\nline two "quoted" \u2028 end',
    "score": 0.1,
    "big": 12345678901234567890,
    "nested": {"empty": [], "none": None, "flag": False},
}
# Passes only when the eval sees exactly the stored data.
ECHO_CODE = f"""def eval_fn(trace):
    expected = {AWKWARD!r}
    got = {{k: trace.get(k) for k in expected}}
    return got == expected, repr(got)[:300]
"""


def test_trace_json_is_the_stored_data_as_json_text(workspace, other_workspace):
    mine = TraceFactory(workspace=workspace, data={**trace_data(1), **AWKWARD})
    foreign = TraceFactory(workspace=other_workspace)

    ids, texts = trace_json(workspace_id=workspace.pk, trace_ids=[mine.pk, foreign.pk])

    assert ids == [mine.pk]
    assert json.loads(texts[0]) == mine.data


def test_the_eval_sees_the_stored_data_unchanged(workspace):
    eval_set, _ = labelled_set(workspace, good=0, bad=0)
    trace = TraceFactory(workspace=workspace, data={**trace_data(2), **AWKWARD})
    eval = make_eval(eval_set, version=1, code=ECHO_CODE)
    run = start_run(eval=eval, trace_ids=[trace.pk], trigger="api", enqueue=False)

    run = execute_run(run_id=run.pk)

    execution_ = EvalExecution.objects.get(eval=eval, trace=trace)
    assert (execution_.passed, execution_.error) == (True, ""), execution_.reason
    assert run.passed == 1


def test_queries_per_run_do_not_grow_with_traces(workspace, monkeypatch):
    eval_set, _ = labelled_set(workspace, good=0, bad=0)
    eval = make_eval(eval_set, version=1, code=ALWAYS_PASS_CODE)
    monkeypatch.setattr(execution, "EXECUTE_CHUNK", 50)

    def queries_for(n: int) -> int:
        ids = [TraceFactory(workspace=workspace).pk for _ in range(n)]
        run = start_run(eval=eval, trace_ids=ids, trigger="api", enqueue=False)
        with CaptureQueriesContext(connection) as captured:
            run = execute_run(run_id=run.pk)
        assert (run.status, run.done, run.passed) == ("succeeded", n, n)
        return len(captured)

    # One chunk: claim, load, fetch the text, the verdicts' staging table (PostgreSQL),
    # upsert, count, heartbeat, finish, reload (plus savepoints); the same whether it
    # holds 2 traces or 50.
    assert queries_for(2) == queries_for(50) <= 13
    # A second chunk costs its own fetch, staging table, upsert and counts, not a query per
    # trace.
    assert queries_for(100) - queries_for(50) <= 7


def test_recording_again_replaces_the_verdict_and_keeps_the_rest(workspace):
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    eval = make_eval(eval_set, version=1)
    first = EvalRun.objects.create(workspace=workspace, eval=eval, trigger="api")
    second = EvalRun.objects.create(workspace=workspace, eval=eval, trigger="api")
    record_results(
        eval=eval,
        run=first,
        traces=traces,
        results=[sandbox.Result(True, "ok", None, 1.5), sandbox.Result(False, "no", None, 2.0)],
    )
    before = {e.trace_id: e for e in EvalExecution.objects.filter(eval=eval)}
    pushed_at = timezone.now()
    EvalExecution.objects.filter(trace=traces[0]).update(score_pushed_at=pushed_at)

    record_results(
        eval=eval,
        run=second,
        traces=traces[:1],
        results=[sandbox.Result(True, "", "ValueError: boom", 0.5, output="printed")],
    )

    after = {e.trace_id: e for e in EvalExecution.objects.filter(eval=eval)}
    assert len(after) == 2
    redone, kept = after[traces[0].pk], after[traces[1].pk]
    assert (redone.run_id, redone.passed, redone.reason, redone.error) == (
        second.pk,
        None,  # an error never passes, whatever the eval returned
        "",
        "ValueError: boom",
    )
    assert (redone.duration_ms, redone.output) == (0.5, "printed")
    assert redone.workspace_id == workspace.pk
    assert redone.pk == before[traces[0].pk].pk
    assert redone.created_at == before[traces[0].pk].created_at
    assert redone.updated_at > before[traces[0].pk].updated_at
    assert redone.score_pushed_at == pushed_at  # the score push records its own state
    assert (kept.run_id, kept.passed, kept.reason, kept.duration_ms) == (first.pk, False, "no", 2.0)


def test_verdict_text_and_spend_are_stored_exactly(workspace):
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    eval = make_eval(eval_set, version=1)
    reason = 'said "no" \\ then\nstopped — ✓ {"x": [1]} \'quoted\''
    usage = [
        Usage(calls=3, input_tokens=1200, output_tokens=45, cost_usd=Decimal("0.0000123456")),
        None,
    ]
    record_completed_run(
        eval=eval,
        traces=traces,
        trigger="api",
        results=[
            sandbox.Result(False, reason, None, 12.25, output="line 1\n\tline 2 ü"),
            sandbox.Result(True, "", None, 0.0),
        ],
        usage=usage,
    )

    stored = {e.trace_id: e for e in EvalExecution.objects.filter(eval=eval)}
    first, second = stored[traces[0].pk], stored[traces[1].pk]
    assert (first.passed, first.reason, first.output, first.duration_ms) == (
        False,
        reason,
        "line 1\n\tline 2 ü",
        12.25,
    )
    assert (first.judge_calls, first.input_tokens, first.output_tokens) == (3, 1200, 45)
    assert first.cost_usd == Decimal("0.0000123456")
    assert (second.passed, second.judge_calls, second.cost_usd) == (True, 0, Decimal(0))
    assert first.workspace_id == second.workspace_id == workspace.pk


def test_a_verdict_without_judge_calls_records_no_spend_even_over_one_that_had_some(workspace):
    # A code eval's verdicts carry no spend (the database is sent no spend columns for
    # them); judged again without calls, a verdict's earlier spend is not kept.
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    eval = make_eval(eval_set, version=1)
    spent = Usage(calls=2, input_tokens=10, output_tokens=5, cost_usd=Decimal("0.5"))
    record_completed_run(
        eval=eval,
        traces=traces[:1],
        trigger="api",
        results=[sandbox.Result(True, "", None, 1.0)],
        usage=[spent],
    )

    record_completed_run(
        eval=eval,
        traces=traces,
        trigger="api",
        results=[sandbox.Result(False, "no", None, 2.0)] * 2,
    )

    stored = EvalExecution.objects.filter(eval=eval).order_by("trace_id")
    assert [
        (e.passed, e.judge_calls, e.input_tokens, e.output_tokens, e.cost_usd) for e in stored
    ] == [(False, 0, 0, 0, Decimal(0))] * 2


def _judged(eval, run, traces) -> None:
    record_results(
        eval=eval,
        run=run,
        traces=traces,
        results=[sandbox.Result(True, "ok", None, 1.0)] * len(traces),
    )


def test_deleting_an_eval_or_its_workspace_deletes_its_verdicts(workspace):
    # The database checks a verdict's run and trace only (its eval and workspace are the
    # run's): these deletes reach the verdicts through Django's cascade.
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    first, second = make_eval(eval_set, version=1), make_eval(eval_set, version=2)
    for eval in (first, second):
        _judged(eval, EvalRun.objects.create(workspace=workspace, eval=eval, trigger="api"), traces)

    first.delete()
    assert set(EvalExecution.objects.values_list("eval_id", flat=True)) == {second.pk}

    workspace.delete()
    assert not EvalExecution.objects.exists()


def test_deleting_a_run_keeps_its_verdicts(workspace):
    # A verdict is the version's latest on the trace; the run is only where it came from.
    eval_set, traces = labelled_set(workspace, good=1, bad=0)
    eval = make_eval(eval_set, version=1)
    run = EvalRun.objects.create(workspace=workspace, eval=eval, trigger="api")
    _judged(eval, run, traces)

    run.delete()

    kept = EvalExecution.objects.get()
    assert (kept.eval_id, kept.workspace_id, kept.run_id, kept.passed) == (
        eval.pk,
        workspace.pk,
        None,
        True,
    )


def test_no_verdict_is_written_for_a_run_deleted_meanwhile(workspace):
    # An eval deleted (its runs with it) while a chunk judges: the chunk's write fails at
    # its commit instead of leaving verdicts of an eval that is gone.
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    eval = make_eval(eval_set, version=1)
    run = EvalRun.objects.create(workspace=workspace, eval=eval, trigger="api")
    Eval.objects.filter(pk=eval.pk).delete()  # the chunk still holds `eval` and `run`

    with pytest.raises(IntegrityError), transaction.atomic():
        _judged(eval, run, traces)
        # What the commit checks (deferred), checked now.
        connection.check_constraints(table_names=[EvalExecution._meta.db_table])

    assert not EvalExecution.objects.exists()


def test_a_run_records_verdicts_of_its_own_eval_only(workspace):
    eval_set, traces = labelled_set(workspace, good=1, bad=0)
    first, second = make_eval(eval_set, version=1), make_eval(eval_set, version=2)
    run = EvalRun.objects.create(workspace=workspace, eval=first, trigger="api")

    with pytest.raises(ValueError, match="its own eval"):
        _judged(second, run, traces)

    assert not EvalExecution.objects.exists()


def test_a_verdict_with_nul_or_a_lone_surrogate_is_stored_not_a_failed_run(workspace):
    # PostgreSQL stores neither: the whole batch's verdicts failed to store (a 500 on
    # "run now", a run task failing on every retry). The sandbox hands back U+FFFD.
    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    code = (
        "def eval_fn(trace):\n"
        "    print('out\\x00' + chr(0xD800))\n"
        "    return True, 'reason\\x00' + chr(0xDFFF)\n"
    )
    eval = make_eval(eval_set, version=1, code=code)

    executions = run_eval_now(eval=eval, traces=traces)

    assert [(e.passed, e.reason, e.output) for e in executions] == [
        (True, "reason\ufffd\ufffd", "out\ufffd\ufffd\n")
    ] * 2
