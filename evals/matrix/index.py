"""The comparison matrix's index: every labelled trace judged against every shown version.

Built from the set's labels and the versions' verdict bit masks (the costly part of a
page). Both are kept in the cache as one entry per set and versions, the *base*: every
trace with a label in the set (its time, source, resolved label) and its verdict masks.
Filters (dates, source) are applied to the base in Python, so all filtered views share
it, and the judged index of each view is cached on top.

A label change does not rebuild the base: the next page reads the labels changed since
the base was built (plus a settle window for writes that commit out of order) and those
traces' verdicts, two small queries, and patches the base. The base records each trace's
label count and the sum of its label ids; if they no longer add up to the set's (a label
was deleted), or a trace or a verdict changed, the base is rebuilt whole.
"""

# The matrix SQL interpolates only quoted table names and "%s" placeholder lists.
# ruff: noqa: S608

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from evals.matrix.cache import (
    MATRIX_SETTLE_SECONDS,
    as_datetime,
    cache_key,
    cached,
    seconds_to_keep,
)
from evals.matrix.types import MatrixFilters
from evals.models import EvalExecution
from traces.models import EvalSet, Feedback, Trace

logger = logging.getLogger(__name__)

# Beyond this many traces with changed labels (an import, a bulk relabel), rebuild.
MAX_PATCHED = 500


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@dataclass
class MatrixIndex:
    """What every page of one filtered matrix shares: its rows in order and the counts."""

    # Labelled traces in range, newest first: (trace id, label, a shown version
    # contradicts the label or errs).
    rows: list[tuple[int, str, bool]]
    # Per version id: (agree, contradict, errors, traces it ran on).
    counts: dict[int, tuple[int, int, int, int]]


@dataclass
class _Base:
    """Every trace with a label in the set, and its verdict masks for the versions."""

    stamp: tuple
    # When the labels were read (this process's clock, as the labels' times are).
    read_at: dt.datetime = field(default_factory=timezone.now)
    # trace id -> (timestamp in epoch seconds, source, resolved label or None on a tie,
    # label count, sum of label ids)
    traces: dict[int, tuple] = field(default_factory=dict)
    # trace ids, newest first (timestamp, then id)
    order: list[int] = field(default_factory=list)
    # trace id -> (passes, fails, errors): bit i for version_ids[i]
    verdicts: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def sort(self) -> None:
        traces = self.traces
        self.order = sorted(traces, key=lambda pk: (traces[pk][0], pk), reverse=True)


# --- statements ------------------------------------------------------------------------------


def _changed_since(eval_set: EvalSet, old: "_Base") -> list[int] | None:
    """Traces of the set whose labels changed since ``old`` was read; None when too many.

    Changed: newer than the newest label ``old`` saw, or, for a write that committed
    after ``old`` was read with an earlier time, within the settle time before the read.
    """
    sql = f"""
        SELECT DISTINCT trace_id FROM {_table(Feedback)}
        WHERE eval_set_id = %s AND (updated_at > %s OR updated_at >= %s)
        LIMIT {MAX_PATCHED + 1}
    """
    settled = old.read_at - dt.timedelta(seconds=MATRIX_SETTLE_SECONDS)
    params = [eval_set.pk, _db_time(as_datetime(old.stamp[1])), _db_time(settled)]
    changed = [pk for (pk,) in _fetch(sql, params)]
    return None if len(changed) > MAX_PATCHED else changed


def _restrict(trace_ids: list[int] | None) -> tuple[str, list]:
    """A condition on ``trace_id``: these traces, or (None) every trace labelled in the set."""
    if trace_ids is None:
        return f"IN (SELECT trace_id FROM {_table(Feedback)} WHERE eval_set_id = %s)", []
    return f"IN ({', '.join(['%s'] * len(trace_ids))})", list(trace_ids)


def _db_time(value):
    return connection.ops.adapt_datetimefield_value(value)


def _labels_sql(eval_set: EvalSet, trace_ids=None) -> tuple[str, list]:
    """Per trace with labels in the set: (id, timestamp, source, pos, neg, neu, n, sum of ids).

    Every labelled trace, or (a patch) only ``trace_ids``.
    """
    only, params = ("", []) if trace_ids is None else _restrict(trace_ids)
    sql = f"""
        SELECT t.id, t.timestamp, t.source, c.pos, c.neg, c.neu, c.n, c.ids
        FROM (
            SELECT trace_id,
                COUNT(*) FILTER (WHERE rating = 'positive') AS pos,
                COUNT(*) FILTER (WHERE rating = 'negative') AS neg,
                COUNT(*) FILTER (WHERE rating = 'neutral') AS neu,
                COUNT(*) AS n, SUM(id) AS ids
            FROM {_table(Feedback)}
            WHERE eval_set_id = %s {"AND trace_id " + only if only else ""}
            GROUP BY trace_id
        ) c JOIN {_table(Trace)} t ON t.id = c.trace_id
        WHERE t.workspace_id = %s
    """
    return sql, [eval_set.pk, *params, eval_set.workspace_id]


def _verdicts_sql(eval_set: EvalSet, version_ids: list[int], trace_ids=None) -> tuple[str, list]:
    """Per labelled trace the versions ran on: (id, passes, fails, errors) bit masks.

    Bit ``i`` is ``version_ids[i]``; a bit per version fits ``MAX_MATRIX_VERSIONS``. Only
    traces with a label in the set: continuous evaluation leaves the active version's
    verdicts on every new trace, which the matrix never shows.
    """
    bits = " ".join(f"WHEN %s THEN {1 << i}" for i in range(len(version_ids)))
    marks = ", ".join(["%s"] * len(version_ids))
    changed, params = _restrict(trace_ids)
    params = params or [eval_set.pk]
    sql = f"""
        SELECT trace_id,
            SUM(CASE WHEN passed THEN bit ELSE 0 END),
            SUM(CASE WHEN NOT passed THEN bit ELSE 0 END),
            SUM(CASE WHEN passed IS NULL THEN bit ELSE 0 END)
        FROM (
            SELECT trace_id, passed, CASE eval_id {bits} END AS bit
            FROM {_table(EvalExecution)}
            WHERE eval_id IN ({marks}) AND trace_id {changed}
        ) e GROUP BY trace_id
    """
    return sql, [*version_ids, *version_ids, *params]


def _stamp(*, eval_set: EvalSet, version_ids: list[int]) -> tuple:
    """(label count, newest label, sum of label ids, newest trace change in the workspace,
    each version's newest execution), in one query."""
    newest_execution = f"(SELECT MAX(updated_at) FROM {_table(EvalExecution)} WHERE eval_id = %s)"
    sql = f"""
        SELECT COUNT(*), MAX(updated_at), SUM(id),
            (SELECT MAX(updated_at) FROM {_table(Trace)} WHERE workspace_id = %s)
            {"".join(", " + newest_execution for _ in version_ids)}
        FROM {_table(Feedback)} WHERE eval_set_id = %s
    """
    return tuple(_fetch(sql, [eval_set.workspace_id, *version_ids, eval_set.pk])[0])


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- the base: built whole, or patched after label changes -----------------------------------


def _resolve(pos: int, neg: int, neu: int) -> str | None:
    """The majority rule of ``resolve_label``: a tie has no label."""
    if pos > neg and pos > neu:
        return "positive"
    if neg > pos and neg > neu:
        return "negative"
    if neu > pos and neu > neg:
        return "neutral"
    return None


def _read_labels(base: _Base, eval_set: EvalSet, trace_ids=None) -> None:
    for pk, timestamp, source, pos, neg, neu, n, ids in _fetch(*_labels_sql(eval_set, trace_ids)):
        # Seconds since the epoch: a float pickles far faster than a datetime.
        when = as_datetime(timestamp).timestamp()
        base.traces[pk] = (when, source, _resolve(pos, neg, neu), n, int(ids))


def _read_verdicts(base: _Base, eval_set: EvalSet, version_ids: list[int], trace_ids=None) -> None:
    if version_ids:
        for pk, *masks in _fetch(*_verdicts_sql(eval_set, version_ids, trace_ids)):
            base.verdicts[pk] = tuple(int(m) for m in masks)


def _adds_up(base: _Base) -> bool:
    count, _newest, id_sum = base.stamp[:3]
    values = base.traces.values()
    return sum(v[3] for v in values) == count and sum(v[4] for v in values) == int(id_sum or 0)


def _refresh(old: _Base | None, stamp, eval_set, version_ids) -> _Base:
    """The base at ``stamp``, reading only what changed since ``old`` where it can.

    Labels changed (and nothing else): the changed traces' labels and verdicts. A trace
    changed (a sync moved its time or source): all labels, the verdicts kept. A verdict
    changed (a run): all verdicts, the labels kept. Anything more: everything.
    """
    labels_same = old is not None and old.stamp[:3] == stamp[:3]
    traces_same = old is not None and old.stamp[3] == stamp[3]
    verdicts_same = old is not None and old.stamp[4:] == stamp[4:]
    base = _Base(stamp=stamp)
    changed = None
    if old is not None and traces_same and verdicts_same and old.stamp[1] is not None:
        changed = _changed_since(eval_set, old)
    if changed is not None:
        base.traces, base.verdicts = dict(old.traces), dict(old.verdicts)
        if changed:
            _read_labels(base, eval_set, changed)
            _read_verdicts(base, eval_set, version_ids, changed)
        if _adds_up(base):
            base.sort()
            return base
        base = _Base(stamp=stamp)  # a label was deleted: read everything
    elif labels_same and verdicts_same:
        base.verdicts = old.verdicts  # the labels are read again: read_at is now
        _read_labels(base, eval_set)
        base.sort()
        return base
    elif labels_same and traces_same:
        base.traces, base.order, base.read_at = old.traces, old.order, old.read_at
        _read_verdicts(base, eval_set, version_ids)
        return base
    _read_labels(base, eval_set)
    _read_verdicts(base, eval_set, version_ids)
    base.sort()
    return base


def _base(*, eval_set: EvalSet, version_ids: list[int], stamp: tuple) -> _Base:
    key = cache_key(("base", eval_set.pk, eval_set.created_at, tuple(version_ids)), ())
    try:
        old = cache.get(key)
    except Exception:
        logger.warning("matrix cache unavailable, building without it", exc_info=True)
        old = None
    if not isinstance(old, _Base):
        old = None
    elif old.stamp == stamp:
        return old
    base = _refresh(old, stamp, eval_set, version_ids)
    try:
        # Labels that commit out of order are caught by the settle window of the next
        # patch; verdicts and traces are not patched, so their recent changes shorten it.
        cache.set(key, base, seconds_to_keep(stamp[3:]))
    except Exception:
        logger.warning("matrix cache unavailable, not storing", exc_info=True)
    return base


# --- judging ---------------------------------------------------------------------------------


def _in_range(base: _Base, filters: MatrixFilters) -> list[tuple[int, str]]:
    """Labelled traces of the base that the filters keep, newest first: (id, label)."""
    start = _day_start(filters.date_from) if filters.date_from else None
    end = _day_start(filters.date_to + dt.timedelta(days=1)) if filters.date_to else None
    source = filters.source
    traces = base.traces
    kept = []
    for pk in base.order:
        timestamp, trace_source, label, _n, _ids = traces[pk]
        if label is None or (source and trace_source != source):
            continue
        if (start and timestamp < start) or (end and timestamp >= end):
            continue
        kept.append((pk, label))
    return kept


def _day_start(day: dt.date) -> float:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min)).timestamp()


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


def matrix_index(
    *, eval_set: EvalSet, filters: MatrixFilters, version_ids: list[int]
) -> MatrixIndex:
    """Return the matrix's rows and counts: cached per view while nothing they read changed.

    One query (the stamp) when the view is cached; else the base, from the cache, patched
    after label changes (two small queries), or built (two).
    """
    stamp = _stamp(eval_set=eval_set, version_ids=version_ids)
    view = (filters.date_from, filters.date_to, filters.source)
    labels = {label: label for label in Feedback.Rating.values}

    def build() -> MatrixIndex:
        base = _base(eval_set=eval_set, version_ids=version_ids, stamp=stamp)
        # One string object per label keeps the cached rows small (pickle shares it).
        in_range = [(pk, labels[label]) for pk, label in _in_range(base, filters)]
        return _judge(in_range, base.verdicts, version_ids)

    return cached(
        ("index", eval_set.pk, eval_set.created_at, tuple(version_ids), view),
        stamp,
        stamp[3:],
        build,
    )
