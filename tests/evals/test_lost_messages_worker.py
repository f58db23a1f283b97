"""A run whose task message never reached a worker is done anyway, by the periodic sweep."""

from datetime import timedelta

import pytest
from django.utils import timezone

from evals.execution.runs import start_run
from evals.models import EvalRun, RunStatus
from iofold.lib.runs import REQUEUE_AFTER
from iofold.reaper import reap_stale_runs_task
from tests.conftest import wait_for
from tests.evals.builders import labelled_set, make_eval

pytestmark = pytest.mark.worker


def test_an_eval_run_whose_message_was_lost_is_run_after_the_sweep(
    celery_worker_process, transactional_db, workspace
):
    """Before: it stayed "waiting for a worker" for ever (until a worker restarted)."""
    eval_set, traces = labelled_set(workspace, good=2, bad=2)
    eval = make_eval(eval_set, version=1)
    # As if the broker had been down when the request sent it: the row, and no message.
    run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual", enqueue=False)
    EvalRun.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - REQUEUE_AFTER - timedelta(seconds=1)
    )

    reap_stale_runs_task()  # what beat runs every minute

    wait_for(lambda: EvalRun.objects.get(pk=run.pk).is_final, timeout=60, message="run never ran")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.done == 4
