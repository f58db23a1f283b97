"""The workspace's judge spend this month, reserved call by call against its monthly budget.

Each run is handed what was left of the budget when it started (`spend.capped_budget`),
so two runs started together would each spend all of it. Every priced provider call
therefore also holds its most possible cost on the workspace's one `JudgeSpendMonth` row,
locked, and is refused when the month's spend and the holds of calls in flight would
pass the budget: concurrent runs, on any number of workers, stay within it between them.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from evals.models import EvalRun, JudgeSpendMonth, ProviderSettings
from workspaces.models import Workspace

# A call cannot outlive its timeout; its hold outlives it by this much before it is taken
# to be a dead process's and dropped.
HOLD_MARGIN_S = 60


def month_start():
    now = timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_to_date(*, workspace: Workspace) -> Decimal:
    """Return the dollars the workspace's runs have spent on judge calls this month."""
    total = (
        EvalRun.objects.for_workspace(workspace)
        .filter(created_at__gte=month_start())
        .aggregate(total=Sum("cost_usd"))["total"]
    )
    return total or Decimal(0)


def budget_message(budget: Decimal) -> str:
    """Return what a run is told when the monthly budget would be exceeded."""
    return (
        f"the workspace's monthly judge budget (${budget}) would be exceeded; runs of "
        "evals that call a judge stop until next month or until the budget is raised in "
        "the provider settings"
    )


def _locked_month(workspace: Workspace) -> JudgeSpendMonth:
    """Return the workspace's row for this month, locked until the transaction ends."""
    month = month_start().date()
    rows = JudgeSpendMonth.objects.select_for_update().for_workspace(workspace)
    row = rows.first()
    if row is None:
        try:
            with transaction.atomic():
                # The first call since this row existed: the runs' costs so far count.
                row = JudgeSpendMonth.objects.create(
                    workspace=workspace, month=month, spent_usd=month_to_date(workspace=workspace)
                )
        except IntegrityError:
            row = rows.get()  # another worker made it first
    if row.month != month:
        row.month, row.spent_usd = month, month_to_date(workspace=workspace)
        row.held_usd, row.held_until = Decimal(0), None
    if row.held_until is not None and row.held_until <= timezone.now():
        row.held_usd, row.held_until = Decimal(0), None
    return row


def reserve(*, workspace: Workspace, usd: Decimal, timeout: float) -> Decimal | None:
    """Hold `usd` for one call of at most `timeout` seconds; return the monthly budget
    instead, holding nothing, when the month's spend and holds would pass it."""
    with transaction.atomic():
        row = _locked_month(workspace)
        budget = (
            ProviderSettings.objects.for_workspace(workspace)
            .values_list("monthly_budget_usd", flat=True)
            .first()
        )
        if budget is not None and row.spent_usd + row.held_usd + usd > budget:
            row.save()
            return budget
        row.held_usd += usd
        row.held_until = timezone.now() + timedelta(seconds=timeout + HOLD_MARGIN_S)
        row.save()
    return None


def settle(*, workspace: Workspace, held: Decimal, cost: Decimal) -> None:
    """Release a call's hold and count what it cost (nothing when it failed)."""
    with transaction.atomic():
        row = _locked_month(workspace)
        row.held_usd = max(Decimal(0), row.held_usd - held)
        row.spent_usd += cost
        row.save()
