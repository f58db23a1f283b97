"""The shadow comparison counts only fresh labels, as drift does, and shows errors.

A candidate is trained (and the active version measured) on the labels given before it;
such a trace judged again as new traffic (its source changed it) is no evidence between
the two, whatever happens to its label afterwards. Traces a version errored on count as
wrong for it, and the page says how many.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.execution import continuous
from evals.execution.shadow import compare_shadow
from evals.models import Eval
from evals.versions import services as version_services
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces import services
from traces.models import Feedback, Trace

pytestmark = pytest.mark.django_db

# The active version passes answers that mention the refund.
ACTIVE = """def eval_fn(trace):
    return "refund" in str(trace.get("output") or ""), "refund?"
"""
# The candidate, refined on labels calling those answers bad, fails them; raises on "boom".
CANDIDATE = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if "boom" in output:
        raise RuntimeError("cannot read this answer")
    return "refund" not in output, "no refund?"
"""
REFUND = "Your refund is on its way."
PLAIN = "Thanks for writing."


def _member(workspace):
    return MembershipFactory(workspace=workspace, user=UserFactory()).user


def _traces(eval_set, outputs, start):
    traces = [
        TraceFactory(workspace=eval_set.workspace, data=trace_data(start + i, output=out))
        for i, out in enumerate(outputs)
    ]
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    return traces


def _label(eval_set, trace, user, rating):
    return services.record_feedback(eval_set=eval_set, trace=trace, user=user, rating=rating)[0]


def _judge_new_traffic(workspace, traces):
    runs = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=[t.pk for t in traces], enqueue=False
    )
    for run in runs:
        continuous.execute_automatic_run(run_id=run.pk)


@pytest.fixture
def world(workspace, owner):
    """v1 active, v2 refined on twelve labels calling refund answers bad, put in shadow.

    Those twelve traces change at the source and both versions judge them again as new
    traffic; four of their labels are edited, removed and given again, or joined by another
    reviewer's. Six fresh traces labelled later: v1 right on 4; v2 right on 2, errored on 1.
    """
    alice, bob, carol = _member(workspace), _member(workspace), _member(workspace)
    eval_set = EvalSetFactory(workspace=workspace)
    trained = _traces(eval_set, [REFUND] * 12, 80_000)
    v1 = version_services.activate_eval(
        eval=Eval.objects.create(
            workspace=workspace, eval_set=eval_set, version=1, code=ACTIVE, provider="offline"
        )
    )
    for trace in trained:
        _label(eval_set, trace, alice, "negative")
    v2 = version_services.shadow_eval(
        eval=Eval.objects.create(
            workspace=workspace, eval_set=eval_set, version=2, code=CANDIDATE, provider="offline"
        )
    )
    edited, relabelled, seconded, _ = trained[:4]
    services.edit_label(
        feedback=Feedback.objects.get(trace=edited, user=alice),
        actor=owner,
        role="owner",
        rating="negative",
        note="still bad",
    )
    services.remove_label(
        feedback=Feedback.objects.get(trace=relabelled, user=alice), actor=owner, role="owner"
    )
    _label(eval_set, relabelled, alice, "negative")
    _label(eval_set, seconded, bob, "negative")
    # The source changed them: both versions judge them again as new traffic.
    Trace.objects.filter(pk__in=[t.pk for t in trained]).update(updated_at=timezone.now())
    fresh = _traces(eval_set, [REFUND, REFUND, REFUND, PLAIN, PLAIN, "boom refund"], 81_000)
    for trace in fresh:
        _label(eval_set, trace, carol, "positive")
    _judge_new_traffic(workspace, [*trained, *fresh])
    return {"active": v1, "shadow": v2, "errored": [fresh[-1].pk], "eval_set": eval_set}


def test_labels_given_before_the_shadow_never_count_as_later_ones(world, owner, login):
    """Counted, the twelve training labels would make v2 win 14 to 4 beyond noise, and the
    page would offer to promote it."""
    c = compare_shadow(active=world["active"], shadow=world["shadow"])

    assert c.shared == 18  # every trace both judged as new traffic
    assert c.labelled == 6  # only the fresh ones
    assert (c.paired.incumbent_correct, c.paired.challenger_correct) == (4, 2)
    assert not c.challenger_wins
    eval_set = world["eval_set"]
    page = login(owner).get(f"/w/{eval_set.workspace.slug}/evals/sets/{eval_set.pk}/shadow/")
    assert b'data-testid="promote"' not in page.content
    with pytest.raises(version_services.EvalActionError):
        version_services.promote_shadow(eval=world["shadow"])


def test_traces_a_version_errored_on_are_counted_wrong_and_shown(world, owner, login):
    c = compare_shadow(active=world["active"], shadow=world["shadow"])
    assert (c.active_errored_trace_ids, c.shadow_errored_trace_ids) == ([], world["errored"])
    assert c.as_dict()["shadow_errored"] == 1

    eval_set = world["eval_set"]
    page = login(owner).get(f"/w/{eval_set.workspace.slug}/evals/sets/{eval_set.pk}/shadow/")

    html = " ".join(page.content.decode().split())
    assert 'data-testid="shadow-errored">1 trace errored' in html
    slug, shadow, trace_id = eval_set.workspace.slug, world["shadow"].pk, world["errored"][0]
    assert f'href="/w/{slug}/evals/{shadow}/traces/{trace_id}/"' in html
    assert "Counts only traces first labelled after" in html


def test_comparison_queries_do_not_grow_with_the_traces(world):
    workspace, eval_set = world["eval_set"].workspace, world["eval_set"]
    counts = []
    for start in (90_000, 91_000):
        fresh = _traces(eval_set, [REFUND] * 5, start)
        for trace in fresh:
            _label(eval_set, trace, _member(workspace), "positive")
        _judge_new_traffic(workspace, fresh)
        with CaptureQueriesContext(connection) as queries:
            compare_shadow(active=world["active"], shadow=world["shadow"])
        counts.append(len(queries))
    assert counts[0] == counts[1]
