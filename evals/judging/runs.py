"""Run an eval version in the sandbox with its judge channel, and record what it spent."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import F

import sandbox
from evals.judging.session import Budget, JudgeSession, Usage
from evals.judging.spend import capped_budget
from evals.models import Eval, EvalKind, EvalRun
from evals.sandboxing import metered
from sandbox.runner import CALL_TRACES_PER_JAIL
from sandbox.validate import JUDGE_MODULE


def uses_judge(code: str) -> bool:
    """Return whether eval code may call judge()/llm() (it names their module)."""
    return JUDGE_MODULE in code


def infer_kind(code: str, previous: str = EvalKind.CODE) -> str:
    """Return the kind of a new version: code without judge calls is a code eval; one with
    them keeps its parent's judge or hybrid kind, and is a hybrid when edited from code."""
    if not uses_judge(code):
        return EvalKind.CODE
    return previous if previous in (EvalKind.JUDGE, EvalKind.HYBRID) else EvalKind.HYBRID


def open_session(*, eval: Eval, budget: Budget | None = None) -> JudgeSession | None:
    """Return the judge channel a run of `eval` needs, or None for code that calls no model.

    Without a `budget` the run gets the per-run limits capped by what is left of the
    workspace's monthly budget."""
    if not uses_judge(eval.code):
        return None
    return JudgeSession(
        workspace=eval.workspace, budget=budget or capped_budget(workspace=eval.workspace)
    )


@dataclass
class JudgedResults:
    """Sandbox results with what each trace's judge calls cost (None: no calls)."""

    results: list[sandbox.Result]
    usage: list[Usage | None] = field(default_factory=list)


def run_sandbox(
    session: JudgeSession | None,
    call: Callable[..., list[sandbox.Result]],
    code: str,
    traces: Sequence,
    limits: sandbox.Limits,
    *,
    bounded: bool = False,
) -> JudgedResults:
    """Return `call(code, traces, limits)` (sandbox.run or run_json), counted in the
    metrics and answering its judge calls if any.

    A jail of judge calls gets the wall time its chunk's calls may take, unless the caller
    is `bounded` (a request waiting for the verdicts): its limits then stand as given.
    """
    if session is None:
        return JudgedResults(metered(call, code, traces, limits))
    if not bounded:
        allowance = int(CALL_TRACES_PER_JAIL * session.timeout) + 60
        limits = dataclasses.replace(limits, batch_timeout_s=max(limits.batch_timeout_s, allowance))
    results = session.run(lambda: metered(call, code, traces, limits, calls=session.handle))
    return JudgedResults(results, [session.per_trace.get(i) for i in range(len(results))])


def add_run_spend(*, run: EvalRun, session: JudgeSession, since: Usage) -> Usage:
    """Add what `session` spent after `since` to the run's totals; return the new mark."""
    total = session.total
    EvalRun.objects.filter(pk=run.pk).update(
        judge_calls=F("judge_calls") + (total.calls - since.calls),
        cache_hits=F("cache_hits") + (total.cache_hits - since.cache_hits),
        input_tokens=F("input_tokens") + (total.input_tokens - since.input_tokens),
        output_tokens=F("output_tokens") + (total.output_tokens - since.output_tokens),
        cost_usd=F("cost_usd") + (total.cost_usd - since.cost_usd),
        unpriced_calls=F("unpriced_calls") + (total.unpriced_calls - since.unpriced_calls),
        judge_model=session.choice.model[:100],
    )
    return Usage(
        calls=total.calls,
        cache_hits=total.cache_hits,
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        cost_usd=Decimal(total.cost_usd),
        unpriced_calls=total.unpriced_calls,
    )


def usage_columns(
    usage: Sequence[Usage | None], count: int
) -> list[tuple[int, int, int, Decimal, int]]:
    """Return (calls, input tokens, output tokens, dollars, unpriced calls) per trace, zeros
    when unknown."""
    rows = []
    for i in range(count):
        u = usage[i] if i < len(usage) else None
        rows.append(
            (0, 0, 0, Decimal(0), 0)
            if u is None
            else (u.calls, u.input_tokens, u.output_tokens, u.cost_usd, u.unpriced_calls)
        )
    return rows
