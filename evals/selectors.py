"""Reads for eval lists, version history and the comparison matrix."""

# The matrix SQL interpolates only quoted table names and "%s" placeholder lists.
# ruff: noqa: S608

import datetime as dt
import hashlib
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection
from django.db.models import QuerySet
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from evals.models import Eval, EvalExecution, EvalRun
from traces.models import EvalSet, Feedback, Trace
from workspaces.models import Workspace

logger = logging.getLogger(__name__)

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
    "low_confidence_reason",
    "cost_usd",
    "activated_at",
    "created_at",
    "eval_set__name",
    "eval_set__workspace_id",
    "parent__version",
)


# --- lists and history ------------------------------------------------------------------


def with_headline_metrics(qs: QuerySet[Eval]) -> QuerySet[Eval]:
    """Annotate the parts of `metrics` that lists show (kappa, no reliable eval).

    Lists defer the full metrics JSON; these annotations let Eval.kappa and
    Eval.no_reliable_eval answer without a query per row.
    """
    return qs.annotate(
        list_heldout=KeyTransform("heldout", "metrics"),
        list_training=KeyTransform("training", "metrics"),
        list_no_reliable_eval=KeyTransform("no_reliable_eval", "metrics"),
    )


def eval_list(
    *, workspace: Workspace, eval_set: EvalSet | None = None, status: str | None = None
) -> QuerySet[Eval]:
    """Return eval versions of the workspace (or one set), newest set and version first."""
    qs = Eval.objects.for_workspace(workspace).select_related("eval_set", "parent")
    if eval_set is not None:
        qs = qs.filter(eval_set=eval_set)
    if status:
        qs = qs.filter(status=status)
    qs = with_headline_metrics(qs.only(*LIST_FIELDS))
    return qs.order_by("eval_set__name", "eval_set_id", "-version")


def versions_of(eval_set: EvalSet) -> list[Eval]:
    """Return every version of a set, oldest first, with ``depth`` set from the lineage."""
    versions = list(
        with_headline_metrics(
            Eval.objects.filter(eval_set=eval_set)
            .select_related("parent")
            .only(*LIST_FIELDS, "description")
        ).order_by("version")
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

    Built from the set's labels and the versions' verdicts (the costly part of a page),
    then cached until a label, an execution or a trace changes.
    """

    # Labelled traces in range, newest first: (trace id, label, a shown version
    # contradicts the label or errs).
    rows: list[tuple[int, str, bool]]
    # Per version id: (agree, contradict, errors, traces it ran on).
    counts: dict[int, tuple[int, int, int, int]]


def _labelled_sql(*, eval_set: EvalSet, filters: MatrixFilters) -> tuple[str, list]:
    """Return the statement for the labelled traces in range, newest first: (id, label).

    Labels are resolved with the same majority rule as ``resolve_label`` (a tie has no
    label and is left out).
    """
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
    sql = f"""
        WITH counts AS (
            SELECT trace_id,
                COUNT(*) FILTER (WHERE rating = 'positive') AS pos,
                COUNT(*) FILTER (WHERE rating = 'negative') AS neg,
                COUNT(*) FILTER (WHERE rating = 'neutral') AS neu
            FROM {_table(Feedback)} WHERE eval_set_id = %s GROUP BY trace_id
        ), labels AS (
            SELECT trace_id, CASE
                WHEN pos > neg AND pos > neu THEN 'positive'
                WHEN neg > pos AND neg > neu THEN 'negative'
                WHEN neu > pos AND neu > neg THEN 'neutral'
            END AS label FROM counts
        )
        SELECT t.id, l.label
        FROM labels l JOIN {_table(Trace)} t ON t.id = l.trace_id
        WHERE {" AND ".join(where)}
        ORDER BY t.timestamp DESC, t.id DESC
    """
    return sql, params


def _verdicts_sql(eval_set: EvalSet, version_ids: list[int]) -> tuple[str, list]:
    """Return the statement for each labelled trace the versions ran on: (id, passes,
    fails, errors).

    Each of the last three has bit ``i`` set when ``version_ids[i]`` passed, failed or
    errored on the trace; a bit per version fits ``MAX_MATRIX_VERSIONS``. One row per
    trace keeps the later join with the labels at one row per trace. Only traces with a
    label in the set: continuous evaluation leaves the active version's verdicts on every
    new trace, which the matrix never shows.
    """
    bits = " ".join(f"WHEN %s THEN {1 << i}" for i in range(len(version_ids)))
    marks = ", ".join(["%s"] * len(version_ids))
    sql = f"""
        SELECT trace_id,
            SUM(CASE WHEN passed THEN bit ELSE 0 END),
            SUM(CASE WHEN NOT passed THEN bit ELSE 0 END),
            SUM(CASE WHEN passed IS NULL THEN bit ELSE 0 END)
        FROM (
            SELECT trace_id, passed, CASE eval_id {bits} END AS bit
            FROM {_table(EvalExecution)}
            WHERE eval_id IN ({marks})
                AND trace_id IN (SELECT trace_id FROM {_table(Feedback)} WHERE eval_set_id = %s)
        ) e GROUP BY trace_id
    """
    return sql, [*version_ids, *version_ids, eval_set.pk]


def _day_start(day: dt.date):
    value = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return connection.ops.adapt_datetimefield_value(value)


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _judge(
    labelled: list[tuple[int, str]],
    verdicts: dict[int, tuple[int, int, int]],
    version_ids: list[int],
) -> MatrixIndex:
    """Judge each labelled trace's verdict masks against its label; count per version."""
    rows = []
    agree, contradict, errors, ran = [], [], [], []
    for pk, label in labelled:
        passes, fails, errs = verdicts.get(pk, (0, 0, 0))
        if label == "positive":
            right, wrong = passes, fails
        elif label == "negative":
            right, wrong = fails, passes
        else:  # a neutral label is neither agreed with nor contradicted
            right = wrong = 0
        rows.append((pk, label, bool(wrong | errs)))
        agree.append(right)
        contradict.append(wrong)
        errors.append(errs)
        ran.append(passes | fails | errs)
    # Rows share far fewer masks than there are rows: count rows per mask, then bits.
    width = len(version_ids)
    per_kind = [_count_bits(Counter(masks), width) for masks in (agree, contradict, errors, ran)]
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


# Each cached part is exact while its stamp holds. Labels: the set's label count and
# newest label, and the workspace's newest trace change (a trace's time or source moves
# it in or out of range). Verdicts: the set's label count and newest label (they are
# read for labelled traces only) and each version's newest execution. Writes that commit
# out of order could hide behind a newer timestamp already seen, so a part built while
# its newest change is younger than MATRIX_SETTLE_SECONDS (far longer than those writes'
# transactions) expires when that change has settled.
MATRIX_CACHE_SECONDS = 15 * 60
MATRIX_SETTLE_SECONDS = 30
# Part of the cache keys: bump it when a cached part changes shape, so that a deploy
# never reads a part pickled by the code before it.
MATRIX_INDEX_FORMAT = 3


def _matrix_stamps(*, eval_set: EvalSet, version_ids: list[int]) -> tuple[tuple, tuple]:
    """Return the labels' stamp (label count, newest label, newest trace change) and the
    verdicts' stamp (label count, newest label, each version's newest execution), read in
    one query."""
    newest_execution = f"(SELECT MAX(updated_at) FROM {_table(EvalExecution)} WHERE eval_id = %s)"
    sql = f"""
        SELECT COUNT(*), MAX(updated_at),
            (SELECT MAX(updated_at) FROM {_table(Trace)} WHERE workspace_id = %s)
            {"".join(", " + newest_execution for _ in version_ids)}
        FROM {_table(Feedback)} WHERE eval_set_id = %s
    """
    stamp = _fetch(sql, [eval_set.workspace_id, *version_ids, eval_set.pk])[0]
    return stamp[:3], stamp[:2] + stamp[3:]


def _cached(what: tuple, stamp: tuple, changed_at: tuple, build):
    """Return ``build()``, cached under ``what`` (the statement and whose it is) and stamp.

    ``changed_at`` are the stamp's times: a part is kept only until its newest change
    has settled, then long.
    """
    digest = hashlib.sha256(repr((what, stamp)).encode()).hexdigest()
    key = f"evals:matrix:{MATRIX_INDEX_FORMAT}:{digest}"
    try:
        value = cache.get(key)
    except Exception:
        # The cache only saves time: with it down the page is slower, not broken.
        logger.warning("matrix cache unavailable, building without it", exc_info=True)
        return build()
    if value is None:
        value = build()
        try:
            cache.set(key, value, _seconds_to_keep(changed_at))
        except Exception:
            logger.warning("matrix cache unavailable, not storing", exc_info=True)
    return value


def _seconds_to_keep(changed_at: tuple) -> int:
    changes = [_as_datetime(value) for value in changed_at if value is not None]
    if not changes:
        return MATRIX_CACHE_SECONDS
    unsettled = (max(changes) - timezone.now()).total_seconds() + MATRIX_SETTLE_SECONDS
    if unsettled <= 0:
        return MATRIX_CACHE_SECONDS
    return min(MATRIX_CACHE_SECONDS, math.ceil(unsettled))


def _as_datetime(value) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands a raw cursor the stored text
        value = dt.datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)


def matrix_index(
    *, eval_set: EvalSet, filters: MatrixFilters, version_ids: list[int]
) -> MatrixIndex:
    """Return the matrix's rows and counts, from the cache while nothing they read changed.

    The labels and the verdicts are cached apart too, so that a new run re-reads only the
    verdicts, and a synced trace only the labels.
    """
    labels_stamp, verdicts_stamp = _matrix_stamps(eval_set=eval_set, version_ids=version_ids)
    labelled_sql = _labelled_sql(eval_set=eval_set, filters=filters)
    verdicts_sql = _verdicts_sql(eval_set, version_ids) if version_ids else None
    # The statement names the set, its workspace and the filters, the creation time tells
    # apart sets that reuse a deleted set's id; the verdicts' statement names the versions.
    labelled_of = ("labelled", eval_set.pk, eval_set.created_at, labelled_sql)
    verdicts_of = ("verdicts", verdicts_sql)
    labels_changed_at, verdicts_changed_at = labels_stamp[1:], verdicts_stamp[1:]
    # One string object per label keeps the cached rows small (pickle shares it).
    labels = {label: label for label in Feedback.Rating.values}

    def read_labelled():
        return [(pk, labels[label]) for pk, label in _fetch(*labelled_sql)]

    def read_verdicts():
        return {pk: tuple(masks) for pk, *masks in _fetch(*verdicts_sql)}

    def build():
        labelled = _cached(labelled_of, labels_stamp, labels_changed_at, read_labelled)
        verdicts = (
            _cached(verdicts_of, verdicts_stamp, verdicts_changed_at, read_verdicts)
            if version_ids
            else {}
        )
        return _judge(labelled, verdicts, version_ids)

    return _cached(
        (labelled_of, verdicts_of),
        labels_stamp + verdicts_stamp[2:],
        labels_changed_at + verdicts_changed_at[1:],
        build,
    )


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
