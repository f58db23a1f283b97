"""What a workspace spends on judge calls: this month, per 1,000 traces, against its budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Q, Sum

from evals.generation.pricing import unpriced_note
from evals.judging.ledger import budget_message, month_start, month_to_date
from evals.judging.session import Budget, JudgeSession
from evals.models import Eval, EvalExecution, EvalKind, ProviderSettings, VerdictSpendDay
from workspaces.models import Workspace


def monthly_budget(*, workspace: Workspace) -> Decimal | None:
    row = ProviderSettings.objects.for_workspace(workspace).first()
    return row.monthly_budget_usd if row else None


def monthly_headroom(*, workspace: Workspace) -> Decimal | None:
    """Return what runs may still spend this month (None: no monthly budget)."""
    budget = monthly_budget(workspace=workspace)
    if budget is None:
        return None
    return max(Decimal(0), budget - month_to_date(workspace=workspace))


def capped_budget(*, workspace: Workspace) -> Budget:
    """Return what one run may spend on judge calls: the per-run limits, and no more than
    is left of the workspace's monthly budget, so every run (automatic, manual or a
    generation's measuring) stops before the month's budget is exceeded."""
    budget = monthly_budget(workspace=workspace)
    if budget is None:
        return Budget.from_settings()
    return Budget.from_settings(
        usd_cap=monthly_headroom(workspace=workspace), usd_cap_message=budget_message(budget)
    )


def capped_session(*, workspace: Workspace) -> JudgeSession:
    """Return a judge channel for one measuring run, within the monthly budget."""
    return JudgeSession(workspace=workspace, budget=capped_budget(workspace=workspace))


def nothing_left(budget: Budget) -> str:
    """Return the monthly budget's message when it leaves this run nothing, else ""."""
    if budget.usd_limit_message and budget.usd <= 0:
        return budget.usd_limit_message
    return ""


def per_thousand(cost: Decimal | None, traces: int) -> Decimal | None:
    """Return dollars per 1,000 traces, or None before any trace was judged."""
    if not traces or cost is None:
        return None
    return Decimal(cost) * 1000 / traces


@dataclass(frozen=True)
class Spend:
    """Judge spend over some verdicts: how many, calls, dollars, and dollars per 1,000;
    calls to a model with no known price are counted apart, with the models named."""

    traces: int
    calls: int
    cost_usd: Decimal
    unpriced_calls: int = 0
    unpriced_models: tuple[str, ...] = field(default=())

    @property
    def per_thousand(self) -> Decimal | None:
        # Unpriced calls would make the figure look cheaper than it is: none is given.
        if self.unpriced_calls:
            return None
        return per_thousand(self.cost_usd, self.traces)

    @property
    def unpriced_note(self) -> str:
        return unpriced_note(self.unpriced_calls, self.unpriced_models)


def _spend(executions, row: dict | None = None) -> Spend:
    """Return the spend of `executions`; `row`, when given, holds their sums already
    (n, calls, cost, unpriced), so the verdicts are read only for unpriced models."""
    if row is None:
        row = executions.aggregate(
            n=Count("id"),
            calls=Sum("judge_calls"),
            cost=Sum("cost_usd"),
            unpriced=Sum("unpriced_calls"),
        )
    unpriced = row["unpriced"] or 0
    models: tuple[str, ...] = ()
    if unpriced:
        # Only verdicts with unpriced calls: the models their runs asked.
        models = tuple(
            executions.filter(unpriced_calls__gt=0)
            .values_list("run__judge_model", flat=True)
            .distinct()
            .order_by()
        )
    return Spend(row["n"] or 0, row["calls"] or 0, row["cost"] or Decimal(0), unpriced, models)


def version_spend(*, eval: Eval) -> Spend:
    """Return what a version's current verdicts cost (cached answers cost nothing)."""
    return _spend(EvalExecution.objects.for_workspace(eval.workspace_id).filter(eval=eval))


@dataclass(frozen=True)
class MonthSpend:
    spent: Decimal
    budget: Decimal | None
    # This month's verdicts of evals that call a judge (judge and hybrid): what a judged
    # trace costs. Code evals' verdicts are free and counted apart, so they do not
    # dilute it.
    judged: Spend
    code_verdicts: int = 0

    @property
    def reached(self) -> bool:
        return self.budget is not None and self.spent >= self.budget


def month_spend(*, workspace: Workspace) -> MonthSpend:
    """Return the workspace's spend this month, its budget and what a judged trace costs.

    The verdicts updated this month are summed from the per-day sums the database keeps
    (``VerdictSpendDay``, by the day of ``updated_at``): not a read of every verdict a
    month of runs wrote. Only unpriced calls send it to the verdicts, for their models.
    """
    start = month_start()
    judging = Q(eval__kind__in=(EvalKind.JUDGE, EvalKind.HYBRID))
    days = VerdictSpendDay.objects.for_workspace(workspace).filter(day__gte=start.date())
    sums = days.aggregate(
        n=Sum("verdicts", filter=judging),
        calls=Sum("judge_calls", filter=judging),
        cost=Sum("cost_usd", filter=judging),
        unpriced=Sum("unpriced_calls", filter=judging),
        code=Sum("verdicts", filter=~judging),
    )
    this_month = EvalExecution.objects.for_workspace(workspace).filter(updated_at__gte=start)
    return MonthSpend(
        spent=month_to_date(workspace=workspace),
        budget=monthly_budget(workspace=workspace),
        judged=_spend(this_month.filter(judging), sums),
        code_verdicts=sums["code"] or 0,
    )
