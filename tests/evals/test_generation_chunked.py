"""Generation measuring a new version on more labels than a chunk: split like a large run."""

import pytest
from django.urls import reverse

from evals.exceptions import TransientEvalError
from evals.execution.chunks import work_until_done
from evals.execution.runs import start_run
from evals.generation.candidates import Candidate
from evals.generation.services import MEASURING, start_generation, store_draft
from evals.generation.worker import run_generation
from evals.models import Eval, EvalExecution, EvalRun, EvalRunChunk, Generation
from tests.conftest import dead_owner
from tests.evals.builders import (
    fenced,
    generate,
    labelled_set,
    make_eval,
    sandbox_unavailable_at_call,
)
from tests.evals.test_generation import GOOD_CODE

pytestmark = pytest.mark.django_db

# Passes every odd-numbered trace, so it disagrees with some bad labels: imperfect figures.
MIXED_CODE = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if str(trace.get("id")).endswith(("1", "3", "5", "7", "9")):
        return True, "Waved through"
    if "cannot" in output:
        return False, "The assistant refused"
    return True, "The assistant answered"
"""


def snapshot(eval: Eval) -> dict:
    """What a user sees of a version: its number, status, code, figures and every verdict."""
    eval.refresh_from_db()
    verdicts = EvalExecution.objects.filter(eval=eval).order_by("trace_id")
    return {
        "version": eval.version,
        "status": eval.status,
        "code": eval.code,
        "agreement": eval.agreement,
        "labels_tested": eval.labels_tested,
        "low_confidence": (eval.low_confidence, eval.low_confidence_reason),
        # Everything but when it was measured.
        "metrics": {k: v for k, v in eval.metrics.items() if k != "measured_at"},
        "verdicts": list(verdicts.values_list("trace_id", "passed", "reason", "error")),
    }


def generate_whole_then_chunked(eval_set, settings, push=None):
    """Generate with every label in one sandbox call, then again split into chunks of 4."""
    settings.IOFOLD_EVAL_CHUNK_TRACES = 5000
    if push:
        push()
    whole = generate(eval_set)
    assert whole.status == "succeeded", whole.error
    assert not whole.result.runs.get().chunks.exists()
    expected = snapshot(whole.result)
    # The next one is v1 again (with an LLM, judge versions may have followed it).
    Eval.objects.filter(eval_set=eval_set).delete()

    settings.IOFOLD_EVAL_CHUNK_TRACES = 4
    if push:
        push()
    chunked = generate(eval_set)
    assert chunked.status == "succeeded", chunked.error
    return expected, chunked.result


def test_offline_generation_split_into_chunks_stores_the_same_version(workspace, settings):
    eval_set, traces = labelled_set(workspace, good=7, bad=6, neutral=2)

    expected, eval = generate_whole_then_chunked(eval_set, settings)

    assert snapshot(eval) == expected
    assert MEASURING not in eval.metrics
    assert Eval.objects.filter(eval_set=eval_set).count() == 1
    run = eval.runs.get()
    chunks = list(run.chunks.all())
    assert [len(c.trace_ids) for c in chunks] == [4, 4, 4, 3]
    assert {c.status for c in chunks} == {"succeeded"}
    # Every labelled trace judged once, none missed, and the run's counts exact.
    assert sum(c.judged for c in chunks) == 15
    assert (run.trigger, run.status, run.total, run.done) == ("generation", "succeeded", 15, 15)
    assert EvalExecution.objects.filter(eval=eval).count() == 15


def test_llm_generation_with_a_held_out_part_and_disagreements_stores_the_same_version(
    openai_workspace, fake_llm, settings
):
    eval_set, traces = labelled_set(openai_workspace, good=12, bad=10)

    expected, eval = generate_whole_then_chunked(
        eval_set, settings, push=lambda: fake_llm.push_text(fenced(MIXED_CODE))
    )

    assert snapshot(eval) == expected
    assert expected["metrics"]["heldout_trace_ids"]
    run = eval.runs.get()
    assert run.chunks.count() == 6
    assert (run.done, run.passed + run.failed) == (22, 22)
    assert 0 < expected["metrics"]["training"]["accuracy"] < 1


def test_a_sandbox_outage_while_measuring_leaves_no_version_and_the_retry_stores_one(
    workspace, settings, monkeypatch
):
    settings.IOFOLD_EVAL_CHUNK_TRACES = 4
    eval_set, _ = labelled_set(workspace, good=6, bad=6)
    sandbox_unavailable_at_call(monkeypatch, 2)
    generation = start_generation(eval_set=eval_set, enqueue=False)
    with pytest.raises(TransientEvalError):
        run_generation(generation_id=generation.pk)

    generation.refresh_from_db()
    assert generation.status == "queued"
    # The half-measured draft went with its run, chunks and verdicts.
    assert not Eval.objects.filter(eval_set=eval_set).exists()
    assert not EvalRunChunk.objects.exists()

    generation = run_generation(generation_id=generation.pk)
    assert generation.status == "succeeded", generation.error
    assert generation.result.version == 1 and generation.result.agreement == 1.0


def test_a_version_left_unmeasured_by_a_dead_worker_is_removed_when_the_generation_resumes(
    workspace, settings
):
    settings.IOFOLD_EVAL_CHUNK_TRACES = 4
    eval_set, _ = labelled_set(workspace, good=6, bad=6)
    generation = start_generation(eval_set=eval_set, enqueue=False)
    # The worker stored the draft and died while its chunks were being judged.
    candidate = Candidate(code=GOOD_CODE, provider="offline", model="synthesiser", method="")
    draft = store_draft(eval_set=eval_set, candidate=candidate, generation_id=generation.pk)
    Generation.objects.filter(pk=generation.pk).update(status="running", owner=dead_owner())

    generation = run_generation(generation_id=generation.pk)

    assert generation.status == "succeeded", generation.error
    assert not Eval.objects.filter(pk=draft.pk).exists()
    assert list(Eval.objects.filter(eval_set=eval_set).values_list("version", flat=True)) == [1]


def test_the_waiting_task_takes_over_a_chunk_whose_worker_died(
    workspace, settings, django_capture_on_commit_callbacks
):
    settings.IOFOLD_EVAL_CHUNK_TRACES = 3
    eval_set, traces = labelled_set(workspace, good=5, bad=4)
    eval = make_eval(eval_set, version=1)
    with django_capture_on_commit_callbacks():
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="generation")
    first = run.chunks.order_by("index").first()
    EvalRunChunk.objects.filter(pk=first.pk).update(status="running", owner=dead_owner())

    run = work_until_done(run_id=run.pk)

    first.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed) == ("succeeded", 9, 5, 4)
    assert (first.status, first.takeovers) == ("succeeded", 1)
    assert EvalRun.objects.get(pk=run.pk).trigger == "generation"


def test_a_version_being_measured_cannot_be_activated(api_client, owner, workspace):
    eval_set, _ = labelled_set(workspace, good=3, bad=3, user=owner)
    generation = start_generation(eval_set=eval_set, enqueue=False)
    candidate = Candidate(code=GOOD_CODE, provider="offline", model="synthesiser", method="")
    draft = store_draft(eval_set=eval_set, candidate=candidate, generation_id=generation.pk)
    api_client.force_login(owner)

    response = api_client.post(
        reverse("api-eval-activate", kwargs={"pk": draft.pk}),
        headers={"X-Workspace": workspace.slug},
    )

    assert response.status_code == 400
    assert "still being measured" in response.json()["detail"]
    draft.refresh_from_db()
    assert draft.status == "draft" and draft.being_measured
