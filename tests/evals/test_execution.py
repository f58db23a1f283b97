"""Queued and immediate eval runs in the real sandbox (nsjail)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from evals.exceptions import EvalError
from evals.models import EvalExecution, EvalRun
from evals.services.execution import (
    execute_run,
    reap_stale_runs,
    run_eval_now,
    start_run,
)
from tests.evals.builders import ALWAYS_PASS_CODE, BAD, GOOD, labelled_set, make_eval
from tests.traces.factories import TraceFactory

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


def test_too_many_traces_for_an_immediate_run(workspace, monkeypatch):
    from evals.services import execution

    eval_set, traces = labelled_set(workspace, good=2, bad=0)
    monkeypatch.setattr(execution, "MAX_NOW_TRACES", 1)
    with pytest.raises(EvalError, match="too many"):
        run_eval_now(eval=make_eval(eval_set, version=1), traces=traces)
