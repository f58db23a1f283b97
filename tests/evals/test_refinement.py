import pytest

from evals.generation.refinement import start_refinement
from evals.generation.worker import refine_now
from evals.models import Eval, EvalExecution, Generation
from tests.evals.builders import ALWAYS_PASS_CODE, fenced, labelled_set, make_eval, record
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


def test_offline_refinement_counts_each_label_once(parent):
    child = refine_now(eval=parent).result
    # Cross-validation pairs cover the same 8 traces again; they are not more labels.
    assert child.labels_tested == 8
    assert child.metrics["labels"] == {"positive": 4, "negative": 4, "neutral": 0}


def test_llm_refinement_sends_the_contradictions_and_tests_on_the_expanded_labels(
    parent, openai_workspace, fake_llm
):
    from tests.evals.builders import REFUSAL_CODE

    user = Feedback.objects.first().user
    late = TraceFactory(workspace=openai_workspace, data=trace_data(778, output="I cannot, sorry."))
    Feedback.objects.create(
        workspace=openai_workspace,
        trace=late,
        eval_set=parent.eval_set,
        user=user,
        rating="negative",
        note="Refused a simple question",
    )
    fake_llm.push_text(fenced(REFUSAL_CODE), input_tokens=900, output_tokens=120)

    generation = refine_now(eval=parent)

    assert generation.status == "succeeded", generation.error
    [request] = fake_llm.requests
    prompt = request.prompt_text
    # Every bad label v1 passed, including the one added after v1, is a case to fix.
    assert prompt.count("DISAGREEMENT — reviewer: BAD") == 5
    assert "DISAGREEMENT — reviewer: GOOD" not in prompt
    assert "I cannot, sorry." in prompt and "Refused a simple question" in prompt
    assert "eval_fn returned True: 'Looks fine'" in prompt
    assert 'return True, "Looks fine"' in prompt  # the current code
    child = generation.result
    assert (child.parent, child.origin, child.provider, child.version) == (
        parent,
        "refined",
        "openai",
        2,
    )
    assert child.prompt_version and "DISAGREEMENT" in child.prompt
    assert (child.input_tokens, child.output_tokens) == (900, 120)
    assert (child.labels_tested, child.agreement) == (9, 1.0)
    assert EvalExecution.objects.filter(eval=child, trace=late, passed=False).exists()


def test_llm_refinement_keeps_held_out_contradictions_out_of_the_prompt(
    workspace, openai_workspace, fake_llm
):
    from tests.evals.builders import REFUSAL_CODE

    eval_set, traces = labelled_set(workspace, good=12, bad=12)
    v1 = make_eval(eval_set, version=1, code=ALWAYS_PASS_CODE, status="active")
    for t in traces:
        record(v1, t, True)
    fake_llm.push_text(fenced(REFUSAL_CODE))

    child = refine_now(eval=v1).result

    heldout = set(child.metrics["heldout_trace_ids"])
    assert heldout and child.metrics["heldout"]["labelled"] == len(heldout)
    prompt = fake_llm.requests[0].prompt_text
    for t in traces:
        shown = f'"{t.data["id"]}"' in prompt
        assert shown is (t.pk not in heldout), t.pk
    assert child.labels_tested == 24


def test_llm_refinement_of_a_version_without_contradictions_is_refused(
    workspace, openai_workspace, fake_llm
):
    from tests.evals.builders import REFUSAL_CODE

    eval_set, traces = labelled_set(workspace, good=3, bad=3)
    v1 = make_eval(eval_set, version=1, code=REFUSAL_CODE, status="active")

    generation = refine_now(eval=v1)

    assert generation.status == "failed" and "nothing to refine" in generation.error
    assert fake_llm.requests == []


def test_llm_refinement_is_measured_on_the_parents_held_out_labels_never_shown_to_it(
    openai_workspace, fake_llm
):
    """Labels added after v1 change a fresh split (a fifth of 28 is 6, of 22 it was 4);
    v2 must keep v1's held-out labels out of its prompt and be measured on them, not on
    labels v1's code (in v2's prompt) was written from."""
    from tests.evals.builders import REFUSAL_CODE, generate

    eval_set, traces = labelled_set(openai_workspace, good=12, bad=10)
    fake_llm.push_text(fenced(ALWAYS_PASS_CODE))
    v1 = generate(eval_set).result
    v1_heldout = set(v1.metrics["heldout_trace_ids"])
    assert len(v1_heldout) == 4
    user = Feedback.objects.first().user
    for n in range(6):
        late = TraceFactory(workspace=openai_workspace, data=trace_data(60_000 + n, output="No."))
        Feedback.objects.create(
            workspace=openai_workspace, trace=late, eval_set=eval_set, user=user, rating="negative"
        )
    fake_llm.push_text(fenced(REFUSAL_CODE))

    v2 = refine_now(eval=v1).result

    assert set(v2.metrics["heldout_trace_ids"]) == v1_heldout
    assert v2.metrics["heldout"]["labelled"] == 4
    assert v2.metrics["training"]["labelled"] == 24
    prompt = fake_llm.requests[-1].prompt_text
    for t in traces:
        assert (f'"{t.data["id"]}"' in prompt) is (t.pk not in v1_heldout), t.pk
    v1.refresh_from_db()
    assert set(v1.metrics["heldout_trace_ids"]) == v1_heldout  # re-measured, same split
