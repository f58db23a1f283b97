"""One generation end to end through the real broker and a real Celery worker process."""

import pytest

from evals.models import EvalExecution, RunStatus
from evals.services.generation import start_generation
from tests.conftest import wait_for
from tests.evals.builders import labelled_set

pytestmark = pytest.mark.worker


def test_generation_runs_on_the_worker(celery_worker_process, transactional_db, workspace):
    eval_set, traces = labelled_set(workspace, good=4, bad=4)

    generation = start_generation(eval_set=eval_set)  # enqueued on commit (autocommit here)

    def finished():
        generation.refresh_from_db()
        return generation.is_final

    wait_for(finished, timeout=90, message="generation did not finish on the worker")
    assert generation.status == RunStatus.SUCCEEDED, generation.error
    eval = generation.result
    assert eval.provider == "offline" and eval.agreement == 1.0
    assert EvalExecution.objects.filter(eval=eval).count() == 8
