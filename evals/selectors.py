"""Reads for eval lists, version history and the comparison matrix."""

# The matrix SQL interpolates only quoted table names and "%s" placeholder lists.
# ruff: noqa: S608

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import QuerySet

from evals.models import Eval, EvalExecution, EvalRun
from traces.models import EvalSet, Feedback, Trace
from workspaces.models import Workspace

MATRIX_PAGE_SIZE = 50
MAX_MATRIX_VERSIONS = 20
LIST_FIELDS = (
    "id",
    "workspace_id",
    "eval_set_id",
    "version",
    "parent_id",
    "status",
    "provider",
    "model",
    "origin",
    "agreement",
    "labels_tested",
    "low_confidence",
    "cost_usd",
    "activated_at",
    "created_at",
    "eval_set__name",
    "eval_set__workspace_id",
    "parent__version",
)


# --- lists and history ------------------------------------------------------------------


def eval_list(
    *, workspace: Workspace, eval_set: EvalSet | None = None, status: str | None = None
) -> QuerySet[Eval]:
    """Return eval versions of the workspace (or one set), newest set and version first."""
    qs = Eval.objects.for_workspace(workspace).select_related("eval_set", "parent")
    if eval_set is not None:
        qs = qs.filter(eval_set=eval_set)
    if status:
        qs = qs.filter(status=status)
    return qs.only(*LIST_FIELDS).order_by("eval_set__name", "eval_set_id", "-version")


def versions_of(eval_set: EvalSet) -> list[Eval]:
    """Return every version of a set, oldest first, with ``depth`` set from the lineage."""
    versions = list(
        Eval.objects.filter(eval_set=eval_set)
        .select_related("parent")
        .only(*LIST_FIELDS, "description")
        .order_by("version")
    )
    by_pk = {v.pk: v for v in versions}
    for v in versions:
        parent = by_pk.get(v.parent_id)
        v.depth = (parent.depth + 1) if parent is not None else 0
    return versions


def agreement_history(eval_set: EvalSet) -> list[dict]:
    """Return ``{version, agreement, heldout, status}`` per version for the chart."""
    rows = []
    for version, agreement, metrics, status in (
        Eval.objects.filter(eval_set=eval_set)
        .order_by("version")
        .values_list("version", "agreement", "metrics", "status")
    ):
        heldout = ((metrics or {}).get("heldout") or {}).get("agreement")
        rows.append(
            {"version": version, "agreement": agreement, "heldout": heldout, "status": status}
        )
    return rows


def latest_run(eval: Eval) -> EvalRun | None:
    return EvalRun.objects.filter(eval=eval).order_by("-created_at", "-id").first()


# --- the comparison matrix -------------------------------------------------------------


@dataclass(frozen=True)
class MatrixFilters:
    only_disagreements: bool = False
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    source: str = ""
    version_ids: tuple[int, ...] = ()


@dataclass
class VersionColumn:
    eval: Eval
    agree: int = 0
    contradict: int = 0
    errors: int = 0
    not_run: int = 0

    @property
    def judged(self) -> int:
        return self.agree + self.contradict


@dataclass
class MatrixCell:
    eval_id: int
    execution: EvalExecution | None
    state: str  # agree | contradict | error | neutral | missing
    url: str = ""

    @property
    def verdict(self) -> str:
        if self.execution is None:
            return "—"
        if self.execution.passed is None:
            return "error"
        return "pass" if self.execution.passed else "fail"


@dataclass
class MatrixRow:
    trace: Trace
    label: str
    notes: list[str]
    cells: list[MatrixCell] = field(default_factory=list)


@dataclass
class Matrix:
    eval_set: EvalSet
    columns: list[VersionColumn]
    rows: list[MatrixRow]
    filters: MatrixFilters
    page: int
    page_size: int
    total_rows: int
    all_versions: list[Eval]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total_rows // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def cell_state(label: str, passed: bool | None, *, ran: bool = True) -> str:
    """Classify an eval verdict against the human label."""
    if not ran:
        return "missing"
    if passed is None:
        return "error"
    if label == "neutral":
        return "neutral"
    return "agree" if passed == (label == "positive") else "contradict"


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _labelled_rows_sql(
    *, eval_set: EvalSet, filters: MatrixFilters, version_ids: list[int], disagreements: bool
) -> tuple[str, list]:
    """Return a CTE prefix defining ``labelled`` and ``shown`` rows ``(id, ts, label)``.

    ``labelled`` holds the labelled traces in range, ``shown`` those the page lists (only
    the disagreeing ones when asked). Labels are resolved in SQL with the same majority
    rule as ``resolve_label`` (a tie has no label and is left out), once per query, so a
    page costs a fixed number of queries however many traces the set has.
    """
    feedback, trace, execution = _table(Feedback), _table(Trace), _table(EvalExecution)
    params: list = [eval_set.pk, eval_set.workspace_id]
    where = ["l.label IS NOT NULL", "t.workspace_id = %s"]
    if filters.date_from:
        where.append("t.timestamp >= %s")
        params.append(_day_start(filters.date_from))
    if filters.date_to:
        where.append("t.timestamp < %s")
        params.append(_day_start(filters.date_to + dt.timedelta(days=1)))
    if filters.source:
        where.append("t.source = %s")
        params.append(filters.source)
    judged = ""
    shown = "SELECT * FROM labelled"
    if version_ids:
        # Each (version, row) verdict: 0 agrees, 1 contradicts, 2 errs, 3 on a neutral label.
        # One join feeds both the per-version counts and the only-disagreements rows, so
        # the versions' executions are read once per page.
        marks = ", ".join(["%s"] * len(version_ids))
        judged = f""", judged AS {"MATERIALIZED" if disagreements else ""} (
            SELECT e.eval_id AS eval_id, e.trace_id AS trace_id, CASE
                WHEN e.passed IS NULL THEN 2
                WHEN r.label = 'neutral' THEN 3
                WHEN e.passed = (r.label = 'positive') THEN 0
                ELSE 1
            END AS state
            FROM labelled r JOIN {execution} e ON e.trace_id = r.id
            WHERE e.eval_id IN ({marks})
        )"""
        params.extend(version_ids)
        if disagreements:
            shown += " WHERE id IN (SELECT trace_id FROM judged WHERE state IN (1, 2))"
    sql = f"""
        WITH counts AS (
            SELECT trace_id,
                SUM(CASE WHEN rating = 'positive' THEN 1 ELSE 0 END) AS pos,
                SUM(CASE WHEN rating = 'negative' THEN 1 ELSE 0 END) AS neg,
                SUM(CASE WHEN rating = 'neutral' THEN 1 ELSE 0 END) AS neu
            FROM {feedback} WHERE eval_set_id = %s GROUP BY trace_id
        ), labels AS (
            SELECT trace_id, CASE
                WHEN pos > neg AND pos > neu THEN 'positive'
                WHEN neg > pos AND neg > neu THEN 'negative'
                WHEN neu > pos AND neu > neg THEN 'neutral'
            END AS label FROM counts
        ), labelled AS MATERIALIZED (
            SELECT t.id AS id, t.timestamp AS ts, l.label AS label
            FROM labels l JOIN {trace} t ON t.id = l.trace_id
            WHERE {" AND ".join(where)}
        ){judged}, shown AS ({shown})
    """
    return sql, params


def _day_start(day: dt.date):
    from django.utils import timezone

    value = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return connection.ops.adapt_datetimefield_value(value)


def comparison_matrix(
    *,
    eval_set: EvalSet,
    filters: MatrixFilters | None = None,
    page: int = 1,
    page_size: int = MATRIX_PAGE_SIZE,
) -> Matrix:
    """Return one page of labelled traces by versions, with per-version counts.

    Five queries whatever the size: versions; one statement for the row totals, the
    per-version counts and the page of rows; their traces, executions and notes.
    """
    filters = filters or MatrixFilters()
    all_versions = list(
        Eval.objects.filter(eval_set=eval_set).only(*LIST_FIELDS[:15]).order_by("-version")
    )
    chosen = set(filters.version_ids)
    versions = [v for v in all_versions if not chosen or v.pk in chosen][:MAX_MATRIX_VERSIONS]
    versions.sort(key=lambda v: v.version)
    version_ids = [v.pk for v in versions]
    columns = {v.pk: VersionColumn(eval=v) for v in versions}
    base, base_params = _labelled_rows_sql(
        eval_set=eval_set,
        filters=filters,
        version_ids=version_ids,
        disagreements=filters.only_disagreements,
    )
    page_sql = "SELECT id, label, ts FROM shown ORDER BY ts DESC, id DESC LIMIT %s OFFSET %s"
    # One statement shares the labels (the costly part) between the page and the counts:
    # kind 0 is the row totals, kind 1 a version's counts, kind 2 a row of the page. The
    # page comes first so that PostgreSQL types the other parts' NULLs from its columns.
    parts = [
        f"SELECT 2 AS kind, p.id, 0, 0, 0, 0, p.label, p.ts FROM ({page_sql}) p",
        "SELECT 0, (SELECT COUNT(*) FROM labelled), (SELECT COUNT(*) FROM shown),"
        " 0, 0, 0, NULL, NULL",
    ]
    params = [*base_params, page_size, (page - 1) * page_size]
    if version_ids:
        parts.append(
            "SELECT 1, eval_id, COUNT(*) FILTER (WHERE state = 2),"
            " COUNT(*) FILTER (WHERE state = 1), COUNT(*) FILTER (WHERE state = 0),"
            " COUNT(*), NULL, NULL FROM judged GROUP BY eval_id"
        )
    in_range = total = 0
    ran: dict[int, int] = {}
    page_rows: list[tuple[int, str]] = []
    with connection.cursor() as cursor:
        cursor.execute(base + " UNION ALL ".join(parts) + " ORDER BY 1, 8 DESC, 2 DESC", params)
        for kind, pk, errors, contradict, agree, n, label, _ in cursor.fetchall():
            if kind == 0:
                in_range, total = pk, errors
            elif kind == 1:
                column = columns[pk]
                column.errors, column.contradict, column.agree = errors, contradict, agree
                ran[pk] = n
            else:
                page_rows.append((pk, label))
        if not page_rows and total:
            # Past the end: show the last page.
            page = -(-total // page_size)
            cursor.execute(base + page_sql, [*base_params, page_size, (page - 1) * page_size])
            page_rows = [(pk, label) for pk, label, _ in cursor.fetchall()]
    page = page if page_rows or total else 1
    for column in columns.values():
        # Traces of the filtered range that a version never ran on.
        column.not_run = in_range - ran.get(column.eval.pk, 0)

    trace_ids = [pk for pk, _ in page_rows]
    traces = Trace.objects.filter(pk__in=trace_ids).only(
        "id", "workspace_id", "name", "external_id", "timestamp", "source", "has_error"
    )
    traces = {t.pk: t for t in traces}
    executions = {
        (e.eval_id, e.trace_id): e
        for e in EvalExecution.objects.filter(trace_id__in=trace_ids, eval_id__in=version_ids).only(
            "id", "eval_id", "trace_id", "passed", "reason", "error", "duration_ms"
        )
    }
    notes: dict[int, list[str]] = defaultdict(list)
    for trace_id, note in (
        Feedback.objects.filter(eval_set=eval_set, trace_id__in=trace_ids)
        .exclude(note="")
        .order_by("created_at", "id")
        .values_list("trace_id", "note")
    ):
        notes[trace_id].append(note)

    rows = []
    for trace_id, label in page_rows:
        row = MatrixRow(trace=traces[trace_id], label=label, notes=notes[trace_id])
        for version in versions:
            ex = executions.get((version.pk, trace_id))
            state = cell_state(label, ex.passed if ex else None, ran=ex is not None)
            row.cells.append(MatrixCell(eval_id=version.pk, execution=ex, state=state))
        rows.append(row)
    return Matrix(
        eval_set=eval_set,
        columns=[columns[pk] for pk in version_ids],
        rows=rows,
        filters=filters,
        page=page,
        page_size=page_size,
        total_rows=total,
        all_versions=all_versions,
    )


@dataclass
class CellDetail:
    eval: Eval
    trace: Trace
    label: str | None
    notes: list[str]
    execution: EvalExecution | None
    state: str


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


def contradictions(*, eval: Eval) -> list[tuple]:
    """Return ``(example, execution)`` for labelled traces where the version is wrong or errs.

    Neutral labels cannot be contradicted and are left out.
    """
    from traces.selectors import labelled_examples

    examples = {ex.trace.pk: ex for ex in labelled_examples(eval.eval_set)}
    found = []
    for execution in EvalExecution.objects.filter(eval=eval, trace_id__in=list(examples)).order_by(
        "trace_id"
    ):
        example = examples[execution.trace_id]
        if example.label == "neutral":
            continue
        state = cell_state(example.label, execution.passed)
        if state in ("contradict", "error"):
            found.append((example, execution))
    return found
