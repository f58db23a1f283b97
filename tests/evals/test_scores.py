"""Verdicts go back to Langfuse as boolean scores, once per (eval version, trace)."""

# The fake-Langfuse fixtures are imported from the integration tests, so pytest sees them
# as parameters of the same name.
# ruff: noqa: F811

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.execution import scores
from evals.models import Eval, EvalExecution
from integrations.models import Integration
from integrations.services import SCORE_REJECTED_PREFIX
from iofold.pipeline import ingest_traces
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401
from tests.traces.factories import EvalSetFactory, trace_data

pytestmark = pytest.mark.django_db


def _setup(
    workspace,
    integration,
    *,
    n=3,
    score_to_langfuse=True,
    source="langfuse",
    name="Answers the question",
    start=0,
):
    eval_set = EvalSetFactory(workspace=workspace, name=name, score_to_langfuse=score_to_langfuse)
    eval = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=2,
        code="def eval_fn(trace):\n    return True, 'ok'\n",
        status=Eval.Status.ACTIVE,
        activated_at=timezone.now(),
    )
    traces = [trace_data(i) for i in range(start, start + n)]
    result = ingest_traces(
        workspace=workspace,
        source=source,
        integration=integration if source in ("langfuse", "webhook") else None,
        traces=traces,
    )
    executions = [
        EvalExecution.objects.create(
            workspace=workspace,
            eval=eval,
            trace_id=pk,
            passed=i % 2 == 0,
            reason=f"reason {i}",
        )
        for i, pk in enumerate(sorted(result.trace_ids))
    ]
    return eval, executions


def test_push_sends_boolean_scores_with_deterministic_ids(
    workspace, fake_langfuse, make_integration
):
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval, executions = _setup(workspace, integration)

    report = scores.push_scores(executions=EvalExecution.objects.filter(eval=eval))

    assert (report.pushed, report.failed) == (3, 0)
    assert len(fake.scores) == 3
    first = executions[0]
    sent = fake.scores[scores.score_id(eval_set_id=eval.eval_set_id, trace=first.trace)]
    assert sent["traceId"] == first.trace.external_id
    assert sent["name"] == "Answers the question"
    assert sent["value"] == 1 and sent["dataType"] == "BOOLEAN"
    assert sent["comment"] == "reason 0"
    assert sent["metadata"]["eval_version"] == 2
    assert EvalExecution.objects.filter(score_pushed_at__isnull=False).count() == 3
    integration.refresh_from_db()
    assert (integration.scores_pushed_count, integration.score_push_failures) == (3, 0)


def test_resending_overwrites_instead_of_duplicating(workspace, fake_langfuse, make_integration):
    fake = fake_langfuse()
    eval, executions = _setup(workspace, make_integration(fake))
    scores.push_scores(executions=EvalExecution.objects.filter(eval=eval))
    first_sent = dict(fake.scores)

    EvalExecution.objects.filter(pk=executions[0].pk).update(passed=False, reason="changed")
    scores.push_scores(executions=EvalExecution.objects.filter(eval=eval))

    assert fake.score_posts == 2
    assert set(fake.scores) == set(first_sent)  # same three ids
    changed = fake.scores[scores.score_id(eval_set_id=eval.eval_set_id, trace=executions[0].trace)]
    assert (changed["value"], changed["comment"]) == (0, "changed")
    assert changed["timestamp"] == first_sent[changed["id"]]["timestamp"]


def test_outage_is_recorded_and_the_retry_delivers(workspace, fake_langfuse, make_integration):
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval, _ = _setup(workspace, integration)
    fake.fail_next(401, count=1)  # rejected credentials: permanent, no adapter retry

    report = scores.push_scores(executions=EvalExecution.objects.filter(eval=eval))

    assert (report.pushed, report.failed) == (0, 3)
    assert fake.scores == {}
    integration.refresh_from_db()
    assert integration.score_push_failures == 3
    assert integration.score_push_error
    assert set(EvalExecution.objects.values_list("score_error", flat=True)) == {
        integration.score_push_error
    }

    retried = scores.push_pending_scores()

    assert retried.pushed == 3 and len(fake.scores) == 3
    integration.refresh_from_db()
    assert (integration.score_push_failures, integration.score_push_error) == (0, "")
    assert not EvalExecution.objects.exclude(score_error="").exists()


def test_rejected_scores_are_pinned_to_their_executions(workspace, fake_langfuse, make_integration):
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval, executions = _setup(workspace, integration)
    bad = executions[1]
    fake.reject_score_ids[scores.score_id(eval_set_id=eval.eval_set_id, trace=bad.trace)] = (
        "Invalid score: no"
    )

    report = scores.push_scores(executions=EvalExecution.objects.filter(eval=eval))

    assert (report.pushed, report.failed) == (2, 1)
    assert len(fake.scores) == 2
    bad.refresh_from_db()
    assert bad.score_pushed_at is None
    assert bad.score_error == f"{SCORE_REJECTED_PREFIX}Invalid score: no"
    assert Integration.objects.get().score_push_failures == 1
    # The periodic retry leaves rejections alone: the same body would be rejected again.
    assert scores.push_pending_scores().pushed == 0


def test_only_langfuse_traces_of_opted_in_sets_with_a_verdict(
    workspace,
    fake_langfuse,
    make_integration,
):
    fake = fake_langfuse()
    integration = make_integration(fake)
    _setup(workspace, integration, n=1, score_to_langfuse=False, name="Opted out", start=10)
    _setup(workspace, integration, n=1, source="upload", name="Uploaded", start=20)
    _, errored = _setup(workspace, integration, n=1, name="Errored", start=30)
    EvalExecution.objects.filter(pk=errored[0].pk).update(passed=None, error="boom")
    _, wanted = _setup(workspace, integration, n=1, name="Wanted", start=40)

    report = scores.push_scores(executions=EvalExecution.objects.all())

    assert list(scores.pushable(EvalExecution.objects.all())) == wanted
    assert (report.pushed, report.skipped) == (1, 3)
    assert [s["traceId"] for s in fake.scores.values()] == [wanted[0].trace.external_id]


def test_traces_pushed_to_the_integrations_webhook_get_scores_too(
    workspace, fake_langfuse, make_integration
):
    # Webhook traces carry the integration's Langfuse trace ids, like synced ones.
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval, executions = _setup(workspace, integration, n=2, source="webhook")

    executions_qs = EvalExecution.objects.filter(eval=eval)
    report = scores.push_scores(executions=scores.pushable(executions_qs))
    # A list of executions takes the other path, one instance at a time.
    again = scores.push_scores(executions=list(executions_qs))

    assert (report.pushed, again.pushed) == (2, 2)
    assert sorted(s["traceId"] for s in fake.scores.values()) == sorted(
        e.trace.external_id for e in executions
    )


def test_push_queries_do_not_grow_with_executions(workspace, fake_langfuse, make_integration):
    fake = fake_langfuse()
    integration = make_integration(fake)
    small, _ = _setup(workspace, integration, n=2, name="Small", start=100)
    large, _ = _setup(workspace, integration, n=40, name="Large", start=200)

    def push(eval) -> int:
        with CaptureQueriesContext(connection) as captured:
            report = scores.push_scores(executions=EvalExecution.objects.filter(eval=eval))
        assert report.pushed == EvalExecution.objects.filter(eval=eval).count()
        return len(captured)

    # Read the verdicts, the integration and the evals; then one transaction of outcomes.
    assert push(small) == push(large) <= 8
    assert len(fake.scores) == 42


def test_a_list_of_executions_is_pushed_too(workspace, fake_langfuse, make_integration):
    fake = fake_langfuse()
    eval, executions = _setup(workspace, make_integration(fake), n=2)

    report = scores.push_scores(executions=list(EvalExecution.objects.filter(eval=eval)))

    assert (report.pushed, report.failed) == (2, 0)
    assert set(fake.scores) == {
        scores.score_id(eval_set_id=eval.eval_set_id, trace=e.trace) for e in executions
    }


def test_a_source_that_keeps_refusing_is_asked_once_per_push_not_once_per_chunk(
    workspace, fake_langfuse, make_integration, monkeypatch
):
    # 10,000 verdicts are 20 chunks: each one waiting through the retries of a source that
    # is down held the execute worker for 20 times as long, judging nothing meanwhile.
    monkeypatch.setattr(scores, "PUSH_CHUNK", 2)
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval, _ = _setup(workspace, integration, n=6)
    fake.fail_next(429, count=100, retry_after="0.01")  # rate-limited for a long while

    report = scores.push_scores(executions=EvalExecution.objects.filter(eval=eval))

    assert fake.request_count("/api/public/scores") == 4  # one chunk's attempts
    assert (report.pushed, report.failed) == (0, 6)
    integration.refresh_from_db()
    assert integration.score_push_failures == 6
    assert "rate limit" in integration.score_push_error
    errors = set(EvalExecution.objects.values_list("score_error", flat=True))
    assert errors == {integration.score_push_error}

    # Nothing is lost: once the source answers, the periodic resend delivers them all.
    fake._failures.clear()
    assert scores.push_pending_scores().pushed == 6
    assert len(fake.scores) == 6
