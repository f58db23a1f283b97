"""A generation's measuring run split into chunks that two real Celery workers share."""

import pytest

from evals.generation.services import start_generation
from evals.models import EvalExecution, EvalRunChunk, RunStatus
from tests.conftest import WorkerProcess, wait_for
from tests.evals.builders import fenced, labelled_set, use_fake_openai
from tests.evals.test_chunked_runs_worker import SLOW_REFUSAL_CODE

pytestmark = pytest.mark.worker


def test_two_workers_measure_one_generation_and_judge_every_label_once(
    celery_worker_process, transactional_db, workspace, fake_llm, tmp_path
):
    use_fake_openai(workspace, fake_llm)
    eval_set, traces = labelled_set(workspace, good=24, bad=16)
    fake_llm.push_text(fenced(SLOW_REFUSAL_CODE))
    # Both workers split measuring runs into chunks of 4, all sent at once (with a few in
    # flight the file broker's 1 s poll let the generating worker carry on through each
    # before the other read its message); the shared worker is set aside.
    env = {
        **celery_worker_process.env,
        "IOFOLD_EVAL_CHUNK_TRACES": "4",
        "IOFOLD_EVAL_CHUNKS_IN_FLIGHT": "10",
    }
    celery_worker_process.terminate()
    first = WorkerProcess(env, tmp_path / "first.log").start()
    second = WorkerProcess(env, tmp_path / "second.log").start()
    try:
        generation = start_generation(eval_set=eval_set)

        def finished():
            generation.refresh_from_db()
            return generation.is_final

        wait_for(finished, timeout=240, message="the generation did not finish")
    finally:
        first.terminate()
        second.terminate()
        celery_worker_process.start()

    assert generation.status == RunStatus.SUCCEEDED, generation.error
    eval = generation.result
    assert (eval.version, eval.labels_tested) == (1, 40)
    assert eval.metrics["training"]["accuracy"] == 1.0
    run = eval.runs.get(trigger="generation")
    assert (run.status, run.total, run.done, run.passed, run.failed, run.errors) == (
        "succeeded",
        40,
        40,
        24,
        16,
        0,
    )
    chunks = list(EvalRunChunk.objects.filter(run=run))
    assert len(chunks) == 10 and {c.status for c in chunks} == {"succeeded"}
    # Every label judged and recorded once, none missed, and both workers judged some:
    # the generating one worked on chunks while the other took chunk tasks.
    assert sum(c.judged for c in chunks) == 40
    assert EvalExecution.objects.filter(eval=eval).count() == 40
    assert {int(c.owner.split(":")[1]) for c in chunks} == {first.pid, second.pid}
