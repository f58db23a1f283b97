import datetime as dt

import pytest
from django.utils import timezone

from evals.matrix.selectors import comparison_matrix, matrix_cell
from evals.matrix.types import MatrixFilters
from evals.models import EvalExecution
from evals.versions.selectors import contradictions
from tests.evals.builders import labelled_set, make_eval, record
from tests.factories import UserFactory
from tests.traces.factories import TraceFactory
from traces.models import Feedback

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(workspace):
    """Three good and three bad traces; v1 passes everything, v2 gets one bad trace wrong."""
    eval_set, traces = labelled_set(workspace, good=3, bad=3, neutral=1)
    good, bad, neutral = traces[:3], traces[3:6], traces[6]
    v1 = make_eval(eval_set, version=1)
    v2 = make_eval(eval_set, version=2, parent=v1)
    for t in good + bad + [neutral]:
        record(v1, t, True)
    for t in good:
        record(v2, t, True)
    record(v2, bad[0], True)  # contradiction
    record(v2, bad[1], False)
    record(v2, bad[2], None, error="KeyError: 'x' (line 3 of the eval code)")
    return eval_set, good, bad, neutral, v1, v2


def test_matrix_counts_contradictions_per_version(setup):
    eval_set, good, bad, neutral, v1, v2 = setup

    matrix = comparison_matrix(eval_set=eval_set)

    assert [c.eval for c in matrix.columns] == [v1, v2]
    c1, c2 = matrix.columns
    assert (c1.agree, c1.contradict, c1.errors, c1.not_run) == (3, 3, 0, 0)
    assert (c2.agree, c2.contradict, c2.errors, c2.not_run) == (4, 1, 1, 1)
    assert matrix.total_rows == 7


def test_matrix_cells_are_coloured_against_the_human_label(setup):
    eval_set, good, bad, neutral, v1, v2 = setup

    rows = {r.trace.pk: r for r in comparison_matrix(eval_set=eval_set).rows}

    assert [c.state for c in rows[good[0].pk].cells] == ["agree", "agree"]
    assert [c.state for c in rows[bad[0].pk].cells] == ["contradict", "contradict"]
    assert [c.state for c in rows[bad[1].pk].cells] == ["contradict", "agree"]
    assert [c.verdict for c in rows[bad[2].pk].cells] == ["pass", "error"]
    assert [c.state for c in rows[neutral.pk].cells] == ["neutral", "missing"]
    assert rows[bad[0].pk].label == "negative"
    assert rows[bad[0].pk].notes == ["negative because of the output"]


def test_only_disagreements_keeps_rows_where_a_version_is_wrong_or_errs(setup):
    eval_set, good, bad, neutral, v1, v2 = setup

    all_versions = comparison_matrix(
        eval_set=eval_set, filters=MatrixFilters(only_disagreements=True)
    )
    just_v2 = comparison_matrix(
        eval_set=eval_set,
        filters=MatrixFilters(only_disagreements=True, version_ids=(v2.pk,)),
    )

    assert {r.trace.pk for r in all_versions.rows} == {t.pk for t in bad}
    assert {r.trace.pk for r in just_v2.rows} == {bad[0].pk, bad[2].pk}
    assert [c.eval for c in just_v2.columns] == [v2]
    # Counts describe every row in range, not only the disagreeing ones.
    assert just_v2.columns[0].agree == 4


def test_matrix_filters_by_date_and_source(setup):
    eval_set, good, bad, neutral, v1, v2 = setup
    early = timezone.make_aware(dt.datetime(2025, 1, 1, 9))
    for t in good:
        t.timestamp, t.source = early, "langfuse"
        t.save(update_fields=["timestamp", "source"])

    by_date = comparison_matrix(
        eval_set=eval_set,
        filters=MatrixFilters(date_from=dt.date(2025, 1, 1), date_to=dt.date(2025, 1, 1)),
    )
    by_source = comparison_matrix(eval_set=eval_set, filters=MatrixFilters(source="upload"))

    assert {r.trace.pk for r in by_date.rows} == {t.pk for t in good}
    assert by_date.columns[0].contradict == 0
    assert {r.trace.pk for r in by_source.rows} == {t.pk for t in bad} | {neutral.pk}


def test_ties_are_not_rows(setup, workspace):
    eval_set, good, bad, neutral, v1, v2 = setup
    Feedback.objects.create(
        workspace=workspace,
        trace=good[0],
        eval_set=eval_set,
        user=UserFactory(),
        rating="negative",
    )
    matrix = comparison_matrix(eval_set=eval_set)
    assert good[0].pk not in {r.trace.pk for r in matrix.rows}
    assert matrix.total_rows == 6


def test_matrix_paginates_newest_first(setup):
    eval_set, *_ = setup
    first = comparison_matrix(eval_set=eval_set, page_size=4)
    second = comparison_matrix(eval_set=eval_set, page=2, page_size=4)
    stamps = [r.trace.timestamp for r in first.rows + second.rows]
    assert (len(first.rows), len(second.rows), first.pages) == (4, 3, 2)
    assert stamps == sorted(stamps, reverse=True)
    assert first.has_next and not second.has_next


def test_matrix_page_costs_a_fixed_number_of_queries(workspace, django_assert_num_queries):
    eval_set, traces = labelled_set(workspace, good=30, bad=30)
    versions = [make_eval(eval_set, version=n) for n in range(1, 6)]
    for v in versions:
        for i, t in enumerate(traces):
            record(v, t, i % 3 != 0)

    # Versions, the cache stamps, the labels, the versions' verdicts, then the page's
    # traces, verdicts and notes.
    with django_assert_num_queries(7):
        matrix = comparison_matrix(eval_set=eval_set, page_size=50)
        cells = [c.state for row in matrix.rows for c in row.cells]
        [row.trace.name for row in matrix.rows]
    assert len(cells) == 250
    # The rows and counts come from the cache while nothing changed, whatever the filter.
    with django_assert_num_queries(5):
        comparison_matrix(eval_set=eval_set, filters=MatrixFilters(only_disagreements=True))
    with django_assert_num_queries(5):
        comparison_matrix(eval_set=eval_set, page=2, page_size=20)
    # A changed label: which traces changed, then only their labels, patched into the
    # cached base; the verdicts are not read again.
    feedback = Feedback.objects.get(trace=traces[0])
    feedback.rating = "negative"
    feedback.save()
    with django_assert_num_queries(7):
        comparison_matrix(eval_set=eval_set)
    # A new trace nobody labelled: which labelled traces changed, then their rows (only the
    # label above, changed within the settle window); not the set's labels.
    TraceFactory(workspace=workspace)
    with django_assert_num_queries(7):
        comparison_matrix(eval_set=eval_set)
    # A synced labelled trace: which changed, then its row only; a new run the verdicts
    # only.
    traces[1].save()
    with django_assert_num_queries(7):
        comparison_matrix(eval_set=eval_set)
    rerun = EvalExecution.objects.get(eval=versions[0], trace=traces[1])
    rerun.passed = not rerun.passed
    rerun.save()
    with django_assert_num_queries(6) as queries:
        comparison_matrix(eval_set=eval_set)
    # Only the version that ran again has its verdicts read: those written since.
    (read,) = [q["sql"] for q in queries.captured_queries if "GROUP BY passed" in q["sql"]]
    assert f"eval_id = {versions[0].pk} " in read
    assert "UNION ALL" not in read and "updated_at >" in read


def test_cell_detail_and_contradictions(setup):
    eval_set, good, bad, neutral, v1, v2 = setup

    cell = matrix_cell(eval=v2, trace=bad[2])
    wrong = contradictions(eval=v2)

    assert (cell.label, cell.state) == ("negative", "error")
    assert "KeyError" in cell.execution.error
    assert [ex.trace.pk for ex, _ in wrong] == [bad[0].pk, bad[2].pk]
