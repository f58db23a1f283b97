"""Sync, then automatic execution and score push, through the broker and a real worker."""

import pytest
from django.utils import timezone

from evals.models import Eval, EvalExecution, EvalRun
from integrations import services
from integrations.models import SyncRun
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


def test_synced_traces_are_judged_and_scored_on_the_worker(
    celery_worker_process,
    transactional_db,
    workspace,
    fake_langfuse,  # noqa: F811
):
    fake = fake_langfuse(traces=12)
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
