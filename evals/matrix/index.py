"""The comparison matrix's index: every labelled trace judged against every shown version.

Built in SQL from the set's labels and the versions' verdict bit masks (the costly part of
a page), then cached until a label, an execution or a trace changes.
"""

# The matrix SQL interpolates only quoted table names and "%s" placeholder lists.
# ruff: noqa: S608

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from evals.matrix.cache import cached
from evals.matrix.types import MatrixFilters
from evals.models import EvalExecution
from traces.models import EvalSet, Feedback, Trace


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
        labelled = cached(labelled_of, labels_stamp, labels_changed_at, read_labelled)
        verdicts = (
            cached(verdicts_of, verdicts_stamp, verdicts_changed_at, read_verdicts)
            if version_ids
            else {}
        )
        return _judge(labelled, verdicts, version_ids)

    return cached(
        (labelled_of, verdicts_of),
        labels_stamp + verdicts_stamp[2:],
        labels_changed_at + verdicts_changed_at[1:],
        build,
    )
