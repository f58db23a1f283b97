"""Drift counts only fresh evidence, and says how many traces the eval errored on.

The version's agreement at activation was measured on the labels given before it: a trace
labelled then is no new evidence after it, whatever happens to its label later. Traces the
eval errored on in the sandbox get no verdict, so they are left out, and the page and the
API say how many.
"""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.execution.drift import compute_drift
from evals.execution.runs import run_eval_now
from evals.models import Eval, EvalExecution
from evals.versions.services import activate_eval
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces import services
from traces.models import Feedback
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db

# Passes answers that mention the refund; raises (a sandbox error, no verdict) on "boom".
CODE = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if "boom" in output:
        raise RuntimeError("cannot read this answer")
    if "refund" in output:
        return True, "mentions the refund"
    return False, "no refund in the answer"
"""
GOOD = "Your refund is on its way."
BOOM = "boom"


def _member(workspace):
    return MembershipFactory(workspace=workspace, user=UserFactory()).user


def _traces(eval_set, outputs):
    traces = [
        TraceFactory(workspace=eval_set.workspace, data=trace_data(70_000 + i, output=out))
        for i, out in enumerate(outputs)
    ]
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    return traces


def _label(eval_set, trace, user, rating):
    return services.record_feedback(eval_set=eval_set, trace=trace, user=user, rating=rating)[0]


@pytest.fixture
def world(workspace, owner):
    """v1 activated after four labels it was measured on, each touched again after it.

    Later: 3 fresh traces it agrees with, 1 it gets wrong, 2 it errors on in the sandbox
    and 1 it has not judged yet.
    """
    alice, bob, carol = _member(workspace), _member(workspace), _member(workspace)
    eval_set = EvalSetFactory(workspace=workspace)
    before = _traces(eval_set, [GOOD] * 4)
    for trace in before:
        _label(eval_set, trace, alice, "positive")
    v1 = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code=CODE,
        provider="offline",
        agreement=1.0,
    )
    v1 = activate_eval(eval=v1)
    edited, relabelled, outvoted, kept = before
    # Alice changes her mind: she now calls these bad (v1 passes them).
    services.edit_label(
        feedback=Feedback.objects.get(trace=edited, user=alice),
        actor=owner,
        role="owner",
        rating="negative",
        note="",
    )
    services.remove_label(
        feedback=Feedback.objects.get(trace=relabelled, user=alice), actor=owner, role="owner"
    )
    _label(eval_set, relabelled, alice, "negative")
    _label(eval_set, outvoted, bob, "negative")
    _label(eval_set, outvoted, carol, "negative")
    fresh = _traces(eval_set, [GOOD, GOOD, GOOD, GOOD, BOOM, BOOM, GOOD])
    *agreeing, wrong, boom1, boom2, unjudged = fresh
    for trace in agreeing:
        _label(eval_set, trace, bob, "positive")
    _label(eval_set, wrong, bob, "negative")
    for trace in (boom1, boom2, unjudged):
        _label(eval_set, trace, bob, "positive")
    run_eval_now(eval=v1, traces=[*before, *agreeing, wrong, boom1, boom2])
    return {"eval": v1, "errored": [boom1.pk, boom2.pk], "kept": kept}


def test_labels_given_before_activation_never_count_as_later_ones(world):
    """The edited, the removed-and-given-again and the outvoted pre-activation labels
    would make 3 more disagreements (agreement 3/7): they are what v1 was measured on."""
    drift = compute_drift(eval=world["eval"], margin=0.1)

    assert drift.baseline == 1.0
    assert (drift.labels, drift.current) == (4, 0.75)  # 3 of the 4 fresh traces
    assert drift.unjudged == 1
    assert [p.labels for p in drift.points] == [4]


def test_traces_the_eval_errored_on_are_counted_apart(world):
    drift = compute_drift(eval=world["eval"], margin=0.1)

    assert EvalExecution.objects.filter(eval=world["eval"], passed__isnull=True).count() == 2
    assert drift.errored == 2
    assert sorted(drift.errored_trace_ids) == world["errored"]
    assert drift.labels == 4  # not in the agreement either


def test_drift_page_says_how_many_errored_with_links_and_what_counts(world, owner, login):
    eval = world["eval"]
    client = login(owner)

    page = client.get(f"/w/{eval.workspace.slug}/evals/sets/{eval.eval_set_id}/drift/")
    dashboard = client.get(f"/w/{eval.workspace.slug}/evals/dashboard/")

    html = " ".join(page.content.decode().split())
    assert page.status_code == 200
    assert 'data-testid="drift-current">75%' in html
    assert "2 traces errored and are not counted" in html
    for trace_id in world["errored"]:
        assert f'href="/w/{eval.workspace.slug}/evals/{eval.pk}/traces/{trace_id}/"' in html
    assert "Counts only traces first labelled after v1 was activated" in html
    board = " ".join(dashboard.content.decode().split())
    assert "over 4 later labels · " in board
    assert "2 traces errored and are not counted" in board


def test_drift_api_carries_the_errored_count(world, api_client):
    eval = world["eval"]
    creator = _member(eval.workspace)
    token = issue_token(workspace=eval.workspace, name="ci", created_by=creator, role="viewer")[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = api_client.get(f"/api/v1/eval-sets/{eval.eval_set_id}/drift/")

    assert response.status_code == 200
    drift = response.json()["drift"]
    assert (drift["version"], drift["labels"], drift["current"]) == (1, 4, 0.75)
    assert (drift["errored"], drift["unjudged"]) == (2, 1)
    assert sorted(drift["errored_trace_ids"]) == world["errored"]


def test_drift_api_of_a_set_without_an_active_eval(workspace, api_client):
    eval_set = EvalSetFactory(workspace=workspace)
    token = issue_token(
        workspace=workspace, name="ci", created_by=_member(workspace), role="viewer"
    )[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = api_client.get(f"/api/v1/eval-sets/{eval_set.pk}/drift/")

    assert response.status_code == 200 and response.json()["drift"] is None


def _grow(eval, n):
    """Add n fresh labelled traces with a verdict and n the eval errored on."""
    user = _member(eval.workspace)
    for _ in range(n):
        for passed in (True, None):
            trace = TraceFactory(workspace=eval.workspace)
            Feedback.objects.create(
                workspace=eval.workspace,
                trace=trace,
                eval_set=eval.eval_set,
                user=user,
                rating="positive",
            )
            EvalExecution.objects.create(
                workspace=eval.workspace, eval=eval, trace=trace, passed=passed
            )


def test_queries_do_not_grow_with_the_traces(workspace, owner, login):
    eval = Eval.objects.create(
        workspace=workspace,
        eval_set=EvalSetFactory(workspace=workspace),
        version=1,
        code=CODE,
        provider="offline",
        status=Eval.Status.ACTIVE,
        agreement=0.9,
        activated_at=timezone.now(),
    )
    client = login(owner)
    url = f"/w/{workspace.slug}/evals/sets/{eval.eval_set_id}/drift/"
    client.get(url)  # the session and the workspace's cached figures, read once
    counts, total = [], 0
    for n in (2, 20):
        _grow(eval, n)
        total += n
        with CaptureQueriesContext(connection) as drift_queries:
            drift = compute_drift(eval=eval)
        with CaptureQueriesContext(connection) as page_queries:
            assert client.get(url).status_code == 200
        assert (drift.labels, drift.errored) == (total, total)
        counts.append((len(drift_queries), len(page_queries)))
    assert counts[0] == counts[1]
    assert counts[0][0] == 1  # one grouped query


def test_drift_reads_one_verdict_per_later_label_and_no_trace(world):
    """The eval set pages and the dashboard compute drift on every view. It reads the
    verdicts of the later-labelled traces only (one index probe each): not those of the
    traces labelled before the activation, most of a set's labels, nor the traces'
    table, whose ids were read whole for each set (at 100,000 traces, bench/scale.py)."""
    if connection.vendor != "postgresql":
        pytest.skip("the plan's loops are PostgreSQL's EXPLAIN ANALYZE")
    with CaptureQueriesContext(connection) as captured:
        drift = compute_drift(eval=world["eval"], margin=0.1)
    (sql,) = [q["sql"] for q in captured if 'FROM "traces_feedback"' in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    scans = [n for n in nodes(plan[0]["Plan"]) if "Relation Name" in n]
    verdict_probes = sum(
        n["Actual Loops"] for n in scans if n["Relation Name"] == "evals_evalexecution"
    )
    later = drift.labels + drift.unjudged + drift.errored
    assert "traces_trace" not in {n["Relation Name"] for n in scans}
    assert verdict_probes == later == 7  # not the 4 traces labelled before
