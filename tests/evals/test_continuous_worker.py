"""Sync, then automatic execution and score push, through the broker and a real worker."""

import pytest
from django.urls import reverse
from django.utils import timezone

from evals.models import Eval, EvalExecution, EvalRun
from integrations import services
from integrations.models import Integration, SyncRun
from iofold.lib.tasks import registered_task
from tests.conftest import wait_for
from tests.integrations.conftest import fake_langfuse  # noqa: F401
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY
from tests.traces.factories import EvalSetFactory
from traces.models import EvalSet, Trace

pytestmark = pytest.mark.worker

# The fake's traces alternate between answered and failed tool calls.
NO_ERROR_CODE = """def eval_fn(trace):
    failed = [s["name"] for s in trace["steps"] if s.get("error")]
    if failed:
        return False, "a step failed: " + failed[0]
    return True, "no step failed"
"""


def _scoring_langfuse(workspace, fake):
    """A Langfuse integration and an active eval scoring every trace it syncs."""
    integration = services.create_integration(
        workspace=workspace, name="lf", host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY
    )
    eval_set = EvalSetFactory(
        workspace=workspace,
        name="No failed steps",
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={"source": "langfuse"},
        score_to_langfuse=True,
    )
    eval = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code=NO_ERROR_CODE,
        status=Eval.Status.ACTIVE,
        activated_at=timezone.now(),
    )
    return integration, eval


def test_synced_traces_are_judged_and_scored_on_the_worker(
    celery_worker_process,
    transactional_db,
    workspace,
    fake_langfuse,  # noqa: F811
):
    fake = fake_langfuse(traces=12)
    integration, eval = _scoring_langfuse(workspace, fake)

    run = services.start_sync(integration=integration)

    def scored():
        return len(fake.scores) >= 12 and not EvalRun.objects.exclude(status="succeeded").exists()

    wait_for(scored, timeout=90, message="traces were not judged and scored on the worker")
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    traces = Trace.objects.for_workspace(workspace)
    assert traces.count() == 12
    executions = EvalExecution.objects.filter(eval=eval)
    assert executions.count() == 12
    assert set(EvalRun.objects.values_list("trigger", flat=True)) == {"automatic"}
    expected = {t.external_id: not t.has_error for t in traces}
    assert {e.trace.external_id: e.passed for e in executions} == expected
    assert {s["traceId"]: s["value"] == 1 for s in fake.scores.values()} == expected
    assert not executions.filter(score_pushed_at__isnull=True).exists()

    # A second sync finds nothing new: no new run, no duplicate score.
    second = services.start_sync(integration=integration)
    wait_for(lambda: SyncRun.objects.get(pk=second.pk).is_final, timeout=60)
    runs = EvalRun.objects.count()
    assert len(fake.scores) == 12 and runs == EvalRun.objects.count()


def test_a_source_refusing_scores_is_shown_and_the_resend_delivers_each_once(
    celery_worker_process,
    transactional_db,
    workspace,
    owner,
    login,
    fake_langfuse,  # noqa: F811
):
    fake = fake_langfuse(traces=6)
    integration, _ = _scoring_langfuse(workspace, fake)
    # Langfuse is down for the score pushes: every attempt the adapter makes gets a 503
    # (the sync's pages make two runs, each pushing once, 4 attempts each).
    fake.fail_next(503, count=8, path="/api/public/scores")

    services.start_sync(integration=integration)

    def refused():
        return Integration.objects.get(pk=integration.pk).score_push_failures == 6

    wait_for(refused, timeout=90, message="the refused push was not recorded")
    assert fake.scores == {} and not fake._failures
    assert EvalExecution.objects.filter(score_pushed_at__isnull=True).count() == 6
    page = login(owner).get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    assert b'data-testid="score-push-failures">6 failed' in page.content
    assert b"503" in page.content

    # Langfuse is back: the beat's resend (sent here through the broker) delivers them.
    registered_task("evals.tasks.push_pending_scores_task").delay()
    wait_for(lambda: len(fake.scores) == 6, timeout=60, message="the resend did not deliver")
    wait_for(lambda: Integration.objects.get(pk=integration.pk).score_push_failures == 0)
    page = login(owner).get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    assert b"6 delivered" in page.content and b"failed</span>" not in page.content
    assert fake.score_posts == 1 and not EvalExecution.objects.filter(score_pushed_at=None)


# --- the circuit breaker ---------------------------------------------------------------------

HANGS_ON_SLOW = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if "slow" in output:
        while True:
            pass
    return "refund" in output, "looked for a refund"
"""


@pytest.fixture
def quick_timeouts_worker(celery_worker_process):
    """The real worker, with a 0.5 s timeout per trace (a hanging trace costs 0.5 s, not 5)."""
    worker = celery_worker_process
    worker.wait_until_idle()
    worker.kill()
    worker.env = {**worker.env, "SANDBOX_TIMEOUT_PER_TRACE": "0.5"}
    worker.start()
    yield worker
    worker.wait_until_idle()
    worker.kill()
    worker.env = {k: v for k, v in worker.env.items() if k != "SANDBOX_TIMEOUT_PER_TRACE"}
    worker.start()


def _hanging_or_not(workspace, code):
    eval_set = EvalSetFactory(
        workspace=workspace, source_kind=EvalSet.SourceKind.FILTER, saved_filter={"name": "s"}
    )
    return Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code=code,
        status=Eval.Status.ACTIVE,
        activated_at=timezone.now(),
    )


def _arrive(workspace, outputs, *, prefix):
    from iofold.pipeline import ingest_traces
    from tests.traces.factories import trace_data

    traces = []
    for i, output in enumerate(outputs):
        data = trace_data(i, output=output)
        data.update(id=f"{prefix}{i}", name="s")
        traces.append(data)
    return ingest_traces(workspace=workspace, source="api", traces=traces).trace_ids


def test_a_hanging_eval_is_paused_on_the_worker_and_resumed_with_its_backlog(
    quick_timeouts_worker, transactional_db, workspace, other_workspace
):
    from evals.execution import breaker, continuous

    hanging = _hanging_or_not(workspace, HANGS_ON_SLOW)
    other = _hanging_or_not(other_workspace, HANGS_ON_SLOW.replace("slow", "never"))

    _arrive(workspace, ["slow"] * 22, prefix="a")
    wait_for(
        lambda: breaker.pause_of(hanging.eval_set),
        timeout=120,
        message="the hanging eval did not trip the breaker",
    )
    assert EvalExecution.objects.filter(eval=hanging).count() == 22

    # The next traces wait; another workspace's eval goes on judging its own.
    waiting = _arrive(workspace, ["refund", "slow"], prefix="b")
    _arrive(other_workspace, ["refund", "slow"], prefix="b")
    wait_for(lambda: EvalExecution.objects.filter(eval=other).count() == 2, timeout=60)
    assert quick_timeouts_worker.wait_until_idle()
    assert EvalExecution.objects.filter(eval=hanging).count() == 22
    held = EvalRun.objects.get(eval=hanging, status="queued")
    assert held.trace_ids == waiting

    continuous.resume(eval_set=hanging.eval_set)
    wait_for(
        lambda: EvalRun.objects.get(pk=held.pk).status == "succeeded",
        timeout=60,
        message="the traces that waited were not judged after the resume",
    )
    verdicts = EvalExecution.objects.filter(eval=hanging, trace_id__in=waiting)
    outcomes = {e.trace.external_id: (e.passed, "timed out" in e.error) for e in verdicts}
    assert outcomes == {"b0": (True, False), "b1": (None, True)}
    assert breaker.pause_of(hanging.eval_set) is None
