"""The comparison matrix is cached between loads: every change it shows must show at once."""

import datetime as dt
import time

import pytest
from django.urls import reverse
from django.utils import timezone

import sandbox
from evals.execution.runs import record_results
from evals.matrix.cache import MATRIX_SETTLE_SECONDS
from evals.matrix.index import forget_parts_seen
from evals.matrix.selectors import comparison_matrix
from evals.matrix.types import MatrixFilters
from evals.models import EvalExecution
from tests.evals.builders import labelled_set, make_eval, record
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import TraceFactory, trace_data
from traces.ingest import upsert_traces
from traces.models import Feedback, Trace
from traces.services import add_traces_to_eval_set, record_feedback, undo_last_feedback

pytestmark = pytest.mark.django_db


@pytest.fixture
def matrix_set(workspace):
    """Two good and two bad traces; v1 passes everything (wrong on both bad traces)."""
    reviewer = MembershipFactory(workspace=workspace, user=UserFactory()).user
    eval_set, traces = labelled_set(workspace, good=2, bad=2, user=reviewer)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    v1 = make_eval(eval_set, version=1)
    for t in traces:
        record(v1, t, True)
    return eval_set, traces, v1, reviewer


@pytest.fixture
def settle(settings, monkeypatch):
    """Return a function that moves the clock past the settle time of the changes so far.

    The cache's expiry moves with it: a locmem cache, whose clock is ``time.time``. A Redis
    cache (CACHE_URL) keeps the server's clock, which no test moves: it would still hold
    what expired here, which a reader that misses its own copy takes as fresh.
    """
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    def _settle():
        settled = time.time() + MATRIX_SETTLE_SECONDS + 1
        monkeypatch.setattr(time, "time", lambda: settled)

    return _settle


def counts(matrix):
    column = matrix.columns[0]
    return column.agree, column.contradict, column.errors, column.not_run


def test_a_new_label_a_changed_label_and_an_undone_label_show_on_the_next_load(
    workspace, matrix_set
):
    eval_set, traces, v1, reviewer = matrix_set
    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 2, 0, 0)
    fresh = TraceFactory(workspace=workspace, data=trace_data(99))
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[fresh.pk])

    record_feedback(eval_set=eval_set, trace=fresh, user=reviewer, rating="negative")
    matrix = comparison_matrix(eval_set=eval_set)
    assert fresh.pk in {r.trace.pk for r in matrix.rows}
    assert counts(matrix) == (2, 2, 0, 1)  # v1 never ran on the new trace

    record_feedback(eval_set=eval_set, trace=traces[2], user=reviewer, rating="positive")
    assert counts(comparison_matrix(eval_set=eval_set)) == (3, 1, 0, 1)

    undo_last_feedback(eval_set=eval_set, user=reviewer)  # deletes that trace's only label
    matrix = comparison_matrix(eval_set=eval_set)
    assert traces[2].pk not in {r.trace.pk for r in matrix.rows}
    assert counts(matrix) == (2, 1, 0, 1)


def test_a_new_run_of_a_version_shows_on_the_next_load(matrix_set):
    eval_set, traces, v1, _ = matrix_set
    only_disagreements = MatrixFilters(only_disagreements=True)
    assert comparison_matrix(eval_set=eval_set, filters=only_disagreements).total_rows == 2

    record_results(
        eval=v1,
        run=None,
        traces=traces[2:],
        results=[sandbox.Result(False, "refused", None, 1.0), sandbox.Result(None, "", "boom", 1)],
    )

    assert counts(comparison_matrix(eval_set=eval_set)) == (3, 0, 1, 0)
    disagreeing = comparison_matrix(eval_set=eval_set, filters=only_disagreements)
    assert [r.trace.pk for r in disagreeing.rows] == [traces[3].pk]
    assert [c.verdict for c in disagreeing.rows[0].cells] == ["error"]


def test_a_trace_moved_out_of_the_date_range_leaves_it_on_the_next_load(matrix_set):
    eval_set, traces, v1, _ = matrix_set
    days = sorted(timezone.localdate(t.timestamp) for t in traces)
    in_range = MatrixFilters(date_from=days[0], date_to=days[-1])
    assert comparison_matrix(eval_set=eval_set, filters=in_range).total_rows == 4

    traces[0].timestamp -= dt.timedelta(days=400)
    traces[0].save()  # a re-import with a corrected time

    matrix = comparison_matrix(eval_set=eval_set, filters=in_range)
    assert traces[0].pk not in {r.trace.pk for r in matrix.rows}
    assert counts(matrix) == (1, 2, 0, 0)


def test_a_change_committed_behind_a_newer_one_shows_once_it_has_settled(matrix_set, settle):
    """A label written with an older time than one already seen (transactions committing
    out of order) cannot change the cache stamp; it shows once the newest change settles."""
    eval_set, traces, v1, reviewer = matrix_set
    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 2, 0, 0)
    Feedback.objects.filter(trace=traces[2]).update(rating="positive")  # keeps updated_at

    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 2, 0, 0)
    settle()
    assert counts(comparison_matrix(eval_set=eval_set)) == (3, 1, 0, 0)


def test_a_verdict_committed_behind_a_newer_one_shows_once_it_has_settled(matrix_set, settle):
    """A verdict written with an older time than the version's newest execution already
    seen (a batch run committing after a later one) cannot change the cache stamp; it
    shows once the newest execution settles, in the process that read the verdicts too."""
    eval_set, traces, v1, reviewer = matrix_set
    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 2, 0, 0)
    EvalExecution.objects.filter(eval=v1, trace=traces[2]).update(passed=False)  # same time

    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 2, 0, 0)
    settle()
    assert counts(comparison_matrix(eval_set=eval_set)) == (3, 1, 0, 0)
    forget_parts_seen()  # another process, which reads the cache
    assert counts(comparison_matrix(eval_set=eval_set)) == (3, 1, 0, 0)


def test_labelling_a_trace_changes_the_matrix_page(login, owner, workspace, matrix_set):
    eval_set, traces, v1, reviewer = matrix_set
    client = login(owner)
    page = reverse("evals:matrix", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
    wrong = 'data-testid="contradictions-v1"><span class="bad">2</span>'
    assert wrong in client.get(page).content.decode()

    record_feedback(eval_set=eval_set, trace=traces[2], user=reviewer, rating="positive")

    body = client.get(page).content.decode()
    assert 'data-testid="contradictions-v1"><span class="bad">1</span>' in body


def test_the_matrix_is_built_without_the_cache_when_the_cache_is_down(matrix_set, settings):
    eval_set, traces, v1, reviewer = matrix_set
    # Nothing listens on port 1: every cache call fails at once.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 2, 0, 0)
    record_feedback(eval_set=eval_set, trace=traces[2], user=reviewer, rating="positive")
    assert counts(comparison_matrix(eval_set=eval_set)) == (3, 1, 0, 0)


def test_a_label_on_a_trace_the_version_already_judged_shows_its_verdict(workspace, matrix_set):
    # Continuous evaluation judged the trace before anyone labelled it.
    eval_set, traces, v1, reviewer = matrix_set
    judged = TraceFactory(workspace=workspace, data=trace_data(98))
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[judged.pk])
    record(v1, judged, True)
    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 2, 0, 0)

    record_feedback(eval_set=eval_set, trace=judged, user=reviewer, rating="negative")

    assert counts(comparison_matrix(eval_set=eval_set)) == (2, 3, 0, 0)


def test_a_re_import_with_a_new_time_moves_the_trace_on_the_next_load(workspace, matrix_set):
    """Ingestion's upsert: a trace written again (not a new one) is what the cache watches."""
    eval_set, traces, v1, reviewer = matrix_set
    data = trace_data(77)
    trace = Trace.objects.get(
        pk=upsert_traces(workspace=workspace, source="api", traces=[data]).trace_ids[0]
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])
    record_feedback(eval_set=eval_set, trace=trace, user=reviewer, rating="positive")
    day = timezone.localdate(trace.timestamp)
    in_range = MatrixFilters(date_from=day, date_to=day)
    assert trace.pk in {
        r.trace.pk for r in comparison_matrix(eval_set=eval_set, filters=in_range).rows
    }

    moved = {**data, "timestamp": (trace.timestamp - dt.timedelta(days=400)).isoformat()}
    upsert_traces(workspace=workspace, source="api", traces=[moved])

    matrix = comparison_matrix(eval_set=eval_set, filters=in_range)
    assert trace.pk not in {r.trace.pk for r in matrix.rows}
