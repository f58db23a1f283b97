"""Reads for eval lists, version history and the comparison matrix."""

# The matrix SQL interpolates only quoted table names and "%s" placeholder lists.
# ruff: noqa: S608

import datetime as dt
import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

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


class Verdict(NamedTuple):
    """The parts of an execution that the matrix shows."""

    passed: bool | None
    reason: str
    error: str
    duration_ms: float


@dataclass
class MatrixCell:
    eval_id: int
    execution: Verdict | None
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


@dataclass
class MatrixIndex:
    """What every page of one filtered matrix shares: its rows in order and the counts.

    Built by one statement over all the set's labels and the versions' executions (the
    costly part of a page), then cached until a label, an execution or a trace changes.
    """

    # Labelled traces in range, newest first: (trace id, label, a shown version
    # contradicts the label or errs).
    rows: list[tuple[int, str, bool]]
    # Per version id: (agree, contradict, errors, traces it ran on).
    counts: dict[int, tuple[int, int, int, int]]


def _matrix_index_sql(
    *, eval_set: EvalSet, filters: MatrixFilters, version_ids: list[int]
) -> tuple[str, list]:
    """Return the statement behind ``MatrixIndex`` and its parameters.

    One row per labelled trace in range, newest first: ``(id, label, agree, contradict,
    errors, ran)``, where each of the last four has bit ``i`` set when ``version_ids[i]``
    agreed with the label, contradicted it, errored or ran at all on the trace (a neutral
    label is neither agreed with nor contradicted). Grouping the executions by trace
    first keeps the join at one row per trace; a bit per version fits
    ``MAX_MATRIX_VERSIONS``. Labels are resolved with the same majority rule as
    ``resolve_label`` (a tie has no label and is left out).
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
    verdicts = ""
    masks = "0, 0, 0, 0"
    if version_ids:
        bits = " ".join(f"WHEN %s THEN {1 << i}" for i in range(len(version_ids)))
        marks = ", ".join(["%s"] * len(version_ids))
        verdicts = f""", verdicts AS (
            SELECT trace_id,
                SUM(CASE WHEN passed THEN bit ELSE 0 END) AS passes,
                SUM(CASE WHEN NOT passed THEN bit ELSE 0 END) AS fails,
                SUM(CASE WHEN passed IS NULL THEN bit ELSE 0 END) AS errors
            FROM (
                SELECT trace_id, passed, CASE eval_id {bits} END AS bit
                FROM {execution} WHERE eval_id IN ({marks})
            ) e GROUP BY trace_id
        )"""
        params.extend([*version_ids, *version_ids])
        masks = """
            COALESCE(CASE l.label WHEN 'positive' THEN v.passes
                WHEN 'negative' THEN v.fails ELSE 0 END, 0),
            COALESCE(CASE l.label WHEN 'positive' THEN v.fails
                WHEN 'negative' THEN v.passes ELSE 0 END, 0),
            COALESCE(v.errors, 0),
            COALESCE(v.passes | v.fails | v.errors, 0)"""
    sql = f"""
        WITH counts AS (
            SELECT trace_id,
                COUNT(*) FILTER (WHERE rating = 'positive') AS pos,
                COUNT(*) FILTER (WHERE rating = 'negative') AS neg,
                COUNT(*) FILTER (WHERE rating = 'neutral') AS neu
            FROM {feedback} WHERE eval_set_id = %s GROUP BY trace_id
        ), labels AS (
            SELECT trace_id, CASE
                WHEN pos > neg AND pos > neu THEN 'positive'
                WHEN neg > pos AND neg > neu THEN 'negative'
                WHEN neu > pos AND neu > neg THEN 'neutral'
            END AS label FROM counts
        ), labelled AS (
            SELECT t.id AS id, t.timestamp AS ts, l.label AS label
            FROM labels l JOIN {trace} t ON t.id = l.trace_id
            WHERE {" AND ".join(where)}
        ){verdicts}
        SELECT l.id, l.label, {masks}
        FROM labelled l {"LEFT JOIN verdicts v ON v.trace_id = l.id" if verdicts else ""}
        ORDER BY l.ts DESC, l.id DESC
    """
    return sql, params


def _day_start(day: dt.date):
    value = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return connection.ops.adapt_datetimefield_value(value)


def _build_matrix_index(sql: str, params: list, version_ids: list[int]) -> MatrixIndex:
    """Run the index statement and count, per version, the rows with its bit set."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    # One string object per label keeps the cached rows small (pickle shares it).
    labels = {label: label for label in Feedback.Rating.values}
    rows = [(pk, labels[label], bool(wrong | errs)) for pk, label, _, wrong, errs, _ in fetched]
    # Rows share far fewer masks than there are rows: count rows per mask, then bits.
    width = len(version_ids)
    per_kind = [_count_bits(Counter(row[k] for row in fetched), width) for k in (2, 3, 4, 5)]
    counts = {pk: tuple(bits[i] for bits in per_kind) for i, pk in enumerate(version_ids)}
    return MatrixIndex(rows=rows, counts=counts)


def _count_bits(rows_per_mask: Counter, width: int) -> list[int]:
    """Return how many rows have each of ``width`` bits set, from the rows per mask."""
    totals = [0] * width
    for mask, n in rows_per_mask.items():
        bit = 0
        while mask:
            if mask & 1:
                totals[bit] += n
            mask >>= 1
            bit += 1
    return totals


# A cached index is exact while its stamp holds: the set's label count and newest label,
# the workspace's newest trace change and each version's newest execution. Writes that
# commit out of order could hide behind a newer timestamp already seen, so an index
# built while the newest change is younger than MATRIX_SETTLE_SECONDS (far longer than
# those writes' transactions) expires when that change has settled.
MATRIX_CACHE_SECONDS = 15 * 60
MATRIX_SETTLE_SECONDS = 30
# Part of the cache key: bump it when MatrixIndex changes shape, so that a deploy never
# reads an index pickled by the code before it.
MATRIX_INDEX_FORMAT = 1


def _matrix_stamp_sql(*, eval_set: EvalSet, version_ids: list[int]) -> tuple[str, list]:
    feedback, trace, execution = _table(Feedback), _table(Trace), _table(EvalExecution)
    newest_execution = f"(SELECT MAX(updated_at) FROM {execution} WHERE eval_id = %s)"
    sql = f"""
        SELECT COUNT(*), MAX(updated_at),
            (SELECT MAX(updated_at) FROM {trace} WHERE workspace_id = %s)
            {"".join(", " + newest_execution for _ in version_ids)}
        FROM {feedback} WHERE eval_set_id = %s
    """
    return sql, [eval_set.workspace_id, *version_ids, eval_set.pk]


def _as_datetime(value) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands a raw cursor the stored text
        value = dt.datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)


def matrix_index(
    *, eval_set: EvalSet, filters: MatrixFilters, version_ids: list[int]
) -> MatrixIndex:
    """Return the matrix's rows and counts, from the cache while nothing they read changed."""
    sql, params = _matrix_index_sql(eval_set=eval_set, filters=filters, version_ids=version_ids)
    stamp_sql, stamp_params = _matrix_stamp_sql(eval_set=eval_set, version_ids=version_ids)
    with connection.cursor() as cursor:
        cursor.execute(stamp_sql, stamp_params)
        stamp = cursor.fetchone()
    # The statement and its parameters name the set, its workspace, the filters and the
    # versions; the creation time tells apart sets that reuse a deleted set's id.
    digest = hashlib.sha256(repr((eval_set.created_at, sql, params, stamp)).encode()).hexdigest()
    key = f"evals:matrix:{MATRIX_INDEX_FORMAT}:{eval_set.pk}:{digest}"
    index = cache.get(key)
    if index is None:
        index = _build_matrix_index(sql, params, version_ids)
        cache.set(key, index, _seconds_to_keep(stamp))
    return index


def _seconds_to_keep(stamp: tuple) -> int:
    """Keep an index long once its newest change has settled, else only until it has."""
    changes = [_as_datetime(value) for value in stamp[1:] if value is not None]
    if not changes:
        return MATRIX_CACHE_SECONDS
    unsettled = (max(changes) - timezone.now()).total_seconds() + MATRIX_SETTLE_SECONDS
    if unsettled <= 0:
        return MATRIX_CACHE_SECONDS
    return min(MATRIX_CACHE_SECONDS, math.ceil(unsettled))


def comparison_matrix(
    *,
    eval_set: EvalSet,
    filters: MatrixFilters | None = None,
    page: int = 1,
    page_size: int = MATRIX_PAGE_SIZE,
) -> Matrix:
    """Return one page of labelled traces by versions, with per-version counts.

    Five queries whatever the size (six when the index is not cached): versions; the
    index's stamp (and the index on a miss); the page's traces, verdicts and notes.
    """
    filters = filters or MatrixFilters()
    all_versions = list(
        Eval.objects.filter(eval_set=eval_set).only(*LIST_FIELDS[:15]).order_by("-version")
    )
    chosen = set(filters.version_ids)
    versions = [v for v in all_versions if not chosen or v.pk in chosen][:MAX_MATRIX_VERSIONS]
    versions.sort(key=lambda v: v.version)
    version_ids = [v.pk for v in versions]
    index = matrix_index(eval_set=eval_set, filters=filters, version_ids=version_ids)

    columns = [VersionColumn(eval=v) for v in versions]
    for column in columns:
        agree, contradict, errors, ran = index.counts.get(column.eval.pk, (0, 0, 0, 0))
        column.agree, column.contradict, column.errors = agree, contradict, errors
        # Traces of the filtered range that a version never ran on.
        column.not_run = len(index.rows) - ran
    shown = index.rows
    if filters.only_disagreements and version_ids:
        shown = [row for row in shown if row[2]]
    total = len(shown)
    # Past the end: show the last page.
    page = max(1, min(page, -(-total // page_size)))
    page_rows = shown[(page - 1) * page_size : page * page_size]

    trace_ids = [pk for pk, _, _ in page_rows]
    traces = Trace.objects.for_workspace(eval_set.workspace_id).filter(pk__in=trace_ids)
    traces = {
        t.pk: t
        for t in traces.only(
            "id", "workspace_id", "name", "external_id", "timestamp", "source", "has_error"
        )
    }
    verdicts = {
        (eval_id, trace_id): Verdict(*verdict)
        for eval_id, trace_id, *verdict in EvalExecution.objects.for_workspace(
            eval_set.workspace_id
        )
        .filter(trace_id__in=trace_ids, eval_id__in=version_ids)
        .values_list("eval_id", "trace_id", "passed", "reason", "error", "duration_ms")
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
    for trace_id, label, _ in page_rows:
        if trace_id not in traces:  # deleted since the index was read
            continue
        row = MatrixRow(trace=traces[trace_id], label=label, notes=notes[trace_id])
        for version_id in version_ids:
            verdict = verdicts.get((version_id, trace_id))
            state = cell_state(label, verdict.passed if verdict else None, ran=verdict is not None)
            row.cells.append(MatrixCell(eval_id=version_id, execution=verdict, state=state))
        rows.append(row)
    return Matrix(
        eval_set=eval_set,
        columns=columns,
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
