"""Automatic runs of active evals on new traces, batch runs for CI, and drift."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.execution import continuous
from evals.execution.batch import MAX_WAIT_TRACES, execute_sent_batch
from evals.execution.drift import compute_drift
from evals.execution.runs import execute_run
from evals.models import Eval, EvalExecution, EvalRun
from iofold.pipeline import ingest_traces
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces.models import EvalSet, EvalSetTrace, Feedback, Trace
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db

REFUND_CODE = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if "refund" in output:
        return True, "mentions the refund"
    return False, "no refund in the answer"
"""
GOOD = "Your refund is on its way."
BAD = "I cannot help with that."


def _active_eval(eval_set, *, code=REFUND_CODE, version=1, agreement=0.9, activated_at=None):
    return Eval.objects.create(
        workspace=eval_set.workspace,
        eval_set=eval_set,
        version=version,
        code=code,
        provider="offline",
        status=Eval.Status.ACTIVE,
        agreement=agreement,
        activated_at=activated_at or timezone.now(),
    )


def _ingest(workspace, outputs: dict[str, str], *, name="support", source="api"):
    traces = []
    for i, (external_id, output) in enumerate(outputs.items()):
        data = trace_data(i, output=output)
        data.update(id=external_id, name=name)
        traces.append(data)
    return ingest_traces(workspace=workspace, source=source, traces=traces)


def _verdicts(eval):
    return {
        e.trace.external_id: e.passed
        for e in EvalExecution.objects.filter(eval=eval).select_related("trace")
    }


def test_filter_set_judges_matching_new_traces(workspace):
    eval_set = EvalSetFactory(
        workspace=workspace, source_kind=EvalSet.SourceKind.FILTER, saved_filter={"name": "support"}
    )
    active = _active_eval(eval_set)
    _ingest(workspace, {"a": GOOD, "b": BAD})
    other = _ingest(workspace, {"c": GOOD}, name="billing")
    ids = [*_ingest(workspace, {"d": BAD}).trace_ids, *other.trace_ids]

    runs = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)

    assert [r.trigger for r in runs] == [EvalRun.Trigger.AUTOMATIC]
    continuous.execute_automatic_run(run_id=runs[0].pk)
    # "c" is not a support trace; "a" and "b" were not in this notification.
    assert _verdicts(active) == {"d": False}
    runs[0].refresh_from_db()
    assert (runs[0].status, runs[0].failed, runs[0].passed) == ("succeeded", 1, 0)


def test_starting_an_automatic_run_reads_the_new_traces_once(workspace):
    """The start comes before any chunk can begin: the traces it selected are not looked up
    again to create the run."""
    eval_set = EvalSetFactory(workspace=workspace, source_kind=EvalSet.SourceKind.FILTER)
    _active_eval(eval_set)
    ids = _ingest(workspace, {"a": GOOD, "b": BAD}).trace_ids
    table = connection.ops.quote_name(Trace._meta.db_table)

    with CaptureQueriesContext(connection) as queries:
        runs = continuous.start_automatic_runs(
            workspace_id=workspace.pk, trace_ids=ids, enqueue=False
        )

    reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and table in q["sql"]]
    assert len(reads) == 1
    assert runs[0].trace_ids == ids and runs[0].total == 2


def test_manual_set_judges_only_its_picked_traces(workspace):
    eval_set = EvalSetFactory(workspace=workspace, source_kind=EvalSet.SourceKind.MANUAL)
    active = _active_eval(eval_set)
    result = _ingest(workspace, {"a": GOOD, "b": BAD})
    picked = EvalSetTrace.objects.create(
        workspace=workspace, eval_set=eval_set, trace_id=result.trace_ids[0]
    )

    runs = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=result.trace_ids, enqueue=False
    )
    continuous.execute_automatic_run(run_id=runs[0].pk)

    assert _verdicts(active) == {picked.trace.external_id: True}


def test_draft_and_archived_sets_do_not_run(workspace):
    draft_set = EvalSetFactory(workspace=workspace, source_kind=EvalSet.SourceKind.FILTER)
    Eval.objects.create(workspace=workspace, eval_set=draft_set, version=1, code=REFUND_CODE)
    archived = EvalSetFactory(
        workspace=workspace, source_kind=EvalSet.SourceKind.FILTER, archived_at=timezone.now()
    )
    _active_eval(archived)
    result = _ingest(workspace, {"a": GOOD})

    runs = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=result.trace_ids, enqueue=False
    )

    assert runs == []


def test_repeated_notification_runs_nothing_twice_but_changed_traces_again(workspace):
    eval_set = EvalSetFactory(workspace=workspace, source_kind=EvalSet.SourceKind.FILTER)
    active = _active_eval(eval_set)
    ids = _ingest(workspace, {"a": GOOD, "b": BAD}).trace_ids
    first = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)
    continuous.execute_automatic_run(run_id=first[0].pk)

    again = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)
    changed = _ingest(workspace, {"b": "Here is your refund."}).trace_ids
    rerun = continuous.start_automatic_runs(workspace_id=workspace.pk, trace_ids=ids, enqueue=False)
    continuous.execute_automatic_run(run_id=rerun[0].pk)

    assert again == []
    assert len(changed) == 1 and rerun[0].trace_ids == changed
    assert _verdicts(active) == {"a": True, "b": True}
    assert EvalExecution.objects.filter(eval=active).count() == 2


def test_ingestion_queues_one_task_after_commit_when_an_eval_is_active(
    workspace, monkeypatch, django_capture_on_commit_callbacks
):
    from evals import tasks

    queued = []

    def send(args, kwargs=None, **options):
        queued.append((args, options.get("argsrepr")))

    monkeypatch.setattr(tasks.run_automatic_evals_task, "apply_async", send)
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(workspace, {"before": GOOD})
    assert queued == []  # no active eval yet: no broker round trip

    _active_eval(EvalSetFactory(workspace=workspace, source_kind=EvalSet.SourceKind.FILTER))
    with django_capture_on_commit_callbacks(execute=True):
        result = _ingest(workspace, {"x": GOOD, "y": BAD})
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(workspace, {"x": GOOD, "y": BAD})  # unchanged: nothing new to judge

    # The worker's log and monitors show how many ids, not a thousand characters of them.
    assert queued == [((workspace.pk, result.trace_ids), f"({workspace.pk}, <2 trace ids>)")]
    assert len(result.trace_ids) == 2


# --- batch runs ------------------------------------------------------------------------------


def _token(workspace, role="member"):
    owner = MembershipFactory(workspace=workspace, user=UserFactory()).user
    return issue_token(workspace=workspace, name="ci", created_by=owner, role=role)[1]


def _run_url(eval):
    return f"/api/v1/evals/{eval.pk}/run"


SENT_SUMMARY = {"total": 3, "passed": 1, "failed": 1, "errors": 0, "invalid": 1, "ok": False}


def _sent_batch():
    broken = {"id": "x"}  # not a trace: reported, not fatal
    return {"traces": [trace_data(1, output=GOOD), trace_data(2, output=BAD), broken]}


def _assert_sent_verdicts(body):
    assert body["summary"] == SENT_SUMMARY
    assert [(r["trace_id"], r["passed"]) for r in body["results"]] == [
        ("t1", True),
        ("t2", False),
        ("x", None),
    ]
    assert body["results"][1]["reason"] == "no refund in the answer"
    assert "timestamp" in body["results"][2]["error"]


def test_batch_api_queues_sent_traces_as_a_run_to_poll(
    workspace, api_client, django_capture_on_commit_callbacks
):
    eval = _active_eval(EvalSetFactory(workspace=workspace))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(workspace)}")

    with django_capture_on_commit_callbacks() as queued:
        response = api_client.post(_run_url(eval), _sent_batch(), format="json")

    assert response.status_code == 202, response.content
    run = response.json()
    assert (run["status"], run["total"], run["summary"], run["results"]) == (
        "queued",
        3,
        None,
        None,
    )
    assert response["Location"] == f"/api/v1/eval-runs/{run['id']}/"
    assert len(queued) == 1  # judged on a worker, not in the request
    assert api_client.get(response["Location"]).json()["status"] == "queued"

    execute_sent_batch(run_id=run["id"])  # what the worker's task does

    polled = api_client.get(response["Location"]).json()
    assert (polled["status"], polled["done"], polled["failed"]) == ("succeeded", 3, 1)
    _assert_sent_verdicts(polled)
    assert not EvalExecution.objects.exists()  # sent traces are judged, not stored


def test_batch_api_with_wait_answers_with_the_verdicts(workspace, api_client):
    eval = _active_eval(EvalSetFactory(workspace=workspace))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(workspace)}")

    response = api_client.post(_run_url(eval), {**_sent_batch(), "wait": True}, format="json")

    assert response.status_code == 200, response.content
    _assert_sent_verdicts(response.json())
    assert not EvalExecution.objects.exists()


def test_batch_api_with_wait_is_for_small_batches(workspace, api_client):
    eval = _active_eval(EvalSetFactory(workspace=workspace))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(workspace)}")
    traces = [trace_data(n) for n in range(MAX_WAIT_TRACES + 1)]

    response = api_client.post(_run_url(eval), {"traces": traces, "wait": True}, format="json")

    assert response.status_code == 400
    assert "leave it out to get a run to poll" in str(response.json())
    assert not EvalRun.objects.exists()


def test_batch_api_on_stored_traces_stores_executions(
    workspace, api_client, django_capture_on_commit_callbacks
):
    eval = _active_eval(EvalSetFactory(workspace=workspace))
    traces = [TraceFactory(workspace=workspace, data=trace_data(n, output=GOOD)) for n in (1, 2)]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(workspace)}")

    with django_capture_on_commit_callbacks():
        response = api_client.post(
            _run_url(eval), {"trace_ids": [t.pk for t in traces]}, format="json"
        )
    assert response.status_code == 202, response.content
    execute_run(run_id=response.json()["id"])

    polled = api_client.get(response["Location"]).json()
    assert polled["summary"]["ok"] is True and polled["summary"]["total"] == 2
    assert [r["trace_id"] for r in polled["results"]] == [t.external_id for t in traces]
    assert EvalExecution.objects.filter(eval=eval, passed=True).count() == 2
    assert EvalRun.objects.get(eval=eval).trigger == EvalRun.Trigger.API

    waited = api_client.post(
        _run_url(eval), {"trace_ids": [traces[0].pk], "wait": True}, format="json"
    )
    assert waited.status_code == 200 and waited.json()["summary"]["passed"] == 1


def test_batch_api_refuses_other_workspaces(workspace, other_workspace, api_client):
    eval = _active_eval(EvalSetFactory(workspace=workspace))
    foreign_trace = TraceFactory(workspace=other_workspace)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(other_workspace)}")

    response = api_client.post(_run_url(eval), {"traces": [trace_data(1)]}, format="json")
    assert response.status_code == 404

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(workspace)}")
    response = api_client.post(_run_url(eval), {"trace_ids": [foreign_trace.pk]}, format="json")
    assert response.status_code == 400
    assert "No trace with id" in response.json()["detail"]


def test_batch_api_needs_traces_or_ids(workspace, api_client):
    eval = _active_eval(EvalSetFactory(workspace=workspace))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_token(workspace)}")

    assert api_client.post(_run_url(eval), {}, format="json").status_code == 400
    viewer = f"Bearer {_token(workspace, role='viewer')}"
    api_client.credentials(HTTP_AUTHORIZATION=viewer)
    response = api_client.post(_run_url(eval), {"traces": [trace_data(1)]}, format="json")
    assert response.status_code == 403


# --- drift -----------------------------------------------------------------------------------


def _label(eval_set, trace, rating, when, user):
    feedback = Feedback.objects.create(
        workspace=eval_set.workspace, trace=trace, eval_set=eval_set, user=user, rating=rating
    )
    Feedback.objects.filter(pk=feedback.pk).update(created_at=when, updated_at=when)


def _constructed(workspace, *, agree_by_day: list[tuple[int, int]], baseline=0.9):
    """An eval activated on day 0, and per later day (agreeing, disagreeing) labels."""
    user = MembershipFactory(workspace=workspace, user=UserFactory()).user
    eval_set = EvalSetFactory(workspace=workspace)
    start = timezone.now() - dt.timedelta(days=len(agree_by_day) + 1)
    eval = _active_eval(eval_set, agreement=baseline, activated_at=start)
    # Labels before activation do not count.
    early = TraceFactory(workspace=workspace)
    _label(eval_set, early, "negative", start - dt.timedelta(days=1), user)
    EvalExecution.objects.create(workspace=workspace, eval=eval, trace=early, passed=True)
    for day, (agree, disagree) in enumerate(agree_by_day, start=1):
        when = start + dt.timedelta(days=day)
        for i in range(agree + disagree):
            trace = TraceFactory(workspace=workspace)
            _label(eval_set, trace, "positive", when, user)
            EvalExecution.objects.create(
                workspace=workspace, eval=eval, trace=trace, passed=i < agree
            )
    return eval


def test_drift_follows_later_labels_per_day(workspace):
    eval = _constructed(workspace, agree_by_day=[(9, 1), (8, 2), (5, 5)])

    drift = compute_drift(eval=eval, margin=0.10)

    assert drift.baseline == 0.9
    assert drift.labels == 30
    assert [p.labels for p in drift.points] == [10, 10, 10]
    assert [p.agreement for p in drift.points] == [0.9, 0.8, 0.5]
    assert drift.points[-1].cumulative == pytest.approx(22 / 30)
    assert drift.current == pytest.approx(22 / 30)
    assert drift.drifting  # 0.733 < 0.9 - 0.1


def test_no_drift_within_the_margin_or_with_too_few_labels(workspace, other_workspace, settings):
    steady = _constructed(workspace, agree_by_day=[(9, 1), (8, 2)])
    settings.IOFOLD_DRIFT_MARGIN = 0.10
    assert compute_drift(eval=steady).current == pytest.approx(0.85)
    assert not compute_drift(eval=steady).drifting
    settings.IOFOLD_DRIFT_MARGIN = 0.04
    assert compute_drift(eval=steady).drifting

    few = _constructed(other_workspace, agree_by_day=[(0, 3)])
    assert compute_drift(eval=few, margin=0.1).current == 0.0
    assert not compute_drift(eval=few, margin=0.1).drifting  # 3 < 10 labels


def test_dashboard_of_an_eval_without_later_labels_says_so_once(workspace, owner, login):
    eval = _active_eval(EvalSetFactory(workspace=workspace), agreement=0.88)

    html = login(owner).get(f"/w/{workspace.slug}/evals/dashboard/").content.decode()

    drift = html[html.index(f'data-testid="drift-{eval.eval_set_id}"') :].split("</section>")[0]
    assert "at activation 88% · no labels given since" in " ".join(drift.split())
    assert "over 0 later labels" not in drift and "—" not in drift
    assert "No labels since activation yet." not in drift  # said once, above


def test_dashboard_and_drift_pages_show_the_figures(workspace, owner, login):
    eval = _constructed(workspace, agree_by_day=[(9, 1), (5, 5)])
    client = login(owner)

    page = client.get(f"/w/{workspace.slug}/evals/dashboard/")
    drift_page = client.get(f"/w/{workspace.slug}/evals/sets/{eval.eval_set_id}/drift/")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="pass-rate-chart"' in html and "<polyline" in html
    assert 'data-testid="drift-warning"' in html
    assert 'data-testid="recent-failures"' in html
    assert drift_page.status_code == 200
    assert "70%" in drift_page.content.decode()  # 14 of 20 later labels agree


def test_drift_keeps_the_agreement_at_activation_when_the_active_eval_is_measured_again(
    openai_workspace, fake_llm
):
    """v1 agrees with every label when it is activated; of 10 later labels it gets 5
    wrong. Testing it again (or refining it, which measures it first) folds those labels
    into its agreement, which must not become the baseline they are compared with."""
    from evals.execution.runs import run_unjudged_labels
    from evals.metrics.measure import score_eval_version
    from tests.evals.builders import GOOD, REFUSAL_CODE, fenced, generate, labelled_set

    workspace = openai_workspace
    eval_set, _ = labelled_set(workspace, good=6, bad=6)
    fake_llm.push_text(fenced(REFUSAL_CODE))
    v1 = generate(eval_set).result
    assert v1.status == Eval.Status.ACTIVE and v1.agreement == 1.0
    user = Feedback.objects.first().user
    for n in range(10):
        trace = TraceFactory(workspace=workspace, data=trace_data(82_000 + n, output=GOOD))
        rating = "positive" if n % 2 else "negative"  # v1 passes them all: half are wrong
        Feedback.objects.create(
            workspace=workspace, trace=trace, eval_set=eval_set, user=user, rating=rating
        )
    run_unjudged_labels(eval=v1)
    before = compute_drift(eval=v1, margin=0.1)
    assert (before.baseline, before.current, before.labels) == (1.0, 0.5, 10)

    v1 = score_eval_version(eval=v1)

    assert v1.agreement == pytest.approx(17 / 22)  # the later labels are in its figures now
    after = compute_drift(eval=v1, margin=0.1)
    assert (after.baseline, after.current, after.drifting) == (1.0, 0.5, True)
