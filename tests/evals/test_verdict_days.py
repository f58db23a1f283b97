"""The dashboard's pass rate comes from per-day counts the database keeps (VerdictDay).

It used to count every verdict of the last 30 days on each view: at 100,000 traces a
read of most of the verdicts' table (bench/scale.py). The counts must stay what counting
the verdicts gives through everything that changes them: a re-run (a verdict keeps the
day it was first written, its outcome changes), deleted traces and evals, a new active
version, scores pushed (no change), and verdicts written in bulk by a run.
"""

import datetime as dt

import pytest
from django.db import connection
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import sandbox
from evals.execution.dashboard import RECENT_DAYS, dashboard
from evals.execution.runs import _upsert
from evals.models import Eval, EvalExecution, VerdictDay
from evals.versions.services import activate_eval
from tests.evals.builders import make_eval, record
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import deletions

pytestmark = pytest.mark.django_db

# Days ago each trace's verdicts were first written: today, the window's first and the
# day before it (29 and 30 days ago), and older.
DAYS_AGO = [0, 0, 1, 1, 2, 5, 5, 12, 29, 29, 30, 44]


def _outcome(n: int, version: int) -> bool | None:
    """Verdicts that differ by trace and version, with an error now and then."""
    if (n + version) % 5 == 0:
        return None
    return (n + 2 * version) % 3 != 0


def _result(passed: bool | None) -> sandbox.Result:
    if passed is None:
        return sandbox.Result(passed=None, reason="", error="Timed out", duration_ms=1.0)
    return sandbox.Result(passed=passed, reason="ok" if passed else "no", error=None, duration_ms=1)


def _judge(eval, traces, *, flip: bool = False) -> None:
    """Write the version's verdicts on `traces` in one batch, as a run does."""
    outcomes = [_outcome(n, eval.version) for n, _ in enumerate(traces)]
    if flip:
        outcomes = [None if p is None else not p for p in outcomes]
    _upsert(
        eval=eval, run=None, trace_ids=[t.pk for t in traces], results=list(map(_result, outcomes))
    )


def _first_written(traces) -> None:
    """Date each trace's verdicts DAYS_AGO its position says (an update of their rows)."""
    now = timezone.now()
    for trace, ago in zip(traces, DAYS_AGO, strict=True):
        EvalExecution.objects.filter(trace=trace).update(created_at=now - dt.timedelta(days=ago))


@pytest.fixture
def world(workspace, other_workspace):
    """Two sets of a workspace (versions active, shadow and draft) and a set elsewhere."""
    refund = EvalSetFactory(workspace=workspace)
    tone = EvalSetFactory(workspace=workspace)
    elsewhere = EvalSetFactory(workspace=other_workspace)
    traces = [TraceFactory(workspace=workspace) for _ in DAYS_AGO]
    others = [TraceFactory(workspace=other_workspace) for _ in DAYS_AGO]
    v1 = make_eval(refund, version=1, status="active", activated_at=timezone.now())
    v2 = make_eval(refund, version=2, status="shadow", parent=v1)
    v3 = make_eval(refund, version=3, parent=v1)
    tone_v1 = make_eval(tone, version=1, status="active", activated_at=timezone.now())
    far = make_eval(elsewhere, version=1, status="active", activated_at=timezone.now())
    for eval in (v1, v2, v3, tone_v1):
        _judge(eval, traces)
    _judge(far, others)
    _first_written(traces)
    _first_written(others)
    # One verdict written alone, as a single trace's run writes it.
    late = TraceFactory(workspace=workspace)
    record(tone_v1, late, False)
    return {"workspace": workspace, "traces": traces, "late": late, "evals": (v1, v2, v3, tone_v1)}


def _counted() -> dict:
    """Each eval's verdicts per day, counted from the verdicts."""
    rows = (
        EvalExecution.objects.annotate(day=TruncDate("created_at"))
        .values("eval_id", "day")
        .annotate(
            n_passed=Count("id", filter=Q(passed=True)),
            n_failed=Count("id", filter=Q(passed=False)),
            n_errored=Count("id", filter=Q(passed__isnull=True)),
        )
        .order_by()
    )
    return {(r["eval_id"], r["day"]): (r["n_passed"], r["n_failed"], r["n_errored"]) for r in rows}


def _kept() -> dict:
    return {
        (d.eval_id, d.day): (d.passed, d.failed, d.errored)
        for d in VerdictDay.objects.all()
        if (d.passed, d.failed, d.errored) != (0, 0, 0)
    }


def _from_the_verdicts(workspace) -> tuple:
    """The dashboard's pass rate figures as it computed them from the verdicts, over the
    same whole days (today and the 29 before)."""
    first_day = timezone.localdate() - dt.timedelta(days=RECENT_DAYS - 1)
    executions = EvalExecution.objects.for_workspace(workspace).filter(
        created_at__date__gte=first_day, eval__status=Eval.Status.ACTIVE
    )
    by_day = (
        executions.exclude(passed__isnull=True)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(total=Count("id"), n_passed=Count("id", filter=Q(passed=True)))
        .order_by("day")
    )
    series = [(r["day"], r["n_passed"] / r["total"], r["total"]) for r in by_day]
    judged = sum(r["total"] for r in by_day)
    passed = sum(r["n_passed"] for r in by_day)
    return series, passed / judged if judged else None, executions.count()


def _shown(workspace) -> tuple:
    data = dashboard(workspace=workspace)
    return data.pass_rate_by_day, data.pass_rate, data.executions_recent


def _same_as_counting(workspace) -> None:
    assert _kept() == _counted()
    assert _shown(workspace) == _from_the_verdicts(workspace)


def test_counts_equal_the_verdicts_after_they_are_written(world):
    workspace = world["workspace"]
    series, rate, verdicts = _shown(workspace)

    _same_as_counting(workspace)
    # The window: today and the 29 days before; the verdicts 30 and 44 days old are out.
    assert series[0][0] == timezone.localdate() - dt.timedelta(days=29)
    assert 0 < rate < 1
    assert verdicts == 2 * (len(DAYS_AGO) - 2) + 1  # the two active versions', and the late one


def test_a_rerun_keeps_the_day_and_counts_the_new_outcome(world):
    v1, v2, v3, tone_v1 = world["evals"]
    before = _shown(world["workspace"])

    _judge(v1, world["traces"], flip=True)

    _same_as_counting(world["workspace"])
    assert _shown(world["workspace"]) != before


def test_deleted_traces_and_evals_leave_the_counts(world, owner):
    workspace = world["workspace"]
    v1, v2, v3, tone_v1 = world["evals"]
    traces = world["traces"]
    run = deletions.request_traces_deletion(
        workspace=workspace, trace_ids=[traces[0].pk, traces[3].pk, traces[8].pk], user=owner
    )
    deletions.execute_deletion(run_id=run.pk)
    _same_as_counting(workspace)

    v3.delete()
    assert not VerdictDay.objects.filter(eval_id=v3.pk).exists()
    _same_as_counting(workspace)

    run = deletions.request_eval_set_deletion(eval_set=tone_v1.eval_set, user=owner)
    deletions.execute_deletion(run_id=run.pk)
    _same_as_counting(workspace)
    assert not VerdictDay.objects.filter(eval_id=tone_v1.pk).exists()


def test_a_new_active_version_brings_its_own_verdicts(world):
    v1, v2, v3, tone_v1 = world["evals"]
    before = _shown(world["workspace"])

    activate_eval(eval=v3)

    _same_as_counting(world["workspace"])
    assert _shown(world["workspace"]) != before


def test_scores_pushed_change_no_count(world):
    before = _kept()

    EvalExecution.objects.update(score_pushed_at=timezone.now(), score_error="")

    assert _kept() == before == _counted()


def test_the_dashboard_counts_no_verdicts_by_their_time(world):
    """Its pass rate is read from the day counts: no statement reads the verdicts of a
    period (its one read of them by time would be every verdict of 30 days)."""
    with CaptureQueriesContext(connection) as captured:
        dashboard(workspace=world["workspace"])

    by_time = [q["sql"] for q in captured if '"evals_evalexecution"."created_at" >=' in q["sql"]]
    assert by_time == []


def test_the_pages_statements_do_not_grow_with_the_verdicts(world, owner, login):
    client = login(owner)
    v1, v2, v3, tone_v1 = world["evals"]
    pages = [
        f"/w/{world['workspace'].slug}/evals/dashboard/",
        f"/w/{world['workspace'].slug}/traces/eval-sets/{v1.eval_set_id}/",
    ]

    def statements() -> list[int]:
        counts = []
        for url in pages:
            with CaptureQueriesContext(connection) as captured:
                assert client.get(url).status_code == 200
            counts.append(len(captured))
        return counts

    statements()  # the first view's one-off reads (the session's, cached figures)
    before = statements()
    more = [TraceFactory(workspace=world["workspace"]) for _ in range(40)]
    for eval in (v1, v2, tone_v1):
        _judge(eval, more)
    EvalExecution.objects.filter(trace__in=more[:20]).update(
        created_at=timezone.now() - dt.timedelta(days=3)
    )

    assert statements() == before
    _same_as_counting(world["workspace"])
