"""The dashboard's month of judge spend comes from per-day sums the database keeps
(VerdictSpendDay), not from every verdict written this month.

It used to sum every verdict updated this month on each view: at 100,000 traces the
dashboard's slowest statement (bench/scale.py). The figures must stay what summing the
verdicts gives: a verdict counts in the month of its ``updated_at`` (a re-run moves its
new cost to the re-run's day), through deletions, pushed scores and other workspaces.
"""

import datetime as dt
import importlib
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import sandbox
from evals.execution.runs import _upsert
from evals.judging.ledger import month_start
from evals.judging.session import Usage
from evals.judging.spend import Spend, month_spend
from evals.models import EvalExecution, EvalKind, EvalRun, VerdictSpendDay
from tests.evals.builders import make_eval
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import deletions

pytestmark = pytest.mark.django_db

PRICED = Usage(calls=2, input_tokens=10, output_tokens=5, cost_usd=Decimal("0.0123456789"))
UNPRICED = Usage(calls=3, unpriced_calls=3)


def _from_the_verdicts(workspace) -> tuple:
    """The dashboard's spend figures as month_spend summed them from the verdicts."""
    this_month = EvalExecution.objects.for_workspace(workspace).filter(
        updated_at__gte=month_start()
    )
    judging = Q(eval__kind__in=(EvalKind.JUDGE, EvalKind.HYBRID))
    judged = this_month.filter(judging)
    row = judged.aggregate(
        n=Count("id"),
        calls=Sum("judge_calls"),
        cost=Sum("cost_usd"),
        unpriced=Sum("unpriced_calls"),
    )
    models = tuple(
        judged.filter(unpriced_calls__gt=0)
        .values_list("run__judge_model", flat=True)
        .distinct()
        .order_by()
    )
    spend = Spend(
        row["n"] or 0,
        row["calls"] or 0,
        row["cost"] or Decimal(0),
        row["unpriced"] or 0,
        models if row["unpriced"] else (),
    )
    return spend, this_month.exclude(judging).count()


def _shown(workspace) -> tuple:
    data = month_spend(workspace=workspace)
    judged = data.judged
    # The models' order is the database's: compare them as a set.
    return (
        Spend(judged.traces, judged.calls, judged.cost_usd, judged.unpriced_calls),
        set(judged.unpriced_models),
        data.code_verdicts,
    )


def _same_as_summing(*workspaces) -> None:
    for workspace in workspaces:
        spend, code = _from_the_verdicts(workspace)
        models = set(spend.unpriced_models)
        plain = Spend(spend.traces, spend.calls, spend.cost_usd, spend.unpriced_calls)
        assert _shown(workspace) == (plain, models, code)


def _judge(eval, traces, usage: Usage, *, run=None) -> None:
    """Write the version's verdicts on `traces` in one batch, as a run does."""
    result = sandbox.Result(passed=True, reason="ok", error=None, duration_ms=1.0)
    _upsert(
        eval=eval,
        run=run,
        trace_ids=[t.pk for t in traces],
        results=[result] * len(traces),
        usage=[usage] * len(traces),
    )


def _dated(traces, when) -> None:
    EvalExecution.objects.filter(trace__in=traces).update(updated_at=when)


@pytest.fixture
def world(workspace, other_workspace):
    """A judge, a hybrid and a code eval of a workspace, and a judge elsewhere, with
    verdicts written this month (on its first instant and now), last month and before."""
    judge = make_eval(EvalSetFactory(workspace=workspace), version=1, kind=EvalKind.JUDGE)
    hybrid = make_eval(EvalSetFactory(workspace=workspace), version=1, kind=EvalKind.HYBRID)
    code = make_eval(EvalSetFactory(workspace=workspace), version=1, kind=EvalKind.CODE)
    far = make_eval(EvalSetFactory(workspace=other_workspace), version=1, kind=EvalKind.JUDGE)
    traces = [TraceFactory(workspace=workspace) for _ in range(8)]
    others = [TraceFactory(workspace=other_workspace) for _ in range(4)]
    local = EvalRun.objects.create(
        workspace=workspace, eval=hybrid, trigger="manual", judge_model="local-llama"
    )
    _judge(judge, traces, PRICED)
    _judge(hybrid, traces[:4], UNPRICED, run=local)
    _judge(hybrid, traces[4:], PRICED)
    _judge(code, traces, Usage())
    _judge(far, others, PRICED)
    start = month_start()
    _dated(traces[:2], start)  # the month's first instant: this month
    _dated(traces[2:4], start - dt.timedelta(microseconds=1))  # last month's last
    _dated(traces[4:6], start - dt.timedelta(days=40))  # before that
    _dated(others[:2], start - dt.timedelta(days=3))
    return {
        "workspace": workspace,
        "other": other_workspace,
        "traces": traces,
        "evals": (judge, hybrid, code, far),
        "others": others,
        "local": local,
    }


def test_the_month_s_spend_equals_the_verdicts_sum(world):
    workspace, other = world["workspace"], world["other"]
    shown, models, code_verdicts = _shown(workspace)

    _same_as_summing(workspace, other)
    # This month: traces 0, 1, 6 and 7 of the judge and the hybrid; 0 and 1 unpriced.
    assert shown.traces == 8 and code_verdicts == 4
    assert shown.cost_usd == 6 * PRICED.cost_usd and shown.unpriced_calls == 2 * 3
    assert models == {"local-llama"}


def test_a_rerun_moves_the_verdict_s_new_cost_into_this_month(world):
    judge, hybrid, code, far = world["evals"]
    traces = world["traces"]
    before = _shown(world["workspace"])

    # Last month's and older verdicts re-run now: they count this month, at their new cost.
    local = EvalRun.objects.create(
        workspace=judge.workspace, eval=judge, trigger="manual", judge_model="other-llama"
    )
    _judge(judge, traces[2:6], UNPRICED, run=local)
    _judge(hybrid, traces[:2], PRICED)  # this month's unpriced ones, priced now
    _same_as_summing(world["workspace"], world["other"])
    assert _shown(world["workspace"]) != before

    # A verdict re-dated into last month leaves this month's figures.
    _dated(traces[6:], month_start() - dt.timedelta(days=1))
    _same_as_summing(world["workspace"], world["other"])


def test_deleted_traces_and_evals_leave_the_month(world, owner):
    workspace = world["workspace"]
    judge, hybrid, code, far = world["evals"]
    traces = world["traces"]
    run = deletions.request_traces_deletion(
        workspace=workspace, trace_ids=[traces[0].pk, traces[3].pk, traces[7].pk], user=owner
    )
    deletions.execute_deletion(run_id=run.pk)
    _same_as_summing(workspace, world["other"])

    hybrid.delete()
    assert not VerdictSpendDay.objects.filter(eval_id=hybrid.pk).exists()
    _same_as_summing(workspace, world["other"])

    run = deletions.request_eval_set_deletion(eval_set=judge.eval_set, user=owner)
    deletions.execute_deletion(run_id=run.pk)
    _same_as_summing(workspace, world["other"])
    assert _shown(workspace)[0] == Spend(0, 0, Decimal(0))


def test_scores_pushed_and_runs_unlinked_change_no_sum(world):
    before = {(d.eval_id, d.day): d.cost_usd for d in VerdictSpendDay.objects.all()}

    EvalExecution.objects.update(score_pushed_at=timezone.now(), score_error="")
    world["local"].delete()  # its verdicts keep their spend, with no run

    after = {(d.eval_id, d.day): d.cost_usd for d in VerdictSpendDay.objects.all()}
    assert after == before
    _same_as_summing(world["workspace"], world["other"])


def test_the_month_s_spend_reads_no_verdicts_by_their_time(world):
    """Its figures are read from the day sums: no statement reads the verdicts updated
    this month (every verdict a month of runs wrote), unless unpriced calls name their
    models."""
    EvalExecution.objects.filter(unpriced_calls__gt=0).delete()
    with CaptureQueriesContext(connection) as captured:
        month_spend(workspace=world["workspace"])

    by_time = [q["sql"] for q in captured if '"evals_evalexecution"."updated_at" >=' in q["sql"]]
    assert by_time == []


def test_the_migration_sums_the_verdicts_already_written(world):
    """Written before the triggers existed, the verdicts are summed by the migration."""
    migration = importlib.import_module("evals.migrations.0024_verdict_spend_days")
    VerdictSpendDay.objects.all().delete()
    with connection.cursor() as cursor:
        # What the migration's functions use of a schema editor (SQLite refuses one inside
        # the test's transaction).
        editor = SimpleNamespace(connection=connection, execute=cursor.execute)
        migration.drop_triggers(None, editor)
        migration.create_triggers(None, editor)

    _same_as_summing(world["workspace"], world["other"])
    _judge(world["evals"][0], world["traces"][2:4], UNPRICED)  # and the triggers count again
    _same_as_summing(world["workspace"], world["other"])
