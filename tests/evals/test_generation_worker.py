"""One generation end to end through the real broker and a real Celery worker process."""

import pytest

from evals.generation.services import start_generation
from evals.models import Eval, EvalExecution, EvalKind, RunStatus
from tests.conftest import wait_for
from tests.evals.builders import fenced, labelled_set, use_fake_openai
from tests.evals.test_generation import GOOD_CODE

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


def test_a_generation_whose_worker_was_killed_finishes_on_the_next_worker(
    celery_worker_process, transactional_db, workspace, fake_llm
):
    """The next worker takes the generation over at once, without waiting for a reaper."""
    use_fake_openai(workspace, fake_llm)
    eval_set, traces = labelled_set(workspace, good=4, bad=4)
    fake_llm.push_text(fenced(GOOD_CODE), delay=30)  # the worker is killed while it waits
    fake_llm.push_text(fenced(GOOD_CODE))
    generation = start_generation(eval_set=eval_set)

    def asking_the_model():
        generation.refresh_from_db()
        return generation.status == RunStatus.RUNNING and len(fake_llm.requests) == 1

    wait_for(asking_the_model, timeout=60, message="generation did not start on the worker")
    celery_worker_process.kill()
    celery_worker_process.start()

    def finished():
        generation.refresh_from_db()
        return generation.is_final

    wait_for(finished, timeout=60, message="the new worker did not finish the killed generation")
    assert generation.status == RunStatus.SUCCEEDED, generation.error
    assert generation.takeovers == 1
    # Generation's own requests; the judge and hybrid it measures afterwards may ask more.
    assert len([r for r in fake_llm.requests if "Allowed answers:" not in r.prompt_text]) == 2
    # One code version however many workers tried: the judge and hybrid compared after a
    # generation succeeds are versions of their own, stored a moment later.
    assert Eval.objects.filter(eval_set=eval_set, kind=EvalKind.CODE).count() == 1
    assert EvalExecution.objects.filter(eval=generation.result).count() == 8
