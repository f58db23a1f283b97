"""Verdicts on traces synced from LangSmith go back as feedback, once per (eval, run)."""

import uuid

import pytest
from django.utils import timezone

from evals.execution import scores
from evals.models import Eval, EvalExecution
from integrations import services
from integrations.adapters.langsmith import feedback_id
from iofold.pipeline import ingest_traces
from tests.fakes.langsmith_server import API_KEY, FakeLangSmith
from tests.traces.factories import EvalSetFactory, trace_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake():
    server = FakeLangSmith().start()
    yield server
    server.stop()


@pytest.fixture
def integration(workspace, fake):
    """A LangSmith connection to the fake's default project."""
    return services.create_integration(
        workspace=workspace,
        kind="langsmith",
        name="ls",
        host=fake.url,
        secret_key=API_KEY,
        options={"project": "default"},
    )


def _active_eval(eval_set, *, version: int, code: str) -> Eval:
    return Eval.objects.create(
        workspace=eval_set.workspace,
        eval_set=eval_set,
        version=version,
        code=code,
        status=Eval.Status.ACTIVE,
        activated_at=timezone.now(),
    )


def test_verdicts_become_feedback_and_a_resend_writes_nothing_new(workspace, fake, integration):
    eval_set = EvalSetFactory(workspace=workspace, name="Answers the question",
                              score_to_langfuse=True)  # fmt: skip
    eval = _active_eval(eval_set, version=2, code="def eval_fn(trace):\n    return True, 'ok'\n")
    traces = [{**trace_data(i), "id": str(uuid.UUID(int=i + 1))} for i in range(3)]
    result = ingest_traces(
        workspace=workspace, source="langsmith", integration=integration, traces=traces
    )
    for i, pk in enumerate(sorted(result.trace_ids)):
        EvalExecution.objects.create(
            workspace=workspace, eval=eval, trace_id=pk, passed=i % 2 == 0, reason=f"reason {i}"
        )

    report = scores.push_scores(executions=scores.pushable(EvalExecution.objects.all()))
    assert (report.pushed, report.failed, report.skipped) == (3, 0, 0)
    assert len(fake.feedback) == 3
    sent = sorted(fake.feedback.values(), key=lambda f: f["run_id"])
    assert [f["key"] for f in sent] == ["Answers the question"] * 3
    assert [(f["score"], f["comment"]) for f in sent] == [(1, "reason 0"), (0, "reason 1"),
                                                          (1, "reason 2")]  # fmt: skip
    again = scores.push_scores(executions=scores.pushable(EvalExecution.objects.all()))
    assert (again.pushed, again.failed) == (3, 0)
    assert len(fake.feedback) == 3  # the same ids: 409, then updated in place
    assert sorted(fake.feedback) == sorted(
        feedback_id(scores._build(eval, v)) for v in scores._verdicts(EvalExecution.objects.all())
    )
    integration.refresh_from_db()
    assert (integration.scores_pushed_count, integration.score_push_failures) == (6, 0)


def test_a_conversation_verdict_goes_to_the_threads_last_trace(workspace, fake, integration):
    from traces.models import Conversation, EvalSet

    eval_set = EvalSetFactory(workspace=workspace, name="Whole threads", score_to_langfuse=True,
                              unit=EvalSet.Unit.CONVERSATION)  # fmt: skip
    eval = _active_eval(
        eval_set, version=1, code="def eval_fn(conversation):\n    return True, 'ok'\n"
    )
    traces = [
        {**trace_data(i), "id": str(uuid.UUID(int=i + 1)), "session_id": "thread-1",
         "timestamp": f"2026-03-01T12:0{i}:00+00:00"}
        for i in range(3)
    ]  # fmt: skip
    ingest_traces(workspace=workspace, source="langsmith", integration=integration, traces=traces)
    conversation = Conversation.objects.for_workspace(workspace).get()
    EvalExecution.objects.create(
        workspace=workspace, eval=eval, trace_id=conversation.anchor_id, passed=True, reason="ok"
    )

    report = scores.push_scores(executions=scores.pushable(EvalExecution.objects.all()))

    assert report.pushed == 1
    [sent] = fake.feedback.values()
    assert sent["run_id"] == str(uuid.UUID(int=3)) and sent["key"] == "Whole threads"


def test_a_changed_verdict_replaces_the_feedback_it_sent_before(workspace, fake, integration):
    # A run synced while in progress is judged failing; it completes, is synced and judged
    # again: LangSmith must show the new verdict, not keep the first one.
    eval_set = EvalSetFactory(workspace=workspace, name="Answers", score_to_langfuse=True)
    eval = _active_eval(eval_set, version=1, code="def eval_fn(trace):\n    return True, 'ok'\n")
    result = ingest_traces(
        workspace=workspace,
        source="langsmith",
        integration=integration,
        traces=[{**trace_data(0), "id": str(uuid.UUID(int=1))}],
    )
    execution = EvalExecution.objects.create(
        workspace=workspace, eval=eval, trace_id=result.trace_ids[0], passed=False,
        reason="no answer yet",
    )  # fmt: skip
    scores.push_scores(executions=scores.pushable(EvalExecution.objects.all()))

    EvalExecution.objects.filter(pk=execution.pk).update(passed=True, reason="answered")
    report = scores.push_scores(executions=scores.pushable(EvalExecution.objects.all()))

    assert (report.pushed, report.failed) == (1, 0)
    [sent] = fake.feedback.values()
    assert (sent["score"], sent["comment"]) == (1, "answered")


def test_a_conversation_judged_again_on_the_same_last_trace_updates_its_feedback(
    workspace, fake, integration
):
    """A turn that arrives late (it began before the thread's last turn) changes the thread;
    judged again once no turn has arrived for the idle time, its verdict changes while its
    last trace does not: the feedback LangSmith shows on that trace is the new verdict, not
    the first."""
    import datetime as dt

    from django.utils import timezone

    from evals.execution import continuous
    from traces.conversations import complete_idle_conversations
    from traces.models import Conversation, EvalSet

    eval_set = EvalSetFactory(workspace=workspace, name="Short threads", score_to_langfuse=True,
                              unit=EvalSet.Unit.CONVERSATION, source_kind="filter",
                              saved_filter={})  # fmt: skip
    _active_eval(
        eval_set,
        version=1,
        code="def eval_fn(c):\n    n = len(c['turns'])\n    return n < 3, f'{n} turns'\n",
    )

    def turn(i, minute, **extra):
        return {**trace_data(i), "id": str(uuid.UUID(int=i + 1)), "session_id": "thread-1",
                "timestamp": f"2026-03-01T12:{minute:02d}:00+00:00", **extra}  # fmt: skip

    def ingest_and_judge(traces, *, settle=False):
        ingest_traces(
            workspace=workspace, source="langsmith", integration=integration, traces=traces
        )
        if settle:
            complete_idle_conversations(timezone.now() + dt.timedelta(minutes=31))
        conversation = Conversation.objects.for_workspace(workspace).get()
        runs = continuous.start_automatic_runs(
            workspace_id=workspace.pk, trace_ids=[conversation.anchor_id], enqueue=False
        )
        for run in runs:
            continuous.execute_automatic_run(run_id=run.pk)
        return conversation

    last = turn(1, 10, metadata={"conversation_end": True})
    conversation = ingest_and_judge([turn(0, 0), last])
    [sent] = fake.feedback.values()
    assert (sent["run_id"], sent["score"], sent["comment"]) == (last["id"], 1, "2 turns")

    conversation = ingest_and_judge([turn(2, 5)], settle=True)  # it began before the last

    assert conversation.completion_count == 2
    [sent] = fake.feedback.values()
    assert (sent["run_id"], sent["score"], sent["comment"]) == (last["id"], 0, "3 turns")
