"""A label change updates the cached comparison matrix instead of rebuilding it.

After each change the matrix must equal one built from nothing (cache cleared), and the
labels it re-read must be those of the changed traces only.
"""

import datetime as dt
import re
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.matrix import index
from evals.matrix.cache import MATRIX_SETTLE_SECONDS
from evals.matrix.index import forget_parts_seen
from evals.matrix.selectors import comparison_matrix
from evals.matrix.types import MatrixFilters
from tests.evals.builders import labelled_set, make_eval, record
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import TraceFactory, trace_data
from traces.ingest import upsert_traces
from traces.models import Feedback
from traces.services import add_traces_to_eval_set, record_feedback, undo_last_feedback

pytestmark = pytest.mark.django_db


def _view(eval_set, **filters):
    matrix = comparison_matrix(eval_set=eval_set, filters=MatrixFilters(**filters), page_size=500)
    columns = [(c.eval.pk, c.agree, c.contradict, c.errors, c.not_run) for c in matrix.columns]
    rows = [(r.trace.pk, r.label, [c.state for c in r.cells]) for r in matrix.rows]
    return columns, rows


def _fresh(eval_set, **filters):
    cache.clear()
    forget_parts_seen()
    return _view(eval_set, **filters)


def _labels_read(eval_set) -> list[str]:
    """Run the matrix and return the label statements it ran."""
    with CaptureQueriesContext(connection) as queries:
        _view(eval_set)
    return [q["sql"] for q in queries if "SUM(id) AS ids" in q["sql"]]


def _restricted_to(statement: str) -> set[int]:
    """The trace ids a labels statement is restricted to: ``IN (1, 2)`` (SQLite) or
    ``= ANY('{1,2}')`` (PostgreSQL)."""
    found = re.search(r"trace_id (?:IN \(|= ANY\('\{)([\d, ]+)", statement)
    return {int(pk) for pk in found.group(1).split(",")} if found else set()


@pytest.fixture
def matrix(workspace):
    eval_set, traces = labelled_set(workspace, good=6, bad=6, neutral=2)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    # Labelled an hour ago: older than the window a patch re-reads for late commits.
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    Feedback.objects.filter(eval_set=eval_set).update(
        created_at=an_hour_ago, updated_at=an_hour_ago
    )
    versions = [make_eval(eval_set, version=n) for n in (1, 2)]
    for version in versions:
        for i, trace in enumerate(traces):
            record(version, trace, i % 3 != 0)
    _view(eval_set)  # cached
    return eval_set, traces, versions


def test_a_changed_label_patches_the_cached_matrix(matrix, workspace):
    eval_set, traces, _ = matrix
    reviewer = Feedback.objects.filter(eval_set=eval_set).first().user

    record_feedback(eval_set=eval_set, trace=traces[0], user=reviewer, rating="negative")

    statements = _labels_read(eval_set)
    # Only the changed trace's labels were read, not the set's.
    assert len(statements) == 1 and _restricted_to(statements[0]) == {traces[0].pk}
    assert _view(eval_set) == _fresh(eval_set)


def test_new_labels_ties_and_filters_stay_right(matrix, workspace):
    eval_set, traces, versions = matrix
    reviewer = Feedback.objects.filter(eval_set=eval_set).first().user
    second = MembershipFactory(workspace=workspace, user=UserFactory()).user
    new = TraceFactory(workspace=workspace)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[new.pk])
    record(versions[0], new, False)
    _view(eval_set)

    # A first label on a trace the matrix did not show, and a tie that removes one.
    record_feedback(eval_set=eval_set, trace=new, user=reviewer, rating="positive")
    record_feedback(eval_set=eval_set, trace=traces[1], user=second, rating="negative")

    patched = _view(eval_set)
    assert new.pk in [pk for pk, _, _ in patched[1]]
    assert traces[1].pk not in [pk for pk, _, _ in patched[1]]
    assert patched == _fresh(eval_set)
    # Filtered views come from the same cached base, and are right too.
    record_feedback(eval_set=eval_set, trace=traces[2], user=second, rating="neutral")
    day = traces[3].timestamp.date()
    assert _view(eval_set, date_from=day, date_to=day) == _fresh(
        eval_set, date_from=day, date_to=day
    )
    assert _view(eval_set, only_disagreements=True) == _fresh(eval_set, only_disagreements=True)


def test_a_deleted_label_rebuilds_rather_than_guess(matrix, workspace):
    eval_set, traces, _ = matrix
    reviewer = Feedback.objects.filter(eval_set=eval_set).first().user
    record_feedback(eval_set=eval_set, trace=traces[4], user=reviewer, rating="neutral")
    _view(eval_set)

    undo_last_feedback(eval_set=eval_set, user=reviewer)

    assert _view(eval_set) == _fresh(eval_set)
    assert traces[4].pk not in [pk for pk, _, _ in _view(eval_set)[1]]


def test_new_traces_leave_the_cached_matrix_as_it_is(matrix, workspace):
    """Ingestion writes new traces all the time on a busy workspace: they have no label
    yet, so the next matrix page is the cached one (no label read, no patch)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's upsert stamps created_at and updated_at apart")
    eval_set, _traces, _ = matrix
    with CaptureQueriesContext(connection) as cached:
        _view(eval_set)

    upsert_traces(workspace=workspace, source="api", traces=[trace_data(n) for n in (801, 802)])

    with CaptureQueriesContext(connection) as after:
        shown = _view(eval_set)
    assert len(after) == len(cached)
    assert shown == _fresh(eval_set)


def test_labels_read_again_unchanged_are_no_change(matrix, workspace):
    """A patch reads again every label of the settle window: only the traces whose rows
    differ are changes, to judge again and to remember for views judged earlier."""
    eval_set, traces, _ = matrix
    reviewer = Feedback.objects.filter(eval_set=eval_set).first().user
    record_feedback(eval_set=eval_set, trace=traces[0], user=reviewer, rating="negative")
    _view(eval_set)

    record_feedback(eval_set=eval_set, trace=traces[1], user=reviewer, rating="negative")

    statements = _labels_read(eval_set)  # both traces' labels (within the settle window)
    assert len(statements) == 1 and _restricted_to(statements[0]) == {traces[0].pk, traces[1].pk}
    (base,) = (value for value, _until in index._bases_seen.items.values())
    assert [pk for _, pk in base.since[-1][1]] == [traces[1].pk]
    assert _view(eval_set) == _fresh(eval_set)


def test_a_view_past_its_settle_time_is_patched_not_built_again(matrix, workspace, monkeypatch):
    """A label committed behind the newest one seen (an equal stamp) shows once that one
    has settled: the next page reads the settle window's labels again, not all of them."""
    eval_set, traces, _ = matrix
    reviewer = Feedback.objects.filter(eval_set=eval_set).first().user
    record_feedback(eval_set=eval_set, trace=traces[0], user=reviewer, rating="negative")
    _view(eval_set)
    late = timezone.now() - dt.timedelta(seconds=5)
    Feedback.objects.filter(trace=traces[8]).update(rating="positive", updated_at=late)
    assert "negative" in {label for pk, label, _ in _view(eval_set)[1] if pk == traces[8].pk}

    settled = time.time() + MATRIX_SETTLE_SECONDS + 1
    monkeypatch.setattr(time, "time", lambda: settled)
    judge = index._judge
    monkeypatch.setattr(index, "_judge", lambda *args: pytest.fail("judged whole"))
    statements = _labels_read(eval_set)
    monkeypatch.setattr(index, "_judge", judge)

    assert len(statements) == 1
    assert _restricted_to(statements[0]) == {traces[0].pk, traces[8].pk}
    shown = _view(eval_set)
    assert "positive" in {label for pk, label, _ in shown[1] if pk == traces[8].pk}
    assert shown == _fresh(eval_set)


def test_another_workspaces_writes_leave_this_matrix_as_it_is(matrix, workspace, other_workspace):
    """Tenancy: the stamp, the patches and the page read this workspace's rows only."""
    eval_set, traces, _ = matrix
    theirs, their_traces = labelled_set(other_workspace, good=2, bad=2)
    add_traces_to_eval_set(eval_set=theirs, trace_ids=[t.pk for t in their_traces])
    _view(theirs)
    mine = _view(eval_set)

    data = trace_data(901)
    upsert_traces(workspace=other_workspace, source="api", traces=[data])
    moved = {**data, "timestamp": "2020-01-01T00:00:00+00:00"}
    upsert_traces(workspace=other_workspace, source="api", traces=[moved])  # a re-import
    record_feedback(
        eval_set=theirs,
        trace=their_traces[0],
        user=Feedback.objects.filter(eval_set=theirs).first().user,
        rating="negative",
    )

    assert _labels_read(eval_set) == []  # nothing of this set changed
    shown = _view(eval_set)
    assert shown == mine == _fresh(eval_set)
    assert {pk for pk, _, _ in shown[1]} == {t.pk for t in traces}
