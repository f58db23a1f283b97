"""Generation through the real SDKs against a loopback fake LLM server, and offline."""

from decimal import Decimal

import pytest
from django.utils import timezone

from evals.exceptions import EvalError, TransientEvalError
from evals.generation.provider_settings import update_provider_settings
from evals.generation.services import start_generation
from evals.generation.worker import run_generation
from evals.models import Eval, EvalExecution, EvalRun, Generation
from tests.conftest import dead_owner
from tests.evals.builders import BAD, GOOD, KEY, fenced, generate, labelled_set
from tests.traces.factories import TraceFactory, trace_data
from traces.models import Feedback

pytestmark = pytest.mark.django_db

GOOD_CODE = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if "cannot" in output:
        return False, "The assistant refused"
    return True, "The assistant answered"
"""


def test_good_code_is_stored_with_prompt_tokens_cost_metrics_and_executions(
    openai_workspace,
    fake_llm,
):
    eval_set, traces = labelled_set(openai_workspace, good=3, bad=3, neutral=1)
    fake_llm.push_text(fenced(GOOD_CODE), input_tokens=1000, output_tokens=200)

    generation = generate(eval_set)

    assert generation.status == "succeeded", generation.error
    assert generation.attempts == 1
    eval = generation.result
    assert eval.code.strip() == GOOD_CODE.strip()
    assert (eval.provider, eval.model, eval.version) == ("openai", "gpt-4.1-mini", 1)
    assert eval.prompt_version == "gen-v4"
    # The stored prompt is what was sent: the system prompt and the labelled traces.
    request = fake_llm.requests[0]
    assert request.system in eval.prompt
    assert request.messages[0]["content"] in eval.prompt
    assert (eval.input_tokens, eval.output_tokens) == (1000, 200)
    # gpt-4.1-mini lists at $0.40 / $1.60 per million tokens.
    assert eval.cost_usd == Decimal("0.00072")
    assert eval.agreement == 1.0 and not eval.low_confidence
    assert eval.status == Eval.Status.ACTIVE  # the set's first version to clear the bar
    assert eval.metrics["training"]["labelled"] == 6
    assert eval.metrics["labels"] == {"positive": 3, "negative": 3, "neutral": 1}
    run = EvalRun.objects.get(eval=eval)
    assert (run.trigger, run.status, run.total, run.passed, run.failed) == (
        "generation",
        "succeeded",
        7,
        4,
        3,
    )
    assert EvalExecution.objects.filter(eval=eval).count() == 7
    # The key is never in what the server sees besides the auth header, nor stored.
    assert KEY not in eval.prompt


def test_anthropic_chatty_answer_is_extracted(workspace, fake_llm):
    update_provider_settings(
        workspace=workspace,
        provider="anthropic",
        model="claude-sonnet-5-5",
        base_url=fake_llm.anthropic_base_url,
        api_key=KEY,
    )
    eval_set, _ = labelled_set(workspace, good=2, bad=2)
    fake_llm.push_text(
        "Sure! Here's a first idea:\n\n```python\ndef helper(x):\n    return x\n```\n\n"
        f"And the final version:\n\n{fenced(GOOD_CODE)}\n\nCall it as `eval_fn(trace)`.",
        input_tokens=2000,
        output_tokens=500,
    )

    generation = generate(eval_set)

    assert generation.status == "succeeded", generation.error
    assert fake_llm.requests[0].api == "anthropic"
    assert "def helper" not in generation.result.code
    assert generation.result.cost_usd == Decimal("0.009")  # 2000 * $2/M + 500 * $10/M


def test_syntax_error_is_fed_back_and_the_fix_is_kept(openai_workspace, fake_llm):
    eval_set, _ = labelled_set(openai_workspace, good=2, bad=2)
    fake_llm.push_text(fenced("def eval_fn(trace)\n    return True, 'ok'\n"))
    fake_llm.push_text(fenced(GOOD_CODE))

    generation = generate(eval_set)

    assert generation.status == "succeeded", generation.error
    assert generation.attempts == 2
    # Generation's own requests; the judge and hybrid it measures afterwards ask more.
    assert len([r for r in fake_llm.requests if "Allowed answers:" not in r.prompt_text]) == 2
    retry = fake_llm.requests[1].messages
    # The broken answer and the validator's line-numbered complaint went back to the model.
    assert "def eval_fn(trace)\n" in retry[-2]["content"]
    assert "could not be used" in retry[-1]["content"]
    assert "line 1" in retry[-1]["content"]
    assert generation.result.code.strip() == GOOD_CODE.strip()


def test_dangerous_code_is_rejected_before_it_runs(openai_workspace, fake_llm):
    eval_set, _ = labelled_set(openai_workspace, good=2, bad=2)
    fake_llm.push_text(
        fenced("import os\n\ndef eval_fn(trace):\n    os.system('id')\n    return True, 'x'\n")
    )
    fake_llm.push_text(fenced(GOOD_CODE))

    generation = generate(eval_set)

    assert generation.status == "succeeded"
    feedback = fake_llm.requests[1].messages[-1]["content"]
    assert "rejected by the validator" in feedback
    assert "os" in feedback
    assert "import os" not in generation.result.code


def test_code_that_times_out_in_the_dry_run_is_fed_back(
    openai_workspace,
    fake_llm,
    settings,
):
    settings.SANDBOX_TIMEOUT_PER_TRACE = 1.0
    eval_set, _ = labelled_set(openai_workspace, good=2, bad=2)
    fake_llm.push_text(fenced("def eval_fn(trace):\n    while True:\n        pass\n"))
    fake_llm.push_text(fenced(GOOD_CODE))

    generation = generate(eval_set)

    assert generation.status == "succeeded", generation.error
    feedback = fake_llm.requests[1].messages[-1]["content"]
    assert "in the sandbox failed" in feedback
    assert "time" in feedback.lower()


def test_three_bad_answers_fail_with_a_clear_error_and_store_nothing(
    openai_workspace,
    fake_llm,
):
    eval_set, _ = labelled_set(openai_workspace, good=2, bad=2)
    for _ in range(3):
        fake_llm.push_text("I would check whether the assistant refused.")

    generation = generate(eval_set)

    assert generation.status == "failed"
    assert generation.attempts == 3
    assert "did not write a usable eval in 3 attempts" in generation.error
    assert "eval_fn" in generation.error
    assert len(fake_llm.requests) == 3
    assert not Eval.objects.filter(eval_set=eval_set).exists()
    assert not Eval.objects.filter(eval_set=eval_set, status="active").exists()


def test_rate_limit_puts_the_generation_back_for_a_later_retry(
    openai_workspace,
    fake_llm,
):
    eval_set, _ = labelled_set(openai_workspace, good=2, bad=2)
    fake_llm.push_error(429, message="Rate limit reached", times=3)  # the SDK retries twice

    generation = start_generation(eval_set=eval_set, enqueue=False)
    with pytest.raises(TransientEvalError, match="rate limited"):
        run_generation(generation_id=generation.pk)

    generation.refresh_from_db()
    assert generation.status == "queued"
    assert "rate limited" in generation.stage
    # The task's retry then succeeds.
    fake_llm.push_text(fenced(GOOD_CODE))
    assert run_generation(generation_id=generation.pk).status == "succeeded"


def test_server_error_is_transient(openai_workspace, fake_llm):
    eval_set, _ = labelled_set(openai_workspace, good=2, bad=2)
    fake_llm.push_error(503, times=3)

    generation = start_generation(eval_set=eval_set, enqueue=False)
    with pytest.raises(TransientEvalError, match="HTTP 503"):
        run_generation(generation_id=generation.pk)
    assert Generation.objects.get(pk=generation.pk).status == "queued"


def test_rejected_key_fails_at_once_without_showing_the_key(
    openai_workspace,
    fake_llm,
):
    eval_set, _ = labelled_set(openai_workspace, good=2, bad=2)
    fake_llm.push_error(401, message="Incorrect API key provided: {api_key}")

    generation = generate(eval_set)

    assert generation.status == "failed"
    assert "HTTP 401" in generation.error
    assert KEY not in generation.error
    assert len(fake_llm.requests) == 1


def test_metrics_match_a_hand_checked_case(openai_workspace, fake_llm):
    """4 good (one says "cannot"), 3 bad (one reads fine), 1 neutral: tp 3 fn 1 fp 1 tn 2."""
    eval_set, traces = labelled_set(openai_workspace, good=3, bad=2, neutral=1)
    user = Feedback.objects.filter(eval_set=eval_set).first().user
    for rating, output in (
        ("positive", "I cannot find it, but a refund is sent."),
        ("negative", GOOD),
    ):
        trace = TraceFactory(
            workspace=openai_workspace, data=trace_data(90_000 + len(rating), output=output)
        )
        Feedback.objects.create(
            workspace=openai_workspace, trace=trace, eval_set=eval_set, user=user, rating=rating
        )
    fake_llm.push_text(fenced(GOOD_CODE))

    eval = generate(eval_set).result

    training = eval.metrics["training"]
    assert (training["tp"], training["fn"], training["fp"], training["tn"]) == (3, 1, 1, 2)
    assert training["labelled"] == 7 and training["errors"] == 0
    assert training["accuracy"] == pytest.approx(5 / 7)
    assert training["precision"] == pytest.approx(3 / 4)
    assert training["recall"] == pytest.approx(3 / 4)
    assert training["f1"] == pytest.approx(3 / 4)
    # observed 5/7, chance (4*4 + 3*3)/49 = 25/49: kappa = (35 - 25) / (49 - 25)
    assert training["kappa"] == pytest.approx(10 / 24)
    assert training["coverage"] == 1.0
    assert eval.metrics["heldout"] is None  # under 20 labels: no held-out split
    assert eval.agreement == pytest.approx(5 / 7)
    assert eval.labels_tested == 7
    assert eval.low_confidence
    assert eval.low_confidence_reason == (
        "Agrees with 5 of 7 labels (71%) on training labels; below the 80% bar"
    )
    assert eval.status == Eval.Status.DRAFT  # low confidence is never activated on its own


def test_twenty_labels_keep_a_held_out_part_out_of_the_prompt(
    openai_workspace,
    fake_llm,
):
    eval_set, traces = labelled_set(openai_workspace, good=12, bad=10)
    fake_llm.push_text(fenced(GOOD_CODE))

    eval = generate(eval_set).result

    heldout_ids = eval.metrics["heldout_trace_ids"]
    assert 3 <= len(heldout_ids) <= 6
    assert eval.metrics["method"] == "held-out split"
    assert eval.metrics["heldout"]["labelled"] == len(heldout_ids)
    assert eval.metrics["training"]["labelled"] == 22 - len(heldout_ids)
    prompt = fake_llm.requests[0].prompt_text
    by_pk = {t.pk: t for t in traces}
    for pk in heldout_ids:
        assert f'"id": "{by_pk[pk].data["id"]}"' not in prompt
    assert eval.agreement == eval.metrics["heldout"]["accuracy"]


def test_offline_generation_end_to_end_with_cross_validated_metrics(workspace):
    eval_set, traces = labelled_set(workspace, good=6, bad=6, neutral=2)

    generation = generate(eval_set)

    assert generation.status == "succeeded", generation.error
    assert generation.provider == "offline"
    eval = generation.result
    assert eval.provider == "offline" and eval.cost_usd == 0
    assert eval.input_tokens == eval.output_tokens == 0
    assert "def eval_fn" in eval.code
    assert (
        eval.metrics["method"]
        == "5-fold cross-validation, the rule learned again without each fold"
    )
    assert eval.metrics["heldout"]["labelled"] == 12
    assert eval.metrics["training"]["accuracy"] == 1.0
    assert eval.agreement == eval.metrics["heldout"]["accuracy"]
    assert eval.labels_tested == 12
    verdicts = dict(
        EvalExecution.objects.filter(eval=eval).values_list("trace__data__output", "passed")
    )
    assert verdicts == {GOOD: True, BAD: False}


def test_rescoring_an_offline_eval_keeps_its_cross_validated_agreement(workspace):
    """A test run or a refinement re-scores the version: its held-out figure stays."""
    from evals.metrics.measure import score_eval_version

    eval_set, traces = labelled_set(workspace, good=6, bad=6, neutral=2)
    eval = generate(eval_set).result
    heldout, agreement = eval.metrics["heldout"], eval.agreement

    eval = score_eval_version(eval=eval)

    assert eval.metrics["heldout"] == heldout
    assert eval.agreement == agreement

    # A version stored before the method said how it was measured keeps its figure too.
    eval.metrics = {**eval.metrics, "method": "5-fold cross-validation"}
    eval.save(update_fields=["metrics"])
    eval = score_eval_version(eval=eval)
    assert eval.metrics["heldout"] == heldout
    assert eval.agreement == agreement


def test_no_decided_labels_cannot_start(workspace):
    eval_set, _ = labelled_set(workspace, good=0, bad=0, neutral=2)
    with pytest.raises(EvalError, match="Label some traces"):
        start_generation(eval_set=eval_set)


def test_an_unfinished_generation_is_reused(workspace):
    eval_set, _ = labelled_set(workspace, good=2, bad=2)
    first = start_generation(eval_set=eval_set, enqueue=False)
    assert start_generation(eval_set=eval_set, enqueue=False) == first


def test_a_second_generation_is_the_next_version_and_stays_a_draft(workspace):
    eval_set, _ = labelled_set(workspace, good=4, bad=4)
    first = generate(eval_set).result
    second = generate(eval_set).result
    assert (first.version, second.version) == (1, 2)
    assert (first.status, second.status) == ("active", "draft")


def test_generation_runs_twice_only_once(workspace):
    eval_set, _ = labelled_set(workspace, good=2, bad=2)
    generation = start_generation(eval_set=eval_set, enqueue=False)
    run_generation(generation_id=generation.pk)
    run_generation(generation_id=generation.pk)
    assert Eval.objects.filter(eval_set=eval_set).count() == 1


@pytest.mark.parametrize("outcome", ["fails", "succeeds"])
def test_a_generation_deleted_while_it_works_ends_quietly(workspace, monkeypatch, outcome):
    """Its eval set or workspace went while the worker worked: no crash, nothing to record."""
    import evals.generation.worker as worker

    eval_set, _ = labelled_set(workspace, good=2, bad=2)
    generation = start_generation(eval_set=eval_set, enqueue=False)
    real = worker.generate_eval

    def deleted_meanwhile(**kwargs):
        made = real(**kwargs) if outcome == "succeeds" else None
        Generation.objects.filter(pk=generation.pk).delete()
        if made is None:
            raise EvalError("The model's answer had no code.")
        return made

    monkeypatch.setattr(worker, "generate_eval", deleted_meanwhile)

    assert run_generation(generation_id=generation.pk) is None
    assert not Generation.objects.filter(pk=generation.pk).exists()


def test_generate_hands_a_dead_workers_generation_to_the_next_worker(
    workspace, monkeypatch, django_capture_on_commit_callbacks
):
    eval_set, traces = labelled_set(workspace, good=2, bad=2)
    stuck = start_generation(eval_set=eval_set, enqueue=False)
    Generation.objects.filter(pk=stuck.pk).update(
        status="running", owner=dead_owner(), heartbeat_at=timezone.now()
    )
    sent = []
    monkeypatch.setattr("evals.tasks.generate_eval_task.delay", sent.append)

    with django_capture_on_commit_callbacks(execute=True):
        generation = start_generation(eval_set=eval_set)

    assert generation.pk == stuck.pk and generation.status == "queued"
    assert generation.takeovers == 1 and "worker stopped" in generation.stage
    assert sent == [stuck.pk]


def test_offline_labels_without_a_rule_give_no_reliable_eval_never_activated(workspace):
    # Same output everywhere, mixed labels: nothing in the traces explains them.
    eval_set, _ = labelled_set(workspace, good=5, bad=0)
    user = Feedback.objects.filter(eval_set=eval_set).first().user
    for n in range(4):
        trace = TraceFactory(workspace=workspace, data=trace_data(20_000 + n, output=GOOD))
        Feedback.objects.create(
            workspace=workspace, trace=trace, eval_set=eval_set, user=user, rating="negative"
        )

    eval = generate(eval_set).result

    assert eval.status == Eval.Status.DRAFT and eval.activated_at is None
    assert eval.no_reliable_eval and eval.metrics["no_reliable_eval"] is True
    assert eval.metrics["no_eval_reason"].startswith("No reliable eval yet")
    assert eval.low_confidence
    assert eval.kappa == pytest.approx(0.0)


def test_a_constant_with_high_raw_agreement_is_not_activated(openai_workspace, fake_llm):
    # Nine good labels and one bad: "always good" agrees 90 % yet is no better than chance.
    eval_set, _ = labelled_set(openai_workspace, good=9, bad=1)
    fake_llm.push_text(fenced('def eval_fn(trace):\n    return True, "Looks fine"\n'))

    eval = generate(eval_set).result

    assert eval.agreement == pytest.approx(0.9)
    assert eval.status == Eval.Status.DRAFT
    assert eval.no_reliable_eval
    assert "every labelled trace good" in eval.metrics["no_eval_reason"]
    assert eval.kappa == pytest.approx(0.0)
