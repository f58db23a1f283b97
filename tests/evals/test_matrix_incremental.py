"""A label change updates the cached comparison matrix instead of rebuilding it.

After each change the matrix must equal one built from nothing (cache cleared), and the
labels it re-read must be those of the changed traces only.
"""

import datetime as dt

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evals.matrix.index import forget_parts_seen
from evals.matrix.selectors import comparison_matrix
from evals.matrix.types import MatrixFilters
from tests.evals.builders import labelled_set, make_eval, record
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import TraceFactory
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
    assert len(statements) == 1 and f"trace_id IN ({traces[0].pk})" in statements[0]
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
