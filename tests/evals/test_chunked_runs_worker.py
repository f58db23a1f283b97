"""One split eval run shared by two real Celery worker processes, one of them killed."""

import pytest

from evals.execution.runs import start_run
from evals.models import EvalExecution, EvalRun, EvalRunChunk
from tests.conftest import WorkerProcess, wait_for
from tests.evals.builders import labelled_set, make_eval

pytestmark = pytest.mark.worker

# Slow enough per trace (about 0.1 s) that both workers are busy at once and one can be
# killed mid-chunk: judging 40 traces outlasts the file broker's 1 s poll many times over,
# so the second worker always gets chunks to take, however fast the host.
SLOW_REFUSAL_CODE = """def eval_fn(trace):
    n = 0
    for i in range(2000000):
        n += i
    output = str(trace.get("output") or "")
    if "cannot" in output:
        return False, "The assistant refused"
    return True, "The assistant answered"
"""


def _pid(owner: str) -> int:
    return int(owner.split(":")[1])


def test_two_workers_share_a_split_run_and_judge_every_trace_once(
    celery_worker_process, transactional_db, workspace, settings, tmp_path
):
    settings.IOFOLD_EVAL_CHUNK_TRACES = 4
    # Every chunk sent at once: with only a few in flight, the file broker's 1 s poll let
    # the first worker carry on through each chunk sent before the second read its message.
    settings.IOFOLD_EVAL_CHUNKS_IN_FLIGHT = 10
    second = WorkerProcess(celery_worker_process.env, tmp_path / "second.log").start()
    try:
        eval_set, traces = labelled_set(workspace, good=24, bad=16)
        eval = make_eval(eval_set, version=1, code=SLOW_REFUSAL_CODE)
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual")
        assert run.chunks.count() == 10

        # Kill the second worker in the middle of a chunk, as the OOM killer would; its
        # replacement takes the chunk over when it starts.
        def second_is_judging():
            return EvalRunChunk.objects.filter(
                run=run, status="running", owner__contains=f":{second.pid}:"
            ).exists()

        wait_for(second_is_judging, timeout=90, message="the second worker took no chunk")
        second.kill()
        second.start()

        wait_for(
            lambda: EvalRun.objects.get(pk=run.pk).status in ("succeeded", "failed"),
            timeout=180,
            message="the split run did not finish",
        )
    finally:
        second.terminate()

    run.refresh_from_db()
    assert (run.status, run.total, run.done, run.passed, run.failed, run.errors) == (
        "succeeded",
        40,
        40,
        24,
        16,
        0,
    )
    executions = EvalExecution.objects.filter(eval=eval)
    assert executions.count() == 40 and set(executions.values_list("run_id", flat=True)) == {run.pk}
    chunks = list(EvalRunChunk.objects.filter(run=run))
    assert {c.status for c in chunks} == {"succeeded"}
    # Each trace went through the sandbox and was recorded once: no chunk recorded twice,
    # and the killed worker's chunk was recorded once, by its new owner.
    assert sum(c.judged for c in chunks) == 40
    # Taken over: the killed worker's chunk, and the next one if it had claimed it already
    # (a worker claims the next chunk while the last batch of its own is in the sandbox).
    assert 1 <= sum(c.takeovers for c in chunks) <= 2
    # Both workers carried chunks: the second was seen judging one above (whoever finished
    # the run's last chunks depends on how fast the replacement starts on a busy machine).
    pids = {_pid(c.owner) for c in chunks}
    assert celery_worker_process.pid in pids
