"""Workspaces share the execute workers: a large run does not hold back another's small one."""

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from evals.execution.runs import start_run
from evals.models import EvalExecution, EvalRun
from tests.conftest import wait_for
from tests.evals.builders import labelled_set, make_eval

pytestmark = pytest.mark.worker


def _wait_until_final(*runs: EvalRun) -> list[EvalRun]:
    def final():
        fresh = [EvalRun.objects.get(pk=run.pk) for run in runs]
        return fresh if all(r.status in ("succeeded", "failed") for r in fresh) else None

    return wait_for(final, timeout=180, message="the runs did not finish")


def test_a_small_run_of_another_workspace_finishes_before_a_large_run_queued_first(
    celery_worker_process, transactional_db, workspace, other_workspace, settings
):
    # Workspace A's backfill: 60 traces in 12 chunks; workspace B's 4 traces, one task.
    settings.IOFOLD_EVAL_CHUNK_TRACES = 5
    big_set, big_traces = labelled_set(workspace, good=36, bad=24)
    big_eval = make_eval(big_set, version=1)
    small_set, small_traces = labelled_set(other_workspace, good=2, bad=2)
    small_eval = make_eval(small_set, version=1)
    with transaction.atomic():  # both sent on commit, A's first
        big = start_run(eval=big_eval, trace_ids=[t.pk for t in big_traces], trigger="api")
        small = start_run(eval=small_eval, trace_ids=[t.pk for t in small_traces], trigger="api")
    assert big.chunks.count() == 12

    big, small = _wait_until_final(big, small)

    # B's run did not wait for all of A's: it finished while A's was still at work.
    assert small.finished_at < big.finished_at
    # Nothing lost and nothing judged twice on either side.
    assert (big.status, big.done, big.passed, big.failed, big.errors) == (
        "succeeded",
        60,
        36,
        24,
        0,
    )
    assert (small.status, small.done, small.passed, small.failed) == ("succeeded", 4, 2, 2)
    assert EvalExecution.objects.filter(run=big).count() == 60
    assert sum(c.judged for c in big.chunks.all()) == 60


@pytest.mark.skipif(
    not django_settings.CELERY_BROKER_URL.startswith("redis"),
    reason="priorities are Redis's: the development file-system broker serves in order",
)
def test_a_run_a_person_waits_for_goes_ahead_of_background_runs_queued_first(
    celery_worker_process, transactional_db, workspace, other_workspace
):
    # Workspace A's batch reruns (API), then B's "Test again" that a member watches.
    batch_set, batch_traces = labelled_set(workspace, good=2, bad=1)
    batch_eval = make_eval(batch_set, version=1)
    manual_set, manual_traces = labelled_set(other_workspace, good=2, bad=1)
    manual_eval = make_eval(manual_set, version=1)
    with transaction.atomic():  # all sent on commit, in this order
        batches = [
            start_run(eval=batch_eval, trace_ids=[t.pk for t in batch_traces], trigger="api")
            for _ in range(5)
        ]
        manual = start_run(
            eval=manual_eval, trace_ids=[t.pk for t in manual_traces], trigger="manual"
        )

    manual, *batches = _wait_until_final(manual, *batches)

    # The worker may have taken the first batch run before the manual one was sent; it
    # took the manual one next, before the rest.
    assert manual.status == "succeeded" and {b.status for b in batches} == {"succeeded"}
    assert sum(b.finished_at < manual.finished_at for b in batches) <= 1
