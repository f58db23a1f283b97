"""The continuous evaluation's circuit breaker: an active eval that times out on most new
traces pauses its eval set; resuming or activating another version runs what waited.

Real nsjail, with a short per-trace timeout so a hanging trace costs 0.3 s, not 5 s.
"""

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.urls import reverse
from django.utils import timezone

from evals.execution import breaker, continuous
from evals.models import Activity, ContinuousPause, Eval, EvalExecution, EvalRun
from evals.versions.services import activate_or_roll_back
from iofold.lib.runs import RunStatus
from iofold.pipeline import ingest_traces
from tests.traces.factories import EvalSetFactory, trace_data
from traces.models import EvalSet

pytestmark = pytest.mark.django_db

# Behaves on the labelled traces; hangs on the new ones that say "slow".
HANGS_ON_SLOW = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if "slow" in output:
        while True:
            pass
    return "refund" in output, "looked for a refund"
"""
FIXED = """def eval_fn(trace):
    return "refund" in str(trace.get("output") or ""), "looked for a refund"
"""


@pytest.fixture(autouse=True)
def _short_timeouts(settings):
    settings.SANDBOX_TIMEOUT_PER_TRACE = 0.3


def _active(workspace, *, code=HANGS_ON_SLOW, name="support"):
    eval_set = EvalSetFactory(
        workspace=workspace,
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={"name": name},
    )
    eval = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code=code,
        provider="offline",
        status=Eval.Status.ACTIVE,
        agreement=0.9,
        activated_at=timezone.now(),
    )
    return eval_set, eval


def _ingest(workspace, outputs: list[str], *, prefix: str, name="support") -> list[int]:
    traces = []
    for i, output in enumerate(outputs):
        data = trace_data(i, output=output)
        data.update(id=f"{prefix}{i}", name=name)
        traces.append(data)
    return ingest_traces(workspace=workspace, source="api", traces=traces).trace_ids


def _sync(workspace, outputs, *, prefix, name="support") -> list[EvalRun]:
    """New traces arrive and the automatic runs execute, as the worker would."""
    ids = _ingest(workspace, outputs, prefix=prefix, name=name)
    runs = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)
    for run in runs:
        continuous.execute_automatic_run(run_id=run.pk)
    return [EvalRun.objects.get(pk=r.pk) for r in runs]


def _judged(eval) -> int:
    return EvalExecution.objects.filter(eval=eval).count()


def _trip(workspace, eval):
    # 19 timeouts of 19: under the 20 the rule asks for, the set keeps running.
    _sync(workspace, ["slow"] * 19, prefix="a")
    assert breaker.pause_of(eval.eval_set) is None
    # 21 of the last 23 (2 answered): paused.
    _sync(workspace, ["slow", "slow", "refund", "refund"], prefix="b")
    pause = breaker.pause_of(eval.eval_set)
    assert pause is not None
    return pause


def test_a_hanging_eval_trips_the_breaker_and_further_traces_wait(workspace, mailoutbox, owner):
    eval_set, eval = _active(workspace)

    pause = _trip(workspace, eval)

    assert pause.reason == "the eval timed out on 21 of the last 23 traces"
    assert (pause.failures, pause.timeouts, pause.window) == (21, 21, 23)
    assert len(pause.example_trace_ids) == breaker.EXAMPLES
    activity = Activity.objects.for_workspace(workspace).get(verb=Activity.Verb.PAUSED)
    assert activity.eval_set_id == eval_set.pk and activity.reason == pause.reason
    assert [m.to for m in mailoutbox] == [[owner.email]]
    assert "timed out on 21 of the last 23" in mailoutbox[0].body
    assert (
        reverse("traces:evalset_detail", args=[workspace.slug, eval_set.pk]) in mailoutbox[0].body
    )

    # The next sync's traces are not sent to the sandbox: their run waits, queued.
    held = _sync(workspace, ["slow"] * 3, prefix="c")
    assert [r.status for r in held] == [RunStatus.QUEUED]
    assert _judged(eval) == 23


def test_resuming_judges_the_traces_that_waited(
    workspace, member, login, django_capture_on_commit_callbacks, monkeypatch
):
    eval_set, eval = _active(workspace)
    _trip(workspace, eval)
    [held] = _sync(workspace, ["refund", "nothing"], prefix="c")
    sent = []
    monkeypatch.setattr(continuous, "enqueue_run", lambda pk, automatic, **_: sent.append(pk))

    with django_capture_on_commit_callbacks(execute=True):
        page = login(member).post(
            reverse("evals:resume_continuous", args=[workspace.slug, eval_set.pk])
        )

    assert page.status_code == 302
    assert breaker.pause_of(eval_set) is None
    assert sent == [held.pk]
    continuous.execute_automatic_run(run_id=held.pk)  # what the worker does with it
    held.refresh_from_db()
    assert (held.status, held.passed, held.failed) == (RunStatus.SUCCEEDED, 1, 1)
    resumed = Activity.objects.for_workspace(workspace).get(verb=Activity.Verb.RESUMED)
    assert resumed.actor == member
    # The failures before the resume do not trip it again on the next traces.
    _sync(workspace, ["slow"], prefix="d")
    assert breaker.pause_of(eval_set) is None


def test_activating_a_new_version_clears_the_pause_and_judges_the_waiting_traces(
    workspace, django_capture_on_commit_callbacks, monkeypatch
):
    eval_set, eval = _active(workspace)
    _trip(workspace, eval)
    [held] = _sync(workspace, ["refund", "nothing"], prefix="c")
    fixed = Eval.objects.create(
        workspace=workspace, eval_set=eval_set, version=2, code=FIXED, provider="offline"
    )
    # The broker's task starts the new version's runs; here they run in the test.
    queued = []
    monkeypatch.setattr(
        continuous, "enqueue_automatic_runs", lambda ws, ids: queued.append((ws, ids))
    )

    with django_capture_on_commit_callbacks(execute=True):
        activate_or_roll_back(eval=fixed)

    assert breaker.pause_of(eval_set) is None
    held.refresh_from_db()
    assert held.status == RunStatus.FAILED and "v1 was replaced" in held.error
    assert queued == [(workspace.pk, held.trace_ids)]
    for run in continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=queued[0][1], enqueue=False
    ):
        continuous.execute_automatic_run(run_id=run.pk)
    assert {e.trace.external_id: e.passed for e in fixed.executions.all()} == {
        "c0": True,
        "c1": False,
    }


def _sandbox_errors() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("iofold_sandbox_traces_total", {"outcome": "error"}) or 0.0


def test_the_batch_after_the_one_that_trips_the_breaker_never_enters_the_sandbox(
    workspace, monkeypatch
):
    """Before: the next batch went to the sandbox while the tripping one was written, and
    hung there to its end once the set was paused; its verdicts were dropped and judged
    again after the resume."""
    from evals.execution import runs

    monkeypatch.setattr(runs, "EXECUTE_CHUNK", 10)
    eval_set, eval = _active(workspace)
    before = _sandbox_errors()

    [run] = _sync(workspace, ["slow"] * 40, prefix="a")

    # The second batch trips it (20 timeouts of 20); the third is not judged at all.
    assert breaker.pause_of(eval_set) is not None
    assert _sandbox_errors() - before == 20
    assert (run.status, _judged(eval)) == (RunStatus.QUEUED, 20)

    # Nothing is lost: after the resume the run judges the 20 traces left, each once.
    continuous.resume(eval_set=eval_set)
    continuous.execute_automatic_run(run_id=run.pk)  # what the worker does with it
    run.refresh_from_db()
    assert (run.status, run.done, _judged(eval)) == (RunStatus.SUCCEEDED, 40, 40)
    assert _sandbox_errors() - before == 40


def test_a_split_runs_next_chunk_waits_for_the_resume_once_the_breaker_trips(
    workspace, monkeypatch, settings
):
    """The same with a run split into chunks: the worker carrying on into the next chunk
    no longer sends its first batch to the sandbox after the pause; the chunk waits."""
    from evals.execution import chunks
    from evals.models import EvalRunChunk

    monkeypatch.setattr(chunks, "EXECUTE_CHUNK", 10)
    settings.IOFOLD_EVAL_CHUNK_TRACES = 20
    eval_set, eval = _active(workspace)
    ids = _ingest(workspace, ["slow"] * 40, prefix="a")
    [run] = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids)
    first, second = EvalRunChunk.objects.filter(run=run).order_by("index")
    before = _sandbox_errors()

    chunks.execute_chunk(chunk_id=first.pk, carry_on=True)  # as its task does

    assert breaker.pause_of(eval_set) is not None
    assert _sandbox_errors() - before == 20 and _judged(eval) == 20
    second.refresh_from_db()
    assert (second.status, second.judged) == (RunStatus.QUEUED, 0)


def test_another_workspaces_eval_keeps_running(workspace, other_workspace):
    _, eval = _active(workspace)
    _, others = _active(other_workspace, code=FIXED)
    _trip(workspace, eval)

    [run] = _sync(other_workspace, ["refund", "slow"], prefix="o")

    assert run.status == RunStatus.SUCCEEDED and _judged(others) == 2
    assert not ContinuousPause.objects.for_workspace(other_workspace).exists()


def test_an_eval_that_fails_on_a_minority_of_traces_keeps_running(workspace):
    _, eval = _active(workspace)
    # 20 timeouts, but of 41 verdicts: under half.
    _sync(workspace, ["refund"] * 21 + ["slow"] * 20, prefix="m")
    assert breaker.pause_of(eval.eval_set) is None


def test_the_set_page_and_the_api_show_the_pause(workspace, owner, viewer, login, api_client):
    eval_set, eval = _active(workspace)
    pause = _trip(workspace, eval)
    url = reverse("traces:evalset_detail", args=[workspace.slug, eval_set.pk])

    page = login(owner).get(url).content.decode()

    assert "Paused: the eval timed out on 21 of the last 23 traces" in page
    assert page.count('data-testid="pause-example"') == breaker.EXAMPLES
    cell = reverse("evals:cell", args=[workspace.slug, eval.pk, pause.example_trace_ids[0]])
    assert cell in page and 'data-testid="resume-continuous"' in page

    # A viewer sees why, but has no Resume, and cannot post it.
    page = login(viewer).get(url).content.decode()
    assert "Paused: the eval timed out" in page and "resume-continuous" not in page
    refused = login(viewer).post(
        reverse("evals:resume_continuous", args=[workspace.slug, eval_set.pk])
    )
    assert refused.status_code == 403 and breaker.pause_of(eval_set) is not None

    api_client.force_authenticate(owner)
    body = api_client.get(
        f"/api/v1/eval-sets/{eval_set.pk}/continuous/", HTTP_X_WORKSPACE=workspace.slug
    ).json()
    assert body["paused"] is True
    assert body["pause"]["message"] == "Paused: the eval timed out on 21 of the last 23 traces"
    assert body["pause"]["example_trace_ids"] == pause.example_trace_ids
    body = api_client.post(
        f"/api/v1/eval-sets/{eval_set.pk}/continuous/resume/", HTTP_X_WORKSPACE=workspace.slug
    ).json()
    assert body["paused"] is False and body["pause"] is None


def test_another_workspace_cannot_see_or_resume_the_pause(workspace, outsider, login, api_client):
    eval_set, eval = _active(workspace)
    _trip(workspace, eval)
    resume = reverse("evals:resume_continuous", args=[workspace.slug, eval_set.pk])
    assert login(outsider).post(resume).status_code == 404
    api_client.force_authenticate(outsider)
    response = api_client.post(f"/api/v1/eval-sets/{eval_set.pk}/continuous/resume/")
    assert response.status_code == 404 and breaker.pause_of(eval_set) is not None


def test_a_run_stopped_by_the_soft_time_limit_says_so(workspace, monkeypatch):
    from evals.tasks import run_automatic_eval_task

    _, eval = _active(workspace, code=FIXED)
    run = EvalRun.objects.create(
        workspace=workspace, eval=eval, trigger=EvalRun.Trigger.AUTOMATIC, trace_ids=[], total=0
    )

    def stopped(**kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(continuous, "execute_automatic_run", stopped)
    run_automatic_eval_task.apply(args=[run.pk])

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "time limit" in run.error and "internal error" not in run.error


def test_held_runs_are_left_out_of_the_sweep_and_the_backlog_alert(
    workspace, client, monkeypatch, django_capture_on_commit_callbacks
):
    """Held runs wait for the resume: the sweep does not send them every 10 minutes, and
    the "runs wait for a worker" gauge does not page an operator about them."""
    from evals.execution import runs as runs_module

    eval_set, eval = _active(workspace, code=FIXED)
    held = EvalRun.objects.create(
        workspace=workspace, eval=eval, trigger=EvalRun.Trigger.AUTOMATIC, trace_ids=[], total=0
    )
    ContinuousPause.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        eval=eval,
        failures=20,
        timeouts=20,
        window=20,
        reason="the eval timed out on 20 of the last 20 traces",
    )
    sent = []
    monkeypatch.setattr(runs_module, "enqueue_run", lambda pk, automatic, **_: sent.append(pk))

    assert runs_module.recover_eval_runs(include_queued=True) == 0
    text = client.get("/metrics").content.decode()
    assert 'iofold_runs_queued{kind="eval"} 0.0' in text
    assert 'iofold_eval_sets_paused{workspace="acme"} 1.0' in text

    continuous.resume(eval_set=eval_set)
    with django_capture_on_commit_callbacks(execute=True):
        assert runs_module.recover_eval_runs(include_queued=True) == 1
    assert sent == [held.pk]
