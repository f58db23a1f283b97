import pytest

from evals.models import Eval, EvalExecution, Generation
from evals.services.refinement import refine_now, start_refinement
from tests.evals.builders import ALWAYS_PASS_CODE, labelled_set, make_eval, record
from tests.traces.factories import TraceFactory, trace_data
from traces.models import Feedback

pytestmark = pytest.mark.django_db


@pytest.fixture
def parent(workspace):
    """v1 judges everything good: it contradicts every bad label."""
    eval_set, traces = labelled_set(workspace, good=4, bad=4)
    v1 = make_eval(eval_set, version=1, code=ALWAYS_PASS_CODE, status="active")
    for t in traces:
        record(v1, t, True)
    return v1


def test_offline_refinement_makes_a_child_version_tested_on_the_expanded_labels(parent, workspace):
    # A label added after v1 was made must be part of the refined version's test.
    user = Feedback.objects.first().user
    late = TraceFactory(workspace=workspace, data=trace_data(777, output="I cannot do that."))
    Feedback.objects.create(
        workspace=workspace, trace=late, eval_set=parent.eval_set, user=user, rating="negative"
    )

    generation = refine_now(eval=parent)

    assert generation.status == "succeeded", generation.error
    child = generation.result
    assert (child.parent, child.origin, child.version, child.status) == (
        parent,
        "refined",
        2,
        "draft",
    )
    assert child.metrics["training"]["labelled"] == 9
    parent.refresh_from_db()
    assert child.agreement > parent.agreement
    assert EvalExecution.objects.filter(eval=child, trace=late, passed=False).exists()
    # The parent was measured on the new label too.
    assert parent.metrics["training"]["labelled"] == 9
    assert EvalExecution.objects.filter(eval=parent, trace=late).exists()
    assert "Refined from v1 on 5 disagreements" in child.description


def test_a_second_refine_while_one_is_queued_returns_the_same_row(parent):
    first = start_refinement(eval=parent, enqueue=False)
    assert start_refinement(eval=parent, enqueue=False) == first
    assert Generation.objects.filter(parent=parent).count() == 1


def test_refinement_of_an_archived_set_is_refused(parent):
    from django.utils import timezone

    from evals.exceptions import EvalError

    parent.eval_set.archived_at = timezone.now()
    parent.eval_set.save()
    with pytest.raises(EvalError, match="archived"):
        start_refinement(eval=parent, enqueue=False)
    assert Eval.objects.count() == 1
