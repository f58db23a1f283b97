"""Eval sets with labels, versions and executions built directly, for management tests."""

import itertools

from django.utils import timezone

import sandbox
from evals.generation.provider_settings import update_provider_settings
from evals.generation.services import start_generation
from evals.generation.worker import run_generation
from evals.models import Eval, EvalExecution, Generation
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces.models import EvalSet, Feedback

KEY = "sk-test-secret-key-4321"  # the fake LLM's API key, never to be seen elsewhere
GOOD = "Your refund is on its way."
BAD = "I cannot help with that."

# Passes when the output does not refuse.
_numbers = itertools.count(10_000)

REFUSAL_CODE = """def eval_fn(trace):
    output = str(trace.get("output") or "")
    if "cannot" in output:
        return False, "The assistant refused"
    return True, "The assistant answered"
"""
# Judges every trace good: contradicts every negative label.
ALWAYS_PASS_CODE = """def eval_fn(trace):
    return True, "Looks fine"
"""

# A multi-turn rule: a conversation is good when it has few turns and no tool failed.
SHORT_AND_CLEAN = """def eval_fn(conversation):
    turns = conversation["turns"]
    errors = [c for m in conversation["messages"] for c in m["tool_calls"] if c["error"]]
    if errors:
        return False, "a tool failed in the conversation"
    if len(turns) > 2:
        return False, f"{len(turns)} turns: the user had to come back"
    state = "complete" if conversation["is_complete"] else "open"
    first = conversation["messages"][0]["content"]
    return True, f"{len(turns)} turns, {state}, user said: " + first
"""


def labelled_set(workspace, *, good: int = 3, bad: int = 3, neutral: int = 0, user=None):
    """Return ``(eval_set, traces)`` with majority labels: good, then bad, then neutral."""
    user = user or MembershipFactory(workspace=workspace, user=UserFactory()).user
    eval_set = EvalSetFactory(workspace=workspace, criteria="The assistant must not refuse.")
    traces = []
    plan = [("positive", GOOD)] * good + [("negative", BAD)] * bad + [("neutral", GOOD)] * neutral
    for rating, output in plan:
        n = next(_numbers)
        trace = TraceFactory(workspace=workspace, data=trace_data(n, output=output))
        Feedback.objects.create(
            workspace=workspace,
            trace=trace,
            eval_set=eval_set,
            user=user,
            rating=rating,
            note=f"{rating} because of the output",
        )
        traces.append(trace)
    return eval_set, traces


def use_fake_openai(
    workspace, fake_llm, *, api_key: str = KEY, model: str = "gpt-4.1-mini", **settings
):
    """Return the workspace, its LLM calls sent to the loopback fake's OpenAI API;
    ``settings`` are more of ``update_provider_settings``'s (a monthly budget)."""
    update_provider_settings(
        workspace=workspace,
        provider="openai",
        model=model,
        base_url=fake_llm.openai_base_url,
        api_key=api_key,
        **settings,
    )
    return workspace


def fenced(code: str) -> str:
    """Return code as a model answers it: in a Python fence."""
    return f"```python\n{code}```"


def generate(eval_set) -> Generation:
    """Start a generation for the set and run it here, as its worker would."""
    generation = start_generation(eval_set=eval_set, enqueue=False)
    return run_generation(generation_id=generation.pk)


def make_eval(eval_set, *, version: int, code: str = REFUSAL_CODE, **fields) -> Eval:
    return Eval.objects.create(
        workspace=eval_set.workspace,
        eval_set=eval_set,
        version=version,
        code=code,
        provider=fields.pop("provider", "offline"),
        **fields,
    )


def active_conversation_eval(workspace, *, code: str = SHORT_AND_CLEAN, **set_fields) -> Eval:
    """Return the active version 1 of a new conversation eval set over every conversation
    of ``workspace`` (an empty saved filter), judged as conversations complete.
    ``set_fields`` go to the set: ``score_to_langfuse=True`` sends its verdicts back to
    Langfuse as session scores."""
    eval_set = EvalSetFactory(
        workspace=workspace,
        unit=EvalSet.Unit.CONVERSATION,
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={},
        **set_fields,
    )
    return make_eval(
        eval_set, version=1, code=code, status=Eval.Status.ACTIVE, activated_at=timezone.now()
    )


def record(eval, trace, passed: bool | None, *, reason: str = "", error: str = ""):
    return EvalExecution.objects.create(
        workspace=eval.workspace,
        eval=eval,
        trace=trace,
        passed=passed,
        reason=reason or ("ok" if passed else "no"),
        error=error,
        duration_ms=1.5,
    )


def two_judged_versions(workspace):
    """Return ``(eval_set, traces, v1, v2)``: two good and two bad labelled traces, judged
    by an active v1 that agrees and by its child v2 that passes everything."""
    eval_set, traces = labelled_set(workspace, good=2, bad=2)
    v1 = make_eval(
        eval_set,
        version=1,
        status="active",
        agreement=1.0,
        labels_tested=4,
        metrics={"training": {"tp": 2, "fp": 0, "fn": 0, "tn": 2, "errors": 0, "accuracy": 1.0}},
    )
    v2 = make_eval(eval_set, version=2, parent=v1, code=ALWAYS_PASS_CODE, agreement=0.5)
    for t in traces:
        record(v1, t, t.data["output"].startswith("Your"))
        record(v2, t, True)
    return eval_set, traces, v1, v2


def sandbox_unavailable_at_call(monkeypatch, n: int):
    """Make the real sandbox's ``n``-th call fail as unavailable (transient); return the
    real ``sandbox.run_json``, for the test to put back."""
    real_run_json, calls = sandbox.run_json, []

    def failing(code, texts, limits, **kwargs):
        calls.append(len(texts))
        if len(calls) == n:
            raise sandbox.SandboxUnavailable("nsjail did not start", permanent=False)
        return real_run_json(code, texts, limits, **kwargs)

    monkeypatch.setattr(sandbox, "run_json", failing)
    return real_run_json
