"""The comparison matrix: a page of labelled traces by eval versions, and one cell's detail."""

# The page's SQL interpolates only quoted table names and "%s" placeholder lists.
# ruff: noqa: S608

import json
from collections import defaultdict

from evals.matrix.cache import as_datetime
from evals.matrix.index import MatrixIndex, _fetch, _restrict, _table, matrix_index
from evals.matrix.types import (
    CellDetail,
    Matrix,
    MatrixCell,
    MatrixFilters,
    MatrixRow,
    MatrixTrace,
    Verdict,
    VersionColumn,
)
from evals.metrics.agreement import cell_state
from evals.models import Eval, EvalExecution
from evals.versions.selectors import LIST_FIELDS
from traces.models import EvalSet, Feedback, Trace

MATRIX_PAGE_SIZE = 50
MAX_MATRIX_VERSIONS = 20


def comparison_matrix(
    *,
    eval_set: EvalSet,
    filters: MatrixFilters | None = None,
    page: int = 1,
    page_size: int = MATRIX_PAGE_SIZE,
) -> Matrix:
    """Return one page of labelled traces by versions, with per-version counts.

    Five queries whatever the size: versions; the index's stamps; the page's traces,
    verdicts and notes. Building the index when it is not cached reads the labels, the
    versions' verdicts or both: one or two more.
    """
    filters = filters or MatrixFilters()
    all_versions, versions = _shown_versions(eval_set=eval_set, filters=filters)
    version_ids = [v.pk for v in versions]
    index = matrix_index(eval_set=eval_set, filters=filters, version_ids=version_ids)
    shown = index.rows
    if filters.only_disagreements and version_ids:
        shown = [row for row in shown if row[2]]
    total = len(shown)
    # Past the end: show the last page.
    page = max(1, min(page, -(-total // page_size)))
    page_rows = shown[(page - 1) * page_size : page * page_size]
    return Matrix(
        eval_set=eval_set,
        columns=_columns(versions, index),
        rows=_page_rows(eval_set=eval_set, page_rows=page_rows, version_ids=version_ids),
        filters=filters,
        page=page,
        page_size=page_size,
        total_rows=total,
        all_versions=all_versions,
    )


def _shown_versions(*, eval_set: EvalSet, filters: MatrixFilters) -> tuple[list[Eval], list[Eval]]:
    """Return every version of the set, newest first, and the chosen ones, oldest first."""
    all_versions = list(
        Eval.objects.for_eval_set(eval_set).only(*LIST_FIELDS[:15]).order_by("-version")
    )
    chosen = set(filters.version_ids)
    versions = [v for v in all_versions if not chosen or v.pk in chosen][:MAX_MATRIX_VERSIONS]
    versions.sort(key=lambda v: v.version)
    return all_versions, versions


def _columns(versions: list[Eval], index: MatrixIndex) -> list[VersionColumn]:
    """Return a column per version with its counts over the filtered range."""
    columns = [VersionColumn(eval=v) for v in versions]
    for column in columns:
        agree, contradict, errors, ran = index.counts.get(column.eval.pk, (0, 0, 0, 0))
        column.agree, column.contradict, column.errors = agree, contradict, errors
        # Traces of the filtered range that a version never ran on.
        column.not_run = len(index.rows) - ran
    return columns


def _page_rows(
    *, eval_set: EvalSet, page_rows: list[tuple[int, str, bool]], version_ids: list[int]
) -> list[MatrixRow]:
    """Return the page's rows: each trace with its label, notes and a cell per version."""
    trace_ids = [pk for pk, _, _ in page_rows]
    traces = _page_traces(eval_set=eval_set, trace_ids=trace_ids)
    verdicts = _page_verdicts(eval_set=eval_set, trace_ids=trace_ids, version_ids=version_ids)
    notes = _page_notes(eval_set=eval_set, trace_ids=trace_ids)
    rows = []
    for trace_id, label, _ in page_rows:
        if trace_id not in traces:  # deleted since the index was read
            continue
        row = MatrixRow(trace=traces[trace_id], label=label, notes=notes[trace_id])
        for version_id in version_ids:
            verdict = verdicts.get((version_id, trace_id))
            state = cell_state(label, verdict.passed if verdict else None, ran=verdict is not None)
            row.cells.append(MatrixCell(eval_id=version_id, execution=verdict, state=state))
        rows.append(row)
    return rows


# The page's rows, read with three written-out statements: the ORM's building of each
# query (and of a Trace per row) cost more than the statements (bench/pages.py).
def _page_traces(*, eval_set: EvalSet, trace_ids: list[int]) -> dict[int, MatrixTrace]:
    """The page's traces: input and output only, for the row's snippet (the steps can
    be most of a payload)."""
    if not trace_ids:
        return {}
    ids, params = _restrict(trace_ids)
    sql = f"""
        SELECT id, name, external_id, timestamp, source, data -> 'input', data -> 'output'
        FROM {_table(Trace)} WHERE workspace_id = %s AND id {ids}
    """
    return {
        pk: MatrixTrace(pk, name, external_id, as_datetime(at), source, _json(i), _json(o))
        for pk, name, external_id, at, source, i, o in _fetch(sql, [eval_set.workspace_id, *params])
    }


def _page_verdicts(
    *, eval_set: EvalSet, trace_ids: list[int], version_ids: list[int]
) -> dict[tuple[int, int], Verdict]:
    if not trace_ids or not version_ids:
        return {}
    (traces, trace_params), (versions, version_params) = map(_restrict, (trace_ids, version_ids))
    sql = f"""
        SELECT eval_id, trace_id, passed, reason, error, duration_ms
        FROM {_table(EvalExecution)}
        WHERE workspace_id = %s AND trace_id {traces} AND eval_id {versions}
    """
    return {
        # SQLite hands back 1 and 0 for booleans.
        (eval_id, trace_id): Verdict(None if passed is None else bool(passed), *rest)
        for eval_id, trace_id, passed, *rest in _fetch(
            sql, [eval_set.workspace_id, *trace_params, *version_params]
        )
    }


def _page_notes(*, eval_set: EvalSet, trace_ids: list[int]) -> dict[int, list[str]]:
    notes: dict[int, list[str]] = defaultdict(list)
    if not trace_ids:
        return notes
    traces, params = _restrict(trace_ids)
    sql = f"""
        SELECT trace_id, note FROM {_table(Feedback)}
        WHERE eval_set_id = %s AND trace_id {traces} AND note <> ''
        ORDER BY created_at, id
    """
    for trace_id, note in _fetch(sql, [eval_set.pk, *params]):
        notes[trace_id].append(note)
    return notes


def _json(value):
    """A JSON value as the driver hands it back (its text), decoded as the ORM would."""
    return None if value is None else json.loads(value)


def matrix_cell(*, eval: Eval, trace: Trace) -> CellDetail:
    """Return what one version said about one labelled trace, for the drill-down."""
    from collections import Counter

    from traces.services import resolve_label

    feedback = list(
        Feedback.objects.filter(eval_set_id=eval.eval_set_id, trace=trace)
        .order_by("created_at", "id")
        .values_list("rating", "note")
    )
    label = resolve_label(Counter(r for r, _ in feedback)) if feedback else None
    execution = EvalExecution.objects.filter(eval=eval, trace=trace).first()
    state = (
        cell_state(label, execution.passed if execution else None, ran=execution is not None)
        if label
        else "missing"
    )
    return CellDetail(
        eval=eval,
        trace=trace,
        label=label,
        notes=[n for _, n in feedback if n],
        execution=execution,
        state=state,
    )
