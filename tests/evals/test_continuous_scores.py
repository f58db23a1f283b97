"""Continuous evaluation as an operator meets it: one verdict and one score per new trace,
whatever is repeated (a task delivered twice, a worker restarted, a trace synced again)."""

# The fake-Langfuse fixtures are imported from the integration tests, so pytest sees them
# as parameters of the same name.
# ruff: noqa: F811

import pytest
from django.utils import timezone

from evals.execution import continuous
from evals.models import Eval, EvalExecution, EvalRun
from iofold.pipeline import ingest_traces
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401
from tests.traces.factories import EvalSetFactory, trace_data

pytestmark = pytest.mark.django_db

REFUND = """def eval_fn(trace):
    if "refund" in str(trace.get("output") or ""):
        return True, "mentions the refund"
    return False, "no refund in the answer"
"""


def _active(workspace, *, version=1, code=REFUND, eval_set=None):
    eval_set = eval_set or EvalSetFactory(
        workspace=workspace, name="Refunds", score_to_langfuse=True, source_kind="filter",
        saved_filter={},
    )  # fmt: skip
    return Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=version,
        code=code,
        provider="offline",
        status=Eval.Status.ACTIVE,
        activated_at=timezone.now(),
    )


def _sync(workspace, integration, outputs):
    traces = [trace_data(i, output=output) for i, output in enumerate(outputs)]
    return ingest_traces(
        workspace=workspace, source="langfuse", integration=integration, traces=traces
    ).trace_ids


def _evaluate(workspace, trace_ids):
    runs = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=trace_ids, enqueue=False
    )
    for run in runs:
        continuous.execute_automatic_run(run_id=run.pk)
    return runs


def test_a_task_delivered_twice_pushes_each_score_once(workspace, fake_langfuse, make_integration):
    # acks_late: a worker restarted after the push but before the acknowledgement, or a
    # duplicate message, carries out the finished run's task again.
    fake = fake_langfuse()
    integration = make_integration(fake)
    _active(workspace)
    [run] = _evaluate(workspace, _sync(workspace, integration, ["A refund.", "No."]))

    continuous.execute_automatic_run(run_id=run.pk)

    assert len(fake.scores) == 2 and fake.score_posts == 1
    integration.refresh_from_db()
    assert integration.scores_pushed_count == 2  # what the integration's page says
    assert EvalRun.objects.count() == 1 and EvalExecution.objects.count() == 2


def test_a_trace_synced_again_is_judged_again_only_when_it_changed(
    workspace, fake_langfuse, make_integration
):
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval = _active(workspace)
    _evaluate(workspace, _sync(workspace, integration, ["No."]))
    [score] = fake.scores.values()
    assert score["value"] == 0

    # The same trace as before: nothing runs, nothing is sent.
    assert _evaluate(workspace, _sync(workspace, integration, ["No."])) == []
    assert fake.score_posts == 1

    # It changed (the agent's answer arrived later): judged again, its one score replaced.
    _evaluate(workspace, _sync(workspace, integration, ["A refund is on its way."]))
    [score] = fake.scores.values()
    assert (score["value"], score["comment"]) == (1, "mentions the refund")
    assert fake.score_posts == 2
    assert EvalExecution.objects.get(eval=eval).passed is True


def test_a_new_verdict_whose_push_was_lost_is_sent_by_the_periodic_resend(
    workspace, fake_langfuse, make_integration
):
    # A split run pushes from its last chunk's task; a worker killed during that push
    # leaves a finished run whose task is not carried out again: only the resend is left.
    from evals.execution.runs import execute_run
    from evals.execution.scores import push_pending_scores

    fake = fake_langfuse()
    integration = make_integration(fake)
    _active(workspace)
    _evaluate(workspace, _sync(workspace, integration, ["No."]))
    ids = _sync(workspace, integration, ["A refund is on its way."])
    [run] = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)
    execute_run(run_id=run.pk)  # judged again, then the worker died: no push

    assert push_pending_scores().pushed == 1
    [score] = fake.scores.values()
    assert score["value"] == 1
    assert push_pending_scores().pushed == 0  # delivered as it is now


def test_a_version_activated_while_the_backlog_is_judged_scores_that_backlog(
    workspace, fake_langfuse, make_integration, monkeypatch
):
    # v1's run over a backlog is queued (or half done) when v2 is activated: v1's verdicts
    # no longer speak for the set, so the traces go to v2, each scored once, by v2.
    from evals import tasks
    from evals.versions.services import activate_eval

    handed = []
    monkeypatch.setattr(
        tasks.run_automatic_evals_task, "apply_async", lambda args, **_: handed.append(args)
    )
    fake = fake_langfuse()
    integration = make_integration(fake)
    v1 = _active(workspace, code="def eval_fn(trace):\n    return False, 'v1 says no'\n")
    ids = _sync(workspace, integration, ["A refund.", "No.", "Your refund is sent."])
    [run] = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)
    v2 = Eval.objects.create(
        workspace=workspace, eval_set=v1.eval_set, version=2, code=REFUND, provider="offline"
    )
    activate_eval(eval=v2)

    continuous.execute_automatic_run(run_id=run.pk)

    assert fake.scores == {}  # v1 no longer speaks for the set
    assert [(ws, sorted(t)) for ws, t in handed] == [(workspace.pk, sorted(ids))]
    _evaluate(workspace, handed[0][1])
    assert sorted(s["metadata"]["eval_version"] for s in fake.scores.values()) == [2, 2, 2]
    assert sorted(s["value"] for s in fake.scores.values()) == [0, 1, 1]


def test_a_trace_the_eval_times_out_on_is_shown_and_the_others_are_scored(
    workspace, fake_langfuse, make_integration, settings
):
    settings.SANDBOX_TIMEOUT_PER_TRACE = 1
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval = _active(
        workspace,
        code=(
            "def eval_fn(trace):\n"
            "    while 'hang' in str(trace.get('output')):\n"
            "        pass\n"
            "    return 'refund' in str(trace.get('output')), 'judged'\n"
        ),
    )
    ids = _sync(workspace, integration, ["A refund.", "hang", "No.", "Your refund."])

    [run] = _evaluate(workspace, ids)

    run.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 4, 2, 1, 1)
    stuck = EvalExecution.objects.get(eval=eval, trace__external_id="t1")
    assert stuck.passed is None and "time" in stuck.error.lower()
    assert sorted(s["traceId"] for s in fake.scores.values()) == ["t0", "t2", "t3"]


def _versions(workspace, fake, integration):
    """v1 active and v2 in shadow have judged two new traces; v1's verdicts were sent."""
    from evals.versions.services import shadow_eval

    v1 = _active(workspace, code="def eval_fn(trace):\n    return False, 'v1 says no'\n")
    v2 = Eval.objects.create(
        workspace=workspace, eval_set=v1.eval_set, version=2, code=REFUND, provider="offline"
    )
    shadow_eval(eval=v2)
    _evaluate(workspace, _sync(workspace, integration, ["A refund.", "Your refund."]))
    assert sorted((s["traceId"], s["value"]) for s in fake.scores.values()) == [
        ("t0", 0),
        ("t1", 0),
    ]
    return v1, v2


def _per_trace(fake):
    found = {}
    for score in fake.scores.values():
        found.setdefault(score["traceId"], []).append(
            (score["name"], score["value"], score["metadata"]["eval_version"])
        )
    return found


def test_a_promoted_version_replaces_the_scores_instead_of_adding_its_own(
    workspace, fake_langfuse, make_integration
):
    # Two values of one score name on one trace (v1: no, v2: yes) are counted twice by
    # every chart of the score in Langfuse.
    from evals.execution.scores import push_pending_scores
    from evals.versions.services import activate_eval

    fake = fake_langfuse()
    integration = make_integration(fake)
    v1, v2 = _versions(workspace, fake, integration)

    activate_eval(eval=v2)
    assert push_pending_scores().pushed == 2

    assert _per_trace(fake) == {"t0": [("Refunds", 1, 2)], "t1": [("Refunds", 1, 2)]}


def test_a_rollback_puts_back_the_scores_the_newer_version_replaced(
    workspace, fake_langfuse, make_integration
):
    from evals.execution.scores import push_pending_scores
    from evals.versions.services import activate_eval, rollback_to

    fake = fake_langfuse()
    integration = make_integration(fake)
    v1, v2 = _versions(workspace, fake, integration)
    activate_eval(eval=v2)
    push_pending_scores()

    rollback_to(eval=v1)
    assert push_pending_scores().pushed == 2

    assert _per_trace(fake) == {"t0": [("Refunds", 0, 1)], "t1": [("Refunds", 0, 1)]}


def test_archiving_the_eval_set_stops_its_scores_in_flight_and_pending(
    workspace, fake_langfuse, make_integration
):
    # Archived, a set judges no new trace (evaluating_evals); a run in flight then, or a
    # verdict waiting for the resend, must not reach the source afterwards either.
    from evals.execution.scores import push_pending_scores
    from traces.services import archive_eval_set

    fake = fake_langfuse()
    integration = make_integration(fake)
    eval = _active(workspace)
    fake.fail_next(401)  # the first push fails: its verdicts wait for the resend
    _evaluate(workspace, _sync(workspace, integration, ["A refund."]))
    ids = _sync(workspace, integration, ["No.", "Your refund."])
    [run] = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)

    archive_eval_set(eval_set=eval.eval_set)
    continuous.execute_automatic_run(run_id=run.pk)
    push_pending_scores()

    assert fake.scores == {}


def test_judging_and_scoring_new_traces_costs_the_same_queries_for_3_or_30(
    workspace, fake_langfuse, make_integration
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fake = fake_langfuse()
    integration = make_integration(fake)
    _active(workspace)

    def queries(outputs, start):
        traces = [trace_data(start + i, output=o) for i, o in enumerate(outputs)]
        ids = ingest_traces(
            workspace=workspace, source="langfuse", integration=integration, traces=traces
        ).trace_ids
        with CaptureQueriesContext(connection) as captured:
            _evaluate(workspace, ids)
        return len(captured)

    few = queries(["A refund.", "No.", "Refund."], 0)
    many = queries(["A refund.", "No.", "Refund."] * 10, 100)
    assert few == many
    assert len(fake.scores) == 33


def test_new_traces_arriving_while_the_broker_is_down_are_still_judged(
    workspace, fake_langfuse, make_integration, monkeypatch, django_capture_on_commit_callbacks
):
    # The start task's message was the only record of traces to judge: with the broker
    # down as a sync page committed, they were never judged nor scored.
    from evals.execution.runs import recover_eval_runs
    from iofold.celery import app

    fake = fake_langfuse()
    integration = make_integration(fake)
    _active(workspace)
    unreachable = "redis://127.0.0.1:1/0"  # nothing listens: refused at once
    monkeypatch.setenv("CELERY_BROKER_URL", unreachable)
    monkeypatch.setitem(app.conf, "broker_url", unreachable)
    monkeypatch.setitem(app.conf, "broker_transport_options", {})
    monkeypatch.setitem(app.conf, "broker_transport", None)
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)

    with django_capture_on_commit_callbacks(execute=True):
        ids = _sync(workspace, integration, ["A refund.", "No."])

    [run] = EvalRun.objects.all()
    assert (run.status, run.trigger, sorted(run.trace_ids)) == ("queued", "automatic", sorted(ids))
    # Its message is sent again by the sweep once the broker is back (iofold/lib/runs.py),
    # and the task carries it out.
    monkeypatch.undo()
    assert recover_eval_runs(include_queued=True) == 1
    continuous.execute_automatic_run(run_id=run.pk)
    assert len(fake.scores) == 2
