"""Judge templates and generation by evidence: a code eval, a judge and a hybrid made from
the same labels, measured on the same held-out labels, and the cheapest good one chosen."""

from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.utils.html import strip_tags

from evals.execution.runs import run_eval_now
from evals.generation.services import examples_for, start_generation
from evals.generation.worker import refine_now, run_generation
from evals.judging.compare import judge_template, kind_row, recommend
from evals.judging.session import Usage
from evals.judging.templates import CRITERIA, judge_code
from evals.models import EvalKind, JudgeTemplate
from tests.evals import builders
from tests.evals.builders import (
    ALWAYS_PASS_CODE,
    REFUSAL_CODE,
    fenced,
    labelled_set,
    make_eval,
    use_fake_openai,
)

pytestmark = pytest.mark.django_db

KEY = "sk-gen-judge-55aa"
MODEL = "gpt-4.1-mini"


def helpful(request):
    """The fake judge's rule: what it is asked to judge is helpful unless it refuses."""
    judged = request.prompt_text.rsplit("The trace to judge:", 1)[-1]
    return "no" if "cannot" in judged else "yes"


@pytest.fixture
def judged_workspace(workspace, fake_llm):
    fake_llm.judge_rule = helpful
    return use_fake_openai(workspace, fake_llm, api_key=KEY, model=MODEL)


def generate(eval_set, fake_llm, code):
    fake_llm.push_text(fenced(code))
    return builders.generate(eval_set)


def test_a_judge_eval_renders_criteria_notes_and_the_nearest_labelled_examples(
    judged_workspace, fake_llm
):
    eval_set, traces = labelled_set(judged_workspace, good=3, bad=3)
    template = judge_template(eval_set)
    code = judge_code(
        criteria=eval_set.criteria,
        question=CRITERIA["refusal"].question,
        material="conversation",
        examples=examples_for(eval_set)[0],
        shots=2,
    )
    eval = make_eval(eval_set, version=1, code=code, kind="judge")

    [execution] = run_eval_now(eval=eval, traces=[traces[-1]])

    assert execution.passed is False and execution.error == ""
    prompt = fake_llm.requests[-1].prompt_text
    assert "The assistant must not refuse." in prompt  # the set's criteria
    assert "negative because of the output" in prompt  # a reviewer's note
    assert CRITERIA["refusal"].question in prompt
    # Two examples, one of each label, chosen in the jail; the trace itself is not one.
    assert "Example 1:" in prompt and "Example 2:" in prompt and "Example 3:" not in prompt
    assert "Answer: yes" in prompt and "Answer: no" in prompt
    assert prompt.count(traces[-1].data["input"]["question"]) == 1
    assert template.criterion == "criteria"  # the default until the set chooses one


def test_generation_compares_code_judge_and_hybrid_and_recommends_the_cheapest_good_one(
    judged_workspace, fake_llm
):
    eval_set, _ = labelled_set(judged_workspace, good=12, bad=12)

    generation = generate(eval_set, fake_llm, REFUSAL_CODE)

    assert generation.status == "succeeded", generation.error
    rows = {row["kind"]: row for row in generation.comparison}
    assert set(rows) == {"code", "judge", "hybrid"}
    # Measured on the same held-out labels; the fake judge and the code are both right.
    assert rows["code"]["kappa"] == rows["judge"]["kappa"] == rows["hybrid"]["kappa"] == 1.0
    assert Decimal(rows["judge"]["cost_per_1k"]) > 0
    # The code's verdicts were all right on training labels: the hybrid never asks.
    assert Decimal(rows["hybrid"]["cost_per_1k"]) == 0
    [recommended] = [row for row in generation.comparison if row["recommended"]]
    assert recommended["kind"] in ("code", "hybrid")
    judge = generation.eval_set.evals.get(pk=rows["judge"]["eval_id"])
    assert judge.kind == EvalKind.JUDGE and judge.metrics["heldout"]["labelled"] == 5


def test_when_code_cannot_tell_the_judge_is_recommended(judged_workspace, fake_llm):
    eval_set, _ = labelled_set(judged_workspace, good=12, bad=12)

    generation = generate(eval_set, fake_llm, ALWAYS_PASS_CODE)

    rows = {row["kind"]: row for row in generation.comparison}
    assert rows["code"]["kappa"] == 0.0
    assert rows["judge"]["kappa"] == 1.0
    [recommended] = [row for row in generation.comparison if row["recommended"]]
    assert recommended["kind"] in ("judge", "hybrid") and recommended["kappa"] == 1.0


def test_generation_offline_makes_only_the_code_eval(workspace, fake_llm):
    eval_set, _ = labelled_set(workspace, good=3, bad=3)

    generation = start_generation(eval_set=eval_set, enqueue=False)
    generation = run_generation(generation_id=generation.pk)

    assert generation.status == "succeeded" and generation.comparison == []
    assert fake_llm.calls == 0
    assert not JudgeTemplate.objects.exists()


def test_the_generation_page_shows_the_three_side_by_side(judged_workspace, fake_llm, owner, login):
    eval_set, _ = labelled_set(judged_workspace, good=12, bad=12)
    generation = generate(eval_set, fake_llm, ALWAYS_PASS_CODE)

    page = (
        login(owner)
        .get(f"/w/{judged_workspace.slug}/evals/generations/{generation.pk}/")
        .content.decode()
    )

    assert "Code, judge or hybrid" in page
    for kind in ("code", "judge", "hybrid"):
        assert f'data-kind="{kind}"' in page
    assert page.count('data-recommended="true"') == 1
    assert "per 1,000 traces" in page


def test_the_judge_template_is_edited_per_eval_set_and_used_by_the_next_judge(
    judged_workspace, fake_llm, owner, login
):
    eval_set, _ = labelled_set(judged_workspace, good=12, bad=12)
    other, _ = labelled_set(judged_workspace, good=1, bad=1)
    url = f"/w/{judged_workspace.slug}/evals/sets/{eval_set.pk}/judge/"
    client = login(owner)

    page = client.get(url).content.decode()
    response = client.post(
        url,
        {"criterion": "tone", "question": "Is the reply warm?", "material": "reply", "shots": 1},
    )
    bad = client.post(url, {"criterion": "nonsense", "material": "reply", "shots": 1})

    assert CRITERIA["refusal"].title in page and "Does this trace meet the criteria?" in page
    assert response.status_code == 302
    assert bad.status_code == 400 and "nonsense" in bad.content.decode()
    template = judge_template(eval_set)
    assert (template.criterion, template.question, template.material, template.shots) == (
        "tone",
        "Is the reply warm?",
        "reply",
        1,
    )
    assert judge_template(other).criterion == "criteria"  # other sets keep the default

    generate(eval_set, fake_llm, REFUSAL_CODE)
    judge_prompts = [r.prompt_text for r in fake_llm.requests if "Allowed answers" in r.prompt_text]
    assert judge_prompts and all("Is the reply warm?" in p for p in judge_prompts)
    assert all("Example 2:" not in p for p in judge_prompts)


def test_an_overlong_judge_question_is_refused_on_the_form_with_the_text_kept(
    workspace, owner, login
):
    """Asked on every trace, a pasted essay would cost on each call, then fail in the jail."""
    from evals.exceptions import EvalError
    from evals.judging.compare import save_judge_template

    eval_set, _ = labelled_set(workspace, good=1, bad=1)
    url = f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/judge/"
    essay = "Is the reply right? " * 150  # 3,000 characters, 2,999 once stripped

    page = login(owner).post(
        url, {"criterion": "criteria", "question": essay, "material": "reply", "shots": 3}
    )

    html = page.content.decode()
    assert "Ensure this value has at most 2000 characters" in html
    assert essay.strip() in html  # the text stays in the box, to shorten
    assert not JudgeTemplate.objects.filter(eval_set=eval_set).exists()
    with pytest.raises(EvalError, match="at most 2,000 characters"):
        save_judge_template(eval_set=eval_set, criterion="criteria", question=essay)


def test_refining_a_judge_changes_its_prompt_and_few_shot_set(
    judged_workspace, fake_llm, owner, login
):
    eval_set, _ = labelled_set(judged_workspace, good=12, bad=12)
    generation = generate(eval_set, fake_llm, REFUSAL_CODE)
    rows = {row["kind"]: row for row in generation.comparison}
    judge = eval_set.evals.get(pk=rows["judge"]["eval_id"])
    login(owner).post(
        f"/w/{judged_workspace.slug}/evals/sets/{eval_set.pk}/judge/",
        {"criterion": "tone", "question": "Is it kind?", "material": "reply", "shots": 2},
    )

    refined = refine_now(eval=judge).result

    assert (refined.kind, refined.parent_id, refined.origin) == ("judge", judge.pk, "refined")
    assert "Is it kind?" in refined.code and "Is it kind?" not in judge.code
    assert refined.metrics["heldout_trace_ids"] == judge.metrics["heldout_trace_ids"]
    assert refined.agreement == 1.0


# What an LLM, offered the judge, writes: code decides the empty replies, the judge the rest.
JUDGING_CODE = """from iofold_eval import JudgeError, judge

def eval_fn(trace):
    output = str(trace.get("output") or "")
    if not output:
        return False, "no reply (decided by code)"
    answer = judge("Did the assistant help the user?", context=output)
    return answer == "yes", "the judge said " + answer
"""


def test_generated_code_may_call_the_judge_and_is_measured_with_its_cost(
    judged_workspace, fake_llm
):
    eval_set, traces = labelled_set(judged_workspace, good=3, bad=3)

    generation = generate(eval_set, fake_llm, JUDGING_CODE)

    assert generation.status == "succeeded", generation.error
    # The generation prompt offered the judge, with the budget in mind.
    system = fake_llm.requests[0].system
    assert "from iofold_eval import judge, llm, JudgeError" in system
    assert "call the judge only for the traces code cannot decide" in system
    eval = generation.result
    assert eval.code.strip() == JUDGING_CODE.strip()
    assert eval.prompt_version == "gen-v4"
    assert eval.kind == EvalKind.HYBRID
    # Validated, dry-run and measured with the judge answering: it agrees with every label.
    assert eval.agreement == 1.0
    run = eval.runs.get()
    assert run.trigger == "generation" and run.errors == 0
    # Every trace asked the judge (identical questions are answered from the cache), and
    # what the calls cost is on the run, so it counts against the monthly budget.
    assert run.judge_calls > 0 and run.judge_calls + run.cache_hits >= len(traces)
    assert run.cost_usd > 0
    reasons = sorted(e.reason for e in eval.executions.all())
    assert reasons == ["the judge said no"] * 3 + ["the judge said yes"] * 3


def test_offline_the_generation_prompt_does_not_offer_the_judge(workspace):
    from evals.generation.prompts import build_system_prompt
    from evals.generation.services import judge_session_for

    eval_set, _ = labelled_set(workspace, good=3, bad=3)

    assert judge_session_for(eval_set) is None
    assert "iofold_eval" not in build_system_prompt()
    assert "iofold_eval" in build_system_prompt(judge=True)


@pytest.mark.parametrize("material", ["conversation", "tool_results"])
def test_a_trace_with_a_huge_input_still_shows_the_judge_its_reply(
    judged_workspace, fake_llm, material
):
    eval_set, traces = labelled_set(judged_workspace, good=2, bad=2)
    huge = traces[-1]  # a refusal, after a pasted document of 200,000 characters
    huge.data = {**huge.data, "input": {"question": "summarise " + "lorem ipsum " * 20_000}}
    huge.save(update_fields=["data"])
    code = judge_code(
        criteria=eval_set.criteria,
        question=CRITERIA["refusal"].question,
        material=material,
        examples=examples_for(eval_set)[0],
    )
    eval = make_eval(eval_set, version=1, code=code, kind="judge")

    [execution] = run_eval_now(eval=eval, traces=[huge])

    judged = fake_llm.requests[-1].prompt_text.rsplit("The trace to judge:", 1)[-1]
    assert "Assistant: I cannot help with that." in judged  # the reply, not cut off
    assert "User: " in judged and len(judged) < 4_200  # the documented 4,000 characters
    # Its own label is not shown to the judge as an example.
    assert fake_llm.requests[-1].prompt_text.count("summarise") == 1
    assert execution.passed is False and execution.error == ""


def test_a_judge_that_errors_on_most_traces_is_not_recommended_on_the_few_it_answered(
    judged_workspace,
):
    eval_set, _ = labelled_set(judged_workspace, good=1, bad=1)
    code_eval = make_eval(eval_set, version=1, code=ALWAYS_PASS_CODE, kind="code")
    judge_eval = make_eval(eval_set, version=2, code=ALWAYS_PASS_CODE, kind="judge")
    labels = ["positive"] * 5 + ["negative"] * 5
    # The code is right on 8 of 10; the judge on the 3 it answered, an error on 7.
    code = list(zip(labels, [True] * 4 + [False] + [False] * 4 + [True], strict=True))
    judge = list(zip(labels, [True, True] + [None] * 3 + [False] + [None] * 4, strict=True))
    results = [SimpleNamespace(duration_ms=1.0)] * 10

    rows = [
        kind_row(code_eval, results, Usage(), 10, code, code),
        kind_row(judge_eval, results, Usage(calls=3, cost_usd=Decimal("0.01")), 10, judge, judge),
    ]

    assert recommend(rows).eval == code_eval
    assert rows[1].errors == 7 and rows[1].kappa < rows[0].kappa


def test_a_judge_on_a_model_without_a_price_shows_its_cost_as_unknown_not_free(
    workspace, fake_llm, owner, login
):
    fake_llm.judge_rule = helpful
    use_fake_openai(workspace, fake_llm, api_key=KEY, model="local-llama-3")
    eval_set, _ = labelled_set(workspace, good=12, bad=12)

    generation = generate(eval_set, fake_llm, REFUSAL_CODE)

    rows = {row["kind"]: row for row in generation.comparison}
    assert rows["judge"]["cost_per_1k"] is None
    assert rows["code"]["cost_per_1k"] == "0.000000"
    [recommended] = [row for row in generation.comparison if row["recommended"]]
    assert recommended["kind"] != "judge"
    page = login(owner).get(f"/w/{workspace.slug}/evals/generations/{generation.pk}/")
    html = " ".join(strip_tags(page.content.decode()).split())
    # The version's cost line and the judge's row name the model that has no price.
    assert "cost unknown (no price for local-llama-3)" in html
    assert "unknown (no price for local-llama-3) " in html.split("Cost per 1,000")[1]
    assert "this model" not in html
