"""The comparison matrix, cached and updated label by label, equals one computed from scratch.

The expected matrix is computed here from the rows themselves (majority labels, one
verdict per version and trace), not by the matrix's code. After each of a series of label
changes, first labels, ties and deletions, the matrix read through the cache (updated
incrementally) and the matrix read with nothing cached must both equal it, in every view.
"""

import datetime as dt
from collections import Counter

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import sandbox
from evals.execution.runs import record_results
from evals.matrix import index
from evals.matrix.selectors import comparison_matrix
from evals.matrix.types import MatrixFilters
from evals.metrics.agreement import cell_state
from evals.models import EvalExecution
from tests.evals.builders import make_eval, record
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces.models import Feedback, Trace
from traces.services import (
    add_traces_to_eval_set,
    record_feedback,
    resolve_label,
    undo_last_feedback,
)

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def _expected(eval_set, versions, filters: MatrixFilters):
    """(columns, rows) of the matrix, from the labels and executions as stored."""
    ratings: dict[int, Counter] = {}
    for trace_id, rating in Feedback.objects.filter(eval_set=eval_set).values_list(
        "trace_id", "rating"
    ):
        ratings.setdefault(trace_id, Counter())[rating] += 1
    traces = Trace.objects.filter(workspace=eval_set.workspace, pk__in=ratings)
    labelled = []
    for trace in traces.order_by("-timestamp", "-id"):
        label = resolve_label(ratings[trace.pk])
        day = timezone.localtime(trace.timestamp).date()
        if label is None or (filters.source and trace.source != filters.source):
            continue
        if (filters.date_from and day < filters.date_from) or (
            filters.date_to and day > filters.date_to
        ):
            continue
        labelled.append((trace.pk, label))
    verdicts = {
        (e, t): passed
        for e, t, passed in EvalExecution.objects.filter(eval__in=versions).values_list(
            "eval_id", "trace_id", "passed"
        )
    }
    columns, rows = [], []
    states = {
        (pk, v.pk): cell_state(label, verdicts.get((v.pk, pk)), ran=(v.pk, pk) in verdicts)
        for pk, label in labelled
        for v in versions
    }
    for version in versions:
        tally = Counter(states[pk, version.pk] for pk, _ in labelled)
        columns.append(
            (version.pk, tally["agree"], tally["contradict"], tally["error"], tally["missing"])
        )
    for pk, label in labelled:
        cells = [states[pk, v.pk] for v in versions]
        if filters.only_disagreements and not {"contradict", "error"} & set(cells):
            continue
        rows.append((pk, label, cells))
    return columns, rows


def _shown(eval_set, filters: MatrixFilters):
    matrix = comparison_matrix(eval_set=eval_set, filters=filters, page_size=200)
    columns = [(c.eval.pk, c.agree, c.contradict, c.errors, c.not_run) for c in matrix.columns]
    rows = [(r.trace.pk, r.label, [c.state for c in r.cells]) for r in matrix.rows]
    assert matrix.total_rows == len(rows)
    return columns, rows


def _from_nothing(eval_set, filters: MatrixFilters):
    """The matrix as a restarted server with an empty cache builds it."""
    cache.clear()
    index.forget_parts_seen()
    return _shown(eval_set, filters)


@pytest.fixture
def board(workspace):
    """30 traces over six days and two sources, 24 labelled by one reviewer weeks ago,
    three versions that pass, fail, err or never ran on them."""
    reviewers = [MembershipFactory(workspace=workspace, user=UserFactory()).user for _ in range(3)]
    eval_set = EvalSetFactory(workspace=workspace)
    traces = [
        TraceFactory(
            workspace=workspace,
            timestamp=START + dt.timedelta(hours=5 * n),
            source=Trace.Source.LANGFUSE if n % 3 == 0 else Trace.Source.UPLOAD,
        )
        for n in range(30)
    ]
    for n, trace in enumerate(traces[:24]):
        Feedback.objects.create(
            workspace=workspace,
            eval_set=eval_set,
            trace=trace,
            user=reviewers[0],
            rating=("positive", "positive", "negative", "neutral")[n % 4],
        )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    weeks_ago = timezone.now() - dt.timedelta(weeks=3)
    Feedback.objects.filter(eval_set=eval_set).update(created_at=weeks_ago, updated_at=weeks_ago)
    versions = [make_eval(eval_set, version=v) for v in (1, 2, 3)]
    for v, version in enumerate(versions):
        for n, trace in enumerate(traces):
            roll = (n * 7 + v * 3) % 10
            if roll == 9:
                continue  # never ran
            record(version, trace, None if roll == 8 else roll % 2 == 0)
    # Long settled: nothing cached expires while the test runs.
    EvalExecution.objects.filter(eval__in=versions).update(updated_at=weeks_ago)
    Trace.objects.filter(workspace=workspace).update(updated_at=weeks_ago)
    return eval_set, traces, versions, reviewers


VIEWS = [
    MatrixFilters(),
    MatrixFilters(only_disagreements=True),
    MatrixFilters(source=Trace.Source.LANGFUSE),
    MatrixFilters(date_from=dt.date(2026, 3, 2), date_to=dt.date(2026, 3, 4)),
]


def test_cached_and_cold_matrices_equal_a_computation_from_scratch(board, monkeypatch):
    eval_set, traces, versions, (first, second, third) = board
    for view in VIEWS:
        assert _shown(eval_set, view) == _expected(eval_set, versions, view)
    whole_judgements = []
    judge = index._judge
    monkeypatch.setattr(index, "_judge", lambda *args: whole_judgements.append(1) or judge(*args))

    changes = [
        # A label changed, two first labels on traces nobody had labelled.
        lambda: record_feedback(eval_set=eval_set, trace=traces[0], user=first, rating="negative"),
        lambda: record_feedback(eval_set=eval_set, trace=traces[25], user=first, rating="positive"),
        lambda: record_feedback(eval_set=eval_set, trace=traces[29], user=second, rating="neutral"),
        # A tie takes a trace out; a third reviewer brings it back with the other label.
        lambda: record_feedback(eval_set=eval_set, trace=traces[2], user=second, rating="positive"),
        lambda: record_feedback(eval_set=eval_set, trace=traces[2], user=third, rating="positive"),
        # Several at once: a relabel, a neutral turned negative, a first label.
        lambda: [
            record_feedback(eval_set=eval_set, trace=traces[4], user=first, rating="negative"),
            record_feedback(eval_set=eval_set, trace=traces[3], user=first, rating="negative"),
            record_feedback(eval_set=eval_set, trace=traces[26], user=third, rating="negative"),
        ],
        # Removals: an undone label, a deleted one.
        lambda: undo_last_feedback(eval_set=eval_set, user=third),
        lambda: Feedback.objects.filter(eval_set=eval_set, trace=traces[5]).delete(),
    ]
    for change in changes:
        change()
        judged_whole = len(whole_judgements)
        for view in VIEWS:
            assert _shown(eval_set, view) == _expected(eval_set, versions, view), view
        # The cached views were updated with the changed traces, not judged whole.
        assert len(whole_judgements) == judged_whole
        for view in VIEWS:
            assert _from_nothing(eval_set, view) == _expected(eval_set, versions, view), view
        cache.clear()
        index.forget_parts_seen()
        for view in VIEWS:  # cached again, for the next change to update
            _shown(eval_set, view)


@pytest.mark.django_db(transaction=True)
def test_cold_matrix_read_on_two_connections_equals_a_computation_from_scratch(board, monkeypatch):
    """Outside a transaction, PostgreSQL reads the verdicts on a second connection while
    the first reads the labels: the matrix is the same."""
    if connection.vendor != "postgresql":
        pytest.skip("the verdicts go on a second connection on PostgreSQL only")
    eval_set, _traces, versions, _reviewers = board
    threaded = []
    on_own = index._on_own_connection
    monkeypatch.setattr(
        index, "_on_own_connection", lambda *a, **kw: threaded.append(1) or on_own(*a, **kw)
    )
    for view in VIEWS:
        assert _from_nothing(eval_set, view) == _expected(eval_set, versions, view), view
    assert len(threaded) == len(VIEWS)


def test_traces_far_apart_and_on_word_edges_are_judged_as_from_scratch(workspace):
    """The verdicts are bitsets of 64-bit words over trace ids: traces whose ids sit on
    the words' edges (the top bit is the sign of PostgreSQL's int8), far apart, and
    verdicts on unlabelled traces below and above every labelled one, with neutral
    labels and ties, give the counts and rows that the stored rows give."""
    reviewers = [MembershipFactory(workspace=workspace, user=UserFactory()).user for _ in range(2)]
    eval_set = EvalSetFactory(workspace=workspace)
    base = 50_000_000  # past any id the sequence hands out in a test run
    ids = [base + 63, base + 64, base + 127, base + 128, base + 191, base + 4_000_001]
    unlabelled = [base - 1, base + 9_000_063]
    traces = {
        pk: TraceFactory(workspace=workspace, pk=pk, timestamp=START + dt.timedelta(hours=n))
        for n, pk in enumerate(ids + unlabelled)
    }
    # One reviewer's label per trace, but a tie on the fifth.
    ratings = [["positive"], ["negative"], ["neutral"], ["positive"], ["positive", "negative"]]
    for pk, rating in zip(ids, [*ratings, ["negative"]], strict=True):
        for user, each in zip(reviewers[: len(rating)], rating, strict=True):
            Feedback.objects.create(
                workspace=workspace, eval_set=eval_set, trace=traces[pk], user=user, rating=each
            )
    versions = [make_eval(eval_set, version=v) for v in (1, 2)]
    verdicts = [True, False, None, True, False, None, True, False]
    for v, version in enumerate(versions):
        for n, pk in enumerate(ids + unlabelled):
            if (n + v) % 5 != 4:  # some never ran
                record(version, traces[pk], verdicts[(n + 3 * v) % len(verdicts)])

    for view in VIEWS:
        expected = _expected(eval_set, versions, view)
        assert _from_nothing(eval_set, view) == expected, view
        assert _shown(eval_set, view) == expected, view  # cached
    # The tie is no row; the neutral label is a row that neither agrees nor contradicts.
    rows = {pk: label for pk, label, _ in _shown(eval_set, MatrixFilters())[1]}
    assert base + 191 not in rows and rows[base + 127] == "neutral"


def _rebuilt(eval_set, versions, filters: MatrixFilters) -> index.MatrixIndex:
    """The view judged whole from every label and verdict read again, leaving the cache
    and the process's parts as they are (the incremental chain goes on)."""
    version_ids = [v.pk for v in versions]
    stamp = index._stamp(eval_set=eval_set, version_ids=version_ids)
    base = index._Base(stamp=stamp[:4])
    base.fill(index._read_labels(eval_set))
    read = index._read_verdicts(eval_set, version_ids)
    verdicts = [index._unpack(read[pk]) for pk in version_ids]
    return index._judge(*index._in_range(base, filters), verdicts, version_ids, base.version)


def _incremental(eval_set, versions, filters: MatrixFilters) -> index.MatrixIndex:
    return index.matrix_index(
        eval_set=eval_set, filters=filters, version_ids=[v.pk for v in versions]
    )


def test_a_chain_of_label_changes_equals_a_whole_rebuild_in_every_view(board, workspace):
    """Label changes one after another, never clearing the cache: first labels, changed
    verdicts and removals, on traces with and without verdicts; some views are looked at
    after every change, others only every third, so their base is several patches back.
    Each time, every view's rows (with their flags) and counts equal a whole rebuild."""
    eval_set, traces, versions, (first, second, third) = board
    # A labelled-to-be trace that no version ran on, settled like the others.
    unjudged = TraceFactory(workspace=workspace, timestamp=START + dt.timedelta(hours=3))
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[unjudged.pk])
    Trace.objects.filter(workspace=workspace).update(updated_at=timezone.now() - dt.timedelta(1))
    for view in VIEWS:
        _incremental(eval_set, versions, view)
    whole = []
    judge = index._judge
    changes = [
        # A first label on a trace with verdicts, and on one without.
        lambda: record_feedback(eval_set=eval_set, trace=traces[25], user=first, rating="negative"),
        lambda: record_feedback(eval_set=eval_set, trace=unjudged, user=first, rating="positive"),
        # Changed verdicts: the same reviewer changes her label, with and without verdicts.
        lambda: record_feedback(eval_set=eval_set, trace=traces[0], user=first, rating="negative"),
        lambda: record_feedback(eval_set=eval_set, trace=unjudged, user=first, rating="neutral"),
        lambda: record_feedback(eval_set=eval_set, trace=traces[3], user=first, rating="positive"),
        # A tie takes a trace out, a third label brings it back; several at once.
        lambda: record_feedback(eval_set=eval_set, trace=traces[1], user=second, rating="negative"),
        lambda: [
            record_feedback(eval_set=eval_set, trace=traces[1], user=third, rating="negative"),
            record_feedback(eval_set=eval_set, trace=traces[6], user=second, rating="negative"),
            record_feedback(eval_set=eval_set, trace=traces[26], user=second, rating="neutral"),
        ],
        # Removals: an undone label, every label of a trace with verdicts and of one without.
        lambda: undo_last_feedback(eval_set=eval_set, user=second),
        lambda: Feedback.objects.filter(eval_set=eval_set, trace=traces[4]).delete(),
        lambda: record_feedback(eval_set=eval_set, trace=traces[7], user=first, rating="neutral"),
        lambda: Feedback.objects.filter(eval_set=eval_set, trace=unjudged).delete(),
        lambda: record_feedback(eval_set=eval_set, trace=traces[8], user=third, rating="negative"),
    ]
    for n, change in enumerate(changes):
        change()
        for v, view in enumerate(VIEWS):
            if v % 2 and n % 3 != 2:
                continue  # looked at again after a few more changes
            index._judge = lambda *args: whole.append(1) or judge(*args)
            try:
                updated = _incremental(eval_set, versions, view)
            finally:
                index._judge = judge
            expected = _rebuilt(eval_set, versions, view)
            assert (updated.rows, updated.counts) == (expected.rows, expected.counts), (n, view)
            assert _shown(eval_set, view) == _expected(eval_set, versions, view), (n, view)
    assert whole == []  # every view was updated, none judged whole


def test_a_label_change_judges_only_the_changed_traces(board, monkeypatch):
    """Updating a cached view visits the changed traces' rows only: no view is judged
    whole, no base filtered whole, and the counts move once per changed trace taken out
    and once per trace put in."""
    eval_set, traces, versions, (first, second, _third) = board
    for view in VIEWS:
        _incremental(eval_set, versions, view)

    def whole(*args):
        raise AssertionError("judged every row")

    monkeypatch.setattr(index, "_judge", whole)
    monkeypatch.setattr(index, "_in_range", whole)
    monkeypatch.setattr(index._Base, "rows", whole)
    moves = []
    count = index._count
    monkeypatch.setattr(index, "_count", lambda *a: moves.append(a[1:]) or count(*a))

    record_feedback(eval_set=eval_set, trace=traces[0], user=first, rating="negative")  # changed
    record_feedback(eval_set=eval_set, trace=traces[25], user=first, rating="positive")  # first
    record_feedback(eval_set=eval_set, trace=traces[1], user=second, rating="negative")  # tie
    _incremental(eval_set, versions, MatrixFilters())

    assert sorted(moves) == sorted(
        [
            (traces[0].pk, "positive", -1),
            (traces[0].pk, "negative", 1),
            (traces[25].pk, "positive", 1),
            (traces[1].pk, "positive", -1),
        ]
    )


def test_ingestion_batch_runs_and_reimports_update_the_views_without_reading_all(board, workspace):
    """What a busy workspace does between two loads of the matrix: new traces arrive, a
    batch run writes new and changed verdicts (and errors), a labelled trace is
    re-imported with another time or source, reviewers label. Each shows on the next
    load, and each view equals a whole rebuild; yet no view is judged whole and neither
    the set's labels nor a version's verdicts are read whole again."""
    eval_set, traces, versions, (first, _second, _third) = board
    for view in VIEWS:
        _incremental(eval_set, versions, view)
    v1, v2 = versions[:2]

    def run(version, results):
        record_results(
            eval=version,
            run=None,
            traces=[t for t, _ in results],
            results=[
                sandbox.Result(None, "", "boom", 1.0)
                if passed == "error"
                else sandbox.Result(passed, "ok", None, 1.0)
                for _, passed in results
            ],
        )

    def moved(trace, **fields):
        Trace.objects.filter(pk=trace.pk).update(updated_at=timezone.now(), **fields)

    changes = [
        # Ingestion: new traces, nobody's label on them.
        lambda: [TraceFactory(workspace=workspace) for _ in range(3)],
        # A batch run: changed verdicts, a first verdict, an error, an unlabelled trace.
        lambda: run(v1, [(traces[0], False), (traces[9], True), (traces[1], "error")]),
        lambda: run(v1, [(traces[27], True), (traces[2], True)]),
        # Two versions' runs, a label and new traces between two loads.
        lambda: [
            run(v1, [(traces[3], False)]),
            run(v2, [(traces[3], True), (traces[19], "error")]),
            record_feedback(eval_set=eval_set, trace=traces[3], user=first, rating="negative"),
            TraceFactory(workspace=workspace),
        ],
        # Re-imports: a labelled trace out of the date range, another into it, a source.
        lambda: moved(traces[13], timestamp=START - dt.timedelta(days=30)),
        lambda: moved(traces[20], timestamp=START + dt.timedelta(days=2, minutes=7)),
        lambda: moved(traces[14], source=Trace.Source.LANGFUSE),
        lambda: [run(v2, [(traces[20], False)]), moved(traces[6], timestamp=START)],
    ]
    judge = index._judge
    for n, change in enumerate(changes):
        change()
        for view in VIEWS:
            whole = []
            index._judge = lambda *args, whole=whole: whole.append(1) or judge(*args)
            try:
                with CaptureQueriesContext(connection) as queries:
                    updated = _incremental(eval_set, versions, view)
            finally:
                index._judge = judge
            read = [q["sql"] for q in queries]
            restricted = ("trace_id IN", "trace_id = ANY")  # SQLite, PostgreSQL
            assert not [
                s for s in read if "SUM(id) AS ids" in s and not any(r in s for r in restricted)
            ]
            assert not [s for s in read if "passed" in s and "updated_at >" not in s], n
            assert whole == [], (n, view)
            expected = _rebuilt(eval_set, versions, view)
            assert (updated.rows, updated.counts) == (expected.rows, expected.counts), (n, view)
            assert _shown(eval_set, view) == _expected(eval_set, versions, view), (n, view)
