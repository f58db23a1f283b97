"""The comparison matrix's index: every labelled trace judged against every shown version.

Built from two kinds of cached part, so that a change re-reads only its own part:

- the set's *base*: every trace with a label in the set (its time, source, resolved
  label), read as one row of joined columns, newest first (a row per trace spent most
  of its time in the driver). Filters (dates, source) are applied to it in Python, so
  all filtered views share it, and the judged index of each view is cached on top;
- per version, its *verdicts*: the traces it passed, failed and erred on, as three
  bitsets (``TraceSet``), which PostgreSQL aggregates into 64-bit words (SQLite joins
  the ids by commas), index-only, on executions (eval, passed, trace >> 6) INCLUDE
  (trace, workspace); cached until the version's newest execution changes, and the process
  keeps the parts it used last (no longer than the cache keeps them). When nothing is
  cached, PostgreSQL reads them on a second connection while the first reads the labels
  (outside transactions). When a version's executions change (a batch run), or its part
  here has outlived its time (a verdict may have committed behind the newest execution),
  the part this process used last is patched with the executions written since, read
  the same way (words of 64 traces).

A label change does not rebuild the base: the next page reads the labels changed since
the base was built (plus a settle window for writes that commit out of order), one
small query, and patches the base, each changed trace found by binary search on its
(time, id); the verdicts are not read at all. New traces (ingestion) change neither:
the stamp reads only traces written again after they were created, from a partial index
new traces never enter. When one was (a re-import, perhaps with a new time or source),
the same query also asks for the set's labelled traces rewritten since, and patches
those, moving a trace whose time changed. The base records each trace's label count and
the sum of its label ids, and their totals; if these no longer add up to the set's (a
label was deleted), the base is rebuilt whole. Each base keeps which
traces changed since the bases it was patched from (``since``), so a cached view is not
judged again whole either: only the traces changed since the base it was judged from
are, each found in the view by binary search, taken out of the counts with its old label
and put back with its new one (``_rejudge``): the work follows the changed traces, not
the rows. Likewise when verdicts changed, for the traces whose verdicts differ from those
the view was judged with (this process keeps them with its views). Judging a view whole
(nothing cached, or the view's base no longer among the base's ancestors, or its
verdicts unknown here) is bitset arithmetic (labels by verdicts per
version, a few integer operations each), not a loop over rows and versions.
"""

# The matrix SQL interpolates only quoted table names and "%s" placeholder lists.
# ruff: noqa: S608

import bisect
import datetime as dt
import logging
import operator
import random
import sys
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import connection, connections
from django.utils import timezone

from evals.matrix.bits import Span, TraceSet
from evals.matrix.cache import (
    MATRIX_SETTLE_SECONDS,
    as_datetime,
    cache_key,
    seconds_to_keep,
)
from evals.matrix.types import MatrixFilters
from evals.models import EvalExecution
from traces.filters import day_after
from traces.models import EvalSet, Feedback, Trace

logger = logging.getLogger(__name__)

# Beyond this many traces with changed labels (an import, a bulk relabel), rebuild.
MAX_PATCHED = 500
# A base remembers the traces changed since this many of its ancestors (and no more than
# MAX_PATCHED traces in all): a view judged from an older base is judged again whole.
MAX_ANCESTORS = 20


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
    # The rows' timestamps (epoch seconds): a trace's row is found by (timestamp, id).
    times: list[float] = field(default_factory=list)
    # The ``_Base.version`` the rows were taken from.
    base_version: int = 0


# A trace as the base orders it: (timestamp, id).
Key = tuple[float, int]


@dataclass
class _Base:
    """Every trace with a label in the set, newest first (timestamp, then id).

    Parallel lists rather than an object per trace: they pickle in and out of the
    cache several times faster.
    """

    stamp: tuple
    # When the labels were read (this process's clock, as the labels' times are).
    read_at: dt.datetime = field(default_factory=timezone.now)
    order: list[int] = field(default_factory=list)  # trace ids
    times: list[float] = field(default_factory=list)  # timestamps, epoch seconds
    sources: list[str] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)  # None on a tie
    # Label count and sum of label ids, to tell whether they add up to the set's, and
    # their totals (kept as rows are patched, not summed again).
    counts: list[int] = field(default_factory=list)
    id_sums: list[int] = field(default_factory=list)
    label_total: int = 0
    label_id_total: int = 0
    # This base's identity (a new one for every base built or patched), and the traces
    # changed since each ancestor: (ancestor's version, traces changed from it to the
    # next), oldest first.
    version: int = field(default_factory=lambda: random.getrandbits(62))
    since: list[tuple[int, list[Key]]] = field(default_factory=list)

    def rows(self) -> dict[int, tuple]:
        """trace id -> (timestamp, source, label, label count, sum of label ids)."""
        columns = (self.times, self.sources, self.labels, self.counts, self.id_sums)
        return dict(zip(self.order, zip(*columns, strict=True), strict=True))

    def fill(self, columns: tuple[list, ...]) -> None:
        """Take the columns of ``_read_labels``, newest first."""
        self.order, self.times, self.sources, self.labels, self.counts, self.id_sums = columns
        self.label_total, self.label_id_total = sum(self.counts), sum(self.id_sums)

    def find(self, key: Key) -> int | None:
        """The position of the trace ``key`` = (timestamp, id); None if not in the base."""
        i = _place(self.times, self.order.__getitem__, key)
        found = i < len(self.order) and self.order[i] == key[1] and self.times[i] == key[0]
        return i if found else None


def _place(times: list[float], id_at: Callable[[int], int], key: Key) -> int:
    """Where the trace ``key`` is, or would go, among rows newest first (timestamp, then
    id) whose timestamps are ``times`` and whose ids ``id_at`` gives: a binary search on
    the timestamps (in C), then past the rows of the same timestamp with higher ids."""
    when, pk = key
    i = bisect.bisect_left(times, -when, key=operator.neg)  # the first not newer
    while i < len(times) and times[i] == when and id_at(i) > pk:
        i += 1
    return i


# --- statements ------------------------------------------------------------------------------


def _changed_since(eval_set: EvalSet, old: "_Base", traces_changed: bool) -> list[int] | None:
    """Traces of the set whose labels changed since ``old`` was read, and when
    ``traces_changed``, the set's labelled traces that changed themselves (a re-import
    with a new time or source); None when too many.

    Changed: newer than the newest label (or trace) ``old`` saw, or, for a write that
    committed after ``old`` was read with an earlier time, within the settle time before
    the read. New traces without a label in the set (ingestion) are not among them.
    """
    # DISTINCT: a trace has a label per reviewer (UNION dedups too, when there is one).
    sql = f"""
        SELECT DISTINCT trace_id FROM {_table(Feedback)}
        WHERE eval_set_id = %s AND updated_at > %s
    """
    params = [eval_set.pk, _written_after(old.stamp[1], old.read_at)]
    if traces_changed:
        sql += f"""
            UNION
            SELECT f.trace_id FROM {_table(Feedback)} f
            JOIN {_table(Trace)} t ON t.id = f.trace_id
            WHERE f.eval_set_id = %s AND t.workspace_id = %s AND t.updated_at > %s
                AND {_rewritten("t.")}
        """
        params += [eval_set.pk, eval_set.workspace_id, _written_after(old.stamp[3], old.read_at)]
    changed = [pk for (pk,) in _fetch(f"{sql} LIMIT {MAX_PATCHED + 1}", params)]
    return None if len(changed) > MAX_PATCHED else changed


def _rewritten(alias: str = "") -> str:
    """``traces.models.REWRITTEN`` in SQL: a trace written again after it was created (a
    re-import may have changed its time or source), which the partial index
    trace_ws_rewritten_idx holds; new traces (ingestion) are not, however many."""
    return f"{alias}updated_at <> {alias}created_at"


def _written_after(newest, read_at: dt.datetime):
    """The time after which a write may be missing from a part whose newest write was
    ``newest`` (None: it saw none), read at ``read_at``: after ``newest``, or within the
    settle time before the read (a write that committed late). One bound, so that an
    index range finds them."""
    settled = read_at - dt.timedelta(seconds=MATRIX_SETTLE_SECONDS, microseconds=1)
    return _db_time(settled if newest is None else min(as_datetime(newest), settled))


def _restrict(ids: list[int]) -> tuple[str, list]:
    """A condition on an id column (its parameters): one of these ids. On PostgreSQL one
    array parameter, which the driver splices in far faster than a placeholder per id
    (the same plan as ``IN``); SQLite (tests) has no arrays."""
    if connection.vendor == "postgresql":
        return "= ANY(%s)", [list(ids)]
    return f"IN ({', '.join(['%s'] * len(ids))})", list(ids)


def _db_time(value):
    return connection.ops.adapt_datetimefield_value(value)


def _labels_sql(eval_set: EvalSet, trace_ids=None) -> tuple[str, list]:
    """Every trace with labels in the set (or, a patch, only ``trace_ids``), in no
    particular order (``_read_labels`` puts them newest first), as one row of joined
    columns: ids, timestamps, sources, labels (one letter each, "-" on a tie), label
    counts and sums of label ids.

    Six strings: fetching and splitting them costs a fraction of a row per trace.
    The labels are asked for in trace order: read so from the index on (eval set, trace)
    INCLUDE (rating, id) alone, and grouped as they come, not hashed (the planner would
    rather read the whole table when one set holds most of its labels: a third slower).
    The traces' times and sources come from the trace list's index on (workspace,
    timestamp, id) INCLUDE (source), not the table, whose rows carry the payloads
    (the statement's CPU 30 -> 26 ms at 20,000 traces). Not sorted in SQL: the sort
    took about a third of the statement's time, and the join hands the rows in the
    traces' stored order, nearly sorted already, which Python's sort takes in one pass.
    """
    only, params = ("", []) if trace_ids is None else _restrict(trace_ids)
    sql = f"""
        SELECT {_packed("id")}, {_packed("ts", "float8")}, {_joined("source")},
            {_joined("label", sep="")}, {_packed("n")}, {_packed("ids")}
        FROM (
            SELECT t.id, {_epoch("t.timestamp")} AS ts, t.source, c.n, c.ids,
                CASE
                    WHEN c.pos > c.neg AND c.pos > c.neu THEN 'p'
                    WHEN c.neg > c.pos AND c.neg > c.neu THEN 'n'
                    WHEN c.neu > c.pos AND c.neu > c.neg THEN 'u'
                    ELSE '-'
                END AS label
            FROM (
                SELECT trace_id,
                    COUNT(*) FILTER (WHERE rating = 'positive') AS pos,
                    COUNT(*) FILTER (WHERE rating = 'negative') AS neg,
                    COUNT(*) FILTER (WHERE rating = 'neutral') AS neu,
                    COUNT(*) AS n, SUM(id) AS ids
                FROM (
                    SELECT trace_id, rating, id FROM {_table(Feedback)}
                    WHERE eval_set_id = %s {"AND trace_id " + only if only else ""}
                    ORDER BY trace_id
                ) set_labels
                GROUP BY trace_id
            ) c JOIN {_table(Trace)} t ON t.id = c.trace_id
            WHERE t.workspace_id = %s
        ) labelled
    """
    return sql, [eval_set.pk, *params, eval_set.workspace_id]


def _verdicts_sql(eval_set: EvalSet, version_ids: list[int], since=()) -> tuple[str, list]:
    """Versions' verdicts: (version, passed, trace ids) per verdict; with ``since`` (a
    time, ``_written_after``), only those written after it.

    Every trace each version ran on, labelled or not, so that a label change never
    touches this part; ``passed`` is NULL where the eval erred. On PostgreSQL the ids
    come as a bitset of 64-bit words (``TraceSet.from_words``: a few kilobytes where
    the ids themselves were 8 bytes each, and no set to build id by id); SQLite (tests)
    joins them by commas.

    Not restricted to the set's labelled traces by a semi-join on its labels: it still
    reads every verdict (no index finds a version's verdicts by trace with their
    outcome) and probes a hash of the labels with each; measured 1.4 to 2.2 times slower
    at 20,000 labels, and no faster with 100,000 more verdicts on unlabelled traces.

    One SELECT per version, joined by UNION ALL: with ``eval_id IN (...)`` over every
    version PostgreSQL reads the whole table and hashes it (most of its rows are
    asked for); one version at a time it reads the index on (eval, passed) alone,
    already grouped: about half the time. The index's third key is the word itself
    (``trace_id >> 6``, the expression below, which the index must match): the rows
    come grouped by word, and PostgreSQL folds each word's mask as it reads instead of
    hashing 20,000 rows per version (the statement's CPU 36 -> 26 ms at 20,000 traces
    by 10 versions).

    Each SELECT names its version as a parameter rather than grouping by ``eval_id``:
    one key fewer to compare per row (the statement's CPU 27 -> 24.5 ms).
    """
    written = "AND updated_at > %s" if since else ""
    if connection.vendor == "postgresql":
        one = f"""
            SELECT %s, passed, string_agg(int8send(word) || int8send(mask), ''::bytea)
            FROM (
                SELECT passed, trace_id >> 6 AS word,
                    bit_or(1::int8 << (trace_id & 63)::int) AS mask
                FROM {_table(EvalExecution)}
                WHERE eval_id = %s AND workspace_id = %s {written}
                GROUP BY passed, word
            ) words
            GROUP BY passed
        """
    else:
        one = f"""
            SELECT %s, passed, {_joined("trace_id")}
            FROM {_table(EvalExecution)}
            WHERE eval_id = %s AND workspace_id = %s {written}
            GROUP BY passed
        """
    params = [v for pk in version_ids for v in (pk, pk, eval_set.workspace_id, *since)]
    return " UNION ALL ".join([one] * len(version_ids)), params


def _epoch(column: str) -> str:
    """``column`` in seconds since the epoch on PostgreSQL (a number parses far faster
    than a timestamp); SQLite (tests) hands back its text, parsed in Python.

    ``date_part`` computes a float8 directly; ``EXTRACT`` a numeric, then cast (slower,
    and the same float8: both round the exact microseconds to the nearest double)."""
    if connection.vendor == "postgresql":
        return f"date_part('epoch', {column})"
    return column


def _packed(column: str, kind: str = "int8") -> str:
    """``column``'s numbers as one bytea of big-endian 8-byte ``kind`` (int8 or float8)
    on PostgreSQL, read in one call rather than parsed one by one (see ``_numbers``);
    SQLite (tests) joins their text by commas."""
    if connection.vendor == "postgresql":
        return f"string_agg({kind}send(({column})::{kind}), ''::bytea)"
    return _joined(column)


def _numbers(value, typecode: str) -> array:
    """The numbers of a ``_packed`` column: ``typecode`` "q" (int8) or "d" (float8)."""
    if isinstance(value, str):
        return array(typecode, map(int if typecode == "q" else float, value.split(",")))
    numbers = array(typecode)
    numbers.frombytes(value)
    if sys.byteorder == "little":
        numbers.byteswap()
    return numbers


def _joined(column: str, sep: str = ",") -> str:
    """``column``'s values joined by ``sep`` (in the order they come, as a rule)."""
    if connection.vendor == "postgresql":
        return f"string_agg({column}::text, '{sep}')"
    return f"group_concat({column}, '{sep}')"


def _stamp(*, eval_set: EvalSet, version_ids: list[int]) -> tuple:
    """(label count, newest label, sum of label ids, newest change of a trace written
    again in the workspace (``_rewritten``: new traces do not count), each version's
    newest execution), in one query.

    The labels are asked for in (eval set, updated_at) order: read so from the index on
    (eval set, updated_at) INCLUDE (id) alone. Unordered, when one set holds most of the
    table's labels, the planner reads the table instead: five times the pages."""
    newest_execution = f"(SELECT MAX(updated_at) FROM {_table(EvalExecution)} WHERE eval_id = %s)"
    sql = f"""
        SELECT COUNT(*), MAX(updated_at), SUM(id),
            (SELECT MAX(updated_at) FROM {_table(Trace)} WHERE workspace_id = %s
                AND {_rewritten()})
            {"".join(", " + newest_execution for _ in version_ids)}
        FROM (
            SELECT updated_at, id FROM {_table(Feedback)} WHERE eval_set_id = %s
            ORDER BY updated_at
        ) set_labels
    """
    return tuple(_fetch(sql, [eval_set.workspace_id, *version_ids, eval_set.pk])[0])


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- the base: built whole, or patched after label changes -----------------------------------


# Letters of the labels SQL: the majority rule of ``resolve_label``; a tie has no label.
_LABELS = {"p": "positive", "n": "negative", "u": "neutral", "-": None}


def _read_labels(eval_set: EvalSet, trace_ids=None) -> tuple[list, ...]:
    """Parallel columns of labelled traces, newest first (timestamp, then id): ids,
    timestamps (epoch seconds), sources, labels (None on a tie), label counts and sums
    of label ids."""
    ((ids, times, sources, labels, counts, id_sums),) = _fetch(*_labels_sql(eval_set, trace_ids))
    if ids is None:  # no labels
        return [], [], [], [], [], []
    columns = (
        _numbers(ids, "q").tolist(),
        _epoch_seconds(times),
        # One string object per source (interned): pickle then writes each once.
        list(map(sys.intern, sources.split(","))),
        list(map(_LABELS.__getitem__, labels)),
        _numbers(counts, "q").tolist(),
        _numbers(id_sums, "q").tolist(),
    )
    # Newest first. The traces' stored order is mostly oldest first: where the times
    # rise strictly, each column is only reversed; else sorted (in one pass, as a rule).
    times = columns[1]
    if all(map(operator.lt, times, times[1:])):
        return tuple(column[::-1] for column in columns)
    keys = list(zip(times, columns[0], strict=True))  # (timestamp, id)
    order = sorted(range(len(keys)), key=keys.__getitem__, reverse=True)
    return tuple([column[i] for i in order] for column in columns)


def _epoch_seconds(times) -> list[float]:
    if isinstance(times, str):  # SQLite's timestamp text, joined by commas
        return [as_datetime(value).timestamp() for value in times.split(",")]
    return _numbers(times, "d").tolist()


# A version's verdicts: the traces it passed, failed and erred on.
Verdicts = tuple[TraceSet, TraceSet, TraceSet]
# As the cache keeps them: each set's words (a dict of a few hundred integers for 20,000
# traces, where a set of the ids pickled id by id).
_Packed = tuple[dict[int, int], dict[int, int], dict[int, int]]


def _trace_set(ids) -> TraceSet:
    """The verdicts SQL's ids: 64-bit words (PostgreSQL) or text joined by commas (SQLite)."""
    if isinstance(ids, str):
        return TraceSet.of(map(int, ids.split(",")))
    return TraceSet.from_words(ids)


def _unpack(part: _Packed) -> Verdicts:
    return TraceSet(part[0]), TraceSet(part[1]), TraceSet(part[2])


def _read_verdicts(eval_set: EvalSet, version_ids: list[int], since=()) -> dict[int, _Packed]:
    found = {pk: {True: {}, False: {}, None: {}} for pk in version_ids}
    for pk, passed, ids in _fetch(*_verdicts_sql(eval_set, version_ids, since)):
        # SQLite hands back 1 and 0 for booleans.
        found[pk][None if passed is None else bool(passed)] = _trace_set(ids).masks
    return {pk: (v[True], v[False], v[None]) for pk, v in found.items()}


def _verdicts(*, eval_set: EvalSet, version_ids: list[int], newest: tuple) -> list[Verdicts]:
    """Each version's verdicts, cached while its newest execution holds. A version whose
    executions changed since this process last read its verdicts is patched with the
    changed executions (a batch run's); the others not cached are read in one query."""
    keys = {
        pk: cache_key(("verdicts", eval_set.workspace_id, pk), (at,))
        for pk, at in zip(version_ids, newest, strict=True)
    }
    seen = {pk: _parts_seen.get(key) for pk, key in keys.items()}
    parts = {pk: part for pk, part in seen.items() if part is not None}
    unseen = [key for pk, key in keys.items() if pk not in parts]
    try:
        cached_parts = cache.get_many(unseen) if unseen else {}
    except Exception:
        logger.warning("matrix cache unavailable, building without it", exc_info=True)
        cached_parts = {}
    parts.update(
        {
            pk: _unpack(cached_parts[key])
            for pk, key in keys.items()
            if isinstance(cached_parts.get(key), tuple)
        }
    )
    at_of = dict(zip(version_ids, newest, strict=True))
    read_at = {pk: as_datetime(at_of[pk]) for pk in parts if at_of[pk] is not None}
    stored = {}
    for pk in version_ids:
        if pk not in parts and _patchable(pk):
            now = timezone.now()
            patched = _patched_verdicts(eval_set, pk, *_versions_seen[pk])
            parts[pk], read_at[pk], stored[pk] = patched, now, patched
    missing = [pk for pk in version_ids if pk not in parts]
    if missing:
        now = timezone.now()
        read = _read_verdicts(eval_set, missing)
        for pk, part in read.items():
            parts[pk], read_at[pk], stored[pk] = _unpack(part), now, part
    try:
        for pk, part in stored.items():
            packed = tuple(s.masks for s in part) if isinstance(part[0], TraceSet) else part
            cache.set(keys[pk], packed, seconds_to_keep((at_of[pk],)))
    except Exception:
        logger.warning("matrix cache unavailable, not storing", exc_info=True)
    for pk, key in keys.items():
        _parts_seen.put(key, parts[pk], seconds_to_keep((at_of[pk],)))
        if pk in read_at:
            _versions_seen[pk] = (at_of[pk], read_at[pk], parts[pk])
            _versions_seen.move_to_end(pk)
    while len(_versions_seen) > MAX_PARTS_SEEN:
        _versions_seen.popitem(last=False)
    return [parts[pk] for pk in version_ids]


def _patched_verdicts(
    eval_set: EvalSet, version_id: int, at, read_at: dt.datetime, part: Verdicts
) -> Verdicts:
    """``part`` (the version's verdicts when its newest execution was ``at``, read at
    ``read_at``) with the executions written since: newer than ``at``, or within the
    settle time before ``read_at`` (a write that committed late), read as the whole
    verdicts are (words of 64 traces) and applied word by word. An execution is only
    ever replaced, or deleted with its trace, which leaves the labels and the matrix."""
    since = (_written_after(at, read_at),)
    changed = _read_verdicts(eval_set, [version_id], since=since)[version_id]
    passed, failed, erred = (dict(s.masks) for s in part)
    for outcome, now in zip((passed, failed, erred), changed, strict=True):
        for word, bits in now.items():
            for masks in (passed, failed, erred):
                left = masks.get(word, 0) & ~bits
                if left:
                    masks[word] = left
                else:
                    masks.pop(word, None)
            outcome[word] = outcome.get(word, 0) | bits
    return TraceSet(passed), TraceSet(failed), TraceSet(erred)


# The verdict parts this process used last (``_parts_seen``, below). A part's key holds
# its version's newest execution, so a part seen here is what the cache would return,
# without unpickling (rebuilding) its sets of trace ids on every label change; kept as
# long as the cache keeps it: a verdict that committed behind the newest execution (same
# key) shows once that has settled, when the part is patched.
MAX_PARTS_SEEN = 100
# Per version, the verdicts this process used last: (the version's newest execution then,
# when they were read or patched, the verdicts), to be patched when executions change.
_versions_seen: OrderedDict[int, tuple] = OrderedDict()


def _patchable(version_id: int) -> bool:
    """Whether this process holds verdicts of the version to patch (it had executions)."""
    seen = _versions_seen.get(version_id)
    return seen is not None and seen[0] is not None


def forget_parts_seen() -> None:
    """Drop this process's verdict parts and views, as a restart would (benchmarks, tests)."""
    _parts_seen.items.clear()
    _versions_seen.clear()
    _views_seen.items.clear()
    _bases_seen.items.clear()


def _adds_up(base: _Base) -> bool:
    count, _newest, id_sum = base.stamp[:3]
    return base.label_total == count and base.label_id_total == int(id_sum or 0)


def _patch(old: _Base, base: _Base, changed: dict[int, tuple], moved: bool) -> list[Key]:
    """``old`` with the ``changed`` traces' rows, into ``base``; return the keys of those
    that differ (most of the traces read again within the settle window do not: they are
    no change to judge again, nor to remember in ``since``).

    Each changed trace is found by binary search: replaced where it was, inserted where a
    first label brings it. When ``moved`` (traces changed, not only labels), a trace may
    have a new time: its row is found by id, taken out and put back in its new place, and
    both its keys are returned. The columns are copied (other threads may read ``old``),
    in C."""
    (
        base.order,
        base.times,
        base.sources,
        base.labels,
        base.counts,
        base.id_sums,
    ) = (list(column) for column in _columns_of(old))
    base.label_total, base.label_id_total = old.label_total, old.label_id_total
    was_at = dict(zip(old.order, old.times, strict=True)) if moved else {}
    keys = []
    for pk, (when, *row) in changed.items():
        source, label, n, ids = row = tuple(row)
        before = was_at.get(pk, when)
        if before != when:
            i = base.find((before, pk))
            base.label_total -= base.counts[i]
            base.label_id_total -= base.id_sums[i]
            for column in _columns_of(base):
                del column[i]
            keys.append((before, pk))
        i = base.find((when, pk))
        if i is None:
            i = _place(base.times, base.order.__getitem__, (when, pk))
            values = (pk, when, source, label, n, ids)
            for column, value in zip(_columns_of(base), values, strict=True):
                column.insert(i, value)
        elif (base.sources[i], base.labels[i], base.counts[i], base.id_sums[i]) == row:
            continue  # read again within the settle window, unchanged: not a change
        else:
            base.label_total -= base.counts[i]
            base.label_id_total -= base.id_sums[i]
            base.sources[i], base.labels[i], base.counts[i], base.id_sums[i] = source, label, n, ids
        base.label_total += n
        base.label_id_total += ids
        keys.append((when, pk))
    return keys


def _columns_of(base: _Base) -> tuple[list, ...]:
    return base.order, base.times, base.sources, base.labels, base.counts, base.id_sums


def _differences(old: _Base, base: _Base) -> list[Key]:
    """The keys of the traces whose rows differ between ``old`` and ``base``, both
    read whole: a pass over every row, only after a label was deleted."""
    before, after = old.rows(), base.rows()
    keys = set()
    for pk in before.keys() | after.keys():
        was, now = before.get(pk), after.get(pk)
        if was != now:
            keys.update((row[0], pk) for row in (was, now) if row is not None)
    return list(keys)


def _descend(old: _Base, base: _Base, keys: list[Key]) -> None:
    """Record in ``base`` that it is ``old`` with the rows of ``keys`` changed, keeping
    no more than MAX_ANCESTORS ancestors and MAX_PATCHED traces."""
    since = [*old.since, (old.version, keys)]
    while len(since) > MAX_ANCESTORS or sum(len(k) for _, k in since) > MAX_PATCHED:
        since.pop(0)
    base.since = since


def _changed_keys(base: _Base, version: int) -> set[Key] | None:
    """The traces changed since ``base``'s ancestor ``version``; None if it is not one."""
    if version == base.version:
        return set()
    for n, (ancestor, _keys) in enumerate(base.since):
        if ancestor == version:
            return {key for _, keys in base.since[n:] for key in keys}
    return None


def _changed_rows(eval_set: EvalSet, trace_ids: list[int]) -> dict[int, tuple]:
    """``rows()``-shaped rows of ``trace_ids`` that still have labels in the set."""
    if not trace_ids:
        return {}
    pks, *columns = _read_labels(eval_set, trace_ids)
    return dict(zip(pks, zip(*columns, strict=True), strict=True))


def _refresh(old: _Base | None, stamp, eval_set) -> _Base:
    """The base at ``stamp``, reading only the traces whose labels (or, when the
    workspace's traces changed, whose trace) changed since ``old`` where it can (no label
    was deleted, not too many changed); else every label. When patched, it records which
    traces changed since ``old``."""
    base = _Base(stamp=stamp)
    # Without labels then, nothing to patch; without rewritten traces then (stamp[3] None:
    # every trace written once, as ingestion writes them), the settle time bounds them.
    if old is not None and old.stamp[1] is not None:
        moved = old.stamp[3] != stamp[3]
        changed = _changed_since(eval_set, old, moved)
        if changed is not None:
            keys = _patch(old, base, _changed_rows(eval_set, changed), moved)
            if not _adds_up(base):  # a label was deleted: read everything, compare
                base = _Base(stamp=stamp)
                base.fill(_read_labels(eval_set))
                keys = _differences(old, base)
            if len(keys) <= MAX_PATCHED:
                _descend(old, base, keys)
            return base
    base.fill(_read_labels(eval_set))
    return base


def _base(*, eval_set: EvalSet, stamp: tuple) -> _Base:
    key = cache_key(("base", eval_set.pk, eval_set.created_at), ())
    seen = _bases_seen.get(key)
    if seen is not None and seen.stamp == stamp:
        return seen
    # The base this process saw last is patched, even once its time is up (the patch reads
    # again the labels of the settle window): the cache's is not unpickled.
    old = _bases_seen.get(key, expired=True)
    cached = None if old is not None else _from_cache(key, _Base)
    if cached is not None and cached.stamp == stamp:
        base = cached
    else:
        base = _refresh(old or cached, stamp, eval_set)
        try:
            cache.set(key, base, _seconds_to_keep(stamp))
        except Exception:
            logger.warning("matrix cache unavailable, not storing", exc_info=True)
    _bases_seen.put(key, base, _seconds_to_keep(stamp))
    return base


def _seconds_to_keep(stamp: tuple) -> int:
    """How long a part at ``stamp`` holds: a label or trace change that committed behind
    the newest one (an equal stamp) must show once that change has settled. A part kept
    here past its time is patched, not built again."""
    return seconds_to_keep((stamp[1], *stamp[3:]))


# --- judging ---------------------------------------------------------------------------------


def _in_range(base: _Base, filters: MatrixFilters) -> tuple[list[tuple[int, str]], list[float]]:
    """Labelled traces of the base that the filters keep, newest first: (id, label), and
    their timestamps."""
    keeps = _keeps(filters)
    if keeps is None:
        kept = [i for i, label in enumerate(base.labels) if label]
    else:
        kept = [
            i
            for i, row in enumerate(zip(base.times, base.sources, base.labels, strict=True))
            if keeps(*row)
        ]
    order, labels, times = base.order, base.labels, base.times
    return [(order[i], labels[i]) for i in kept], [times[i] for i in kept]


def _keeps(filters: MatrixFilters) -> Callable[[float, str, str | None], bool] | None:
    """Whether the filters keep a trace of the base, given its (timestamp, source, label);
    None when they keep every labelled one."""
    start = _day_start(filters.date_from) if filters.date_from else None
    after = day_after(filters.date_to) if filters.date_to else None
    end = _day_start(after) if after else None
    source = filters.source

    def keeps(timestamp: float, trace_source: str, label: str | None) -> bool:
        if label is None or (source and trace_source != source):
            return False
        return not ((start and timestamp < start) or (end and timestamp >= end))

    return keeps if start or end or source else None


def _day_start(day: dt.date) -> float:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min)).timestamp()


def _judge(
    labelled: list[tuple[int, str]],
    times: list[float],
    verdicts: list[Verdicts],
    version_ids: list[int],
    base_version: int,
) -> MatrixIndex:
    """Judge the labelled traces (at ``times``, of the base ``base_version``) against each
    version's verdicts; count per version.

    A positive label agrees with a pass and is contradicted by a fail, a negative the
    other way round; a neutral label is neither agreed with nor contradicted. A row is
    a disagreement where a version contradicts its label or errs.

    As bitsets over the words of ids that hold labelled traces (``Span``): each crossing
    of a label with a verdict is one ``&`` and a count of bits.
    """
    if not labelled:
        counts = {pk: (0, 0, 0, 0) for pk in version_ids}
        return MatrixIndex(rows=[], counts=counts, base_version=base_version)
    span = Span(pk for pk, _ in labelled)
    by_label = span.by_key(labelled)
    positive, negative, neutral = (by_label.get(k, 0) for k in ("positive", "negative", "neutral"))
    every = positive | negative | neutral
    counts = {}
    flagged = 0
    for version_id, parts in zip(version_ids, verdicts, strict=True):
        passed, failed, erred = (span.bits(part) for part in parts)
        wrong_pos, wrong_neg, errors = positive & failed, negative & passed, every & erred
        flagged |= wrong_pos | wrong_neg | errors
        agree = (positive & passed).bit_count() + (negative & failed).bit_count()
        contradict = wrong_pos.bit_count() + wrong_neg.bit_count()
        neutral_ran = (neutral & (passed | failed)).bit_count()
        counts[version_id] = (
            agree,
            contradict,
            errors.bit_count(),
            agree + contradict + neutral_ran + errors.bit_count(),
        )
    flagged_ids = span.ids(flagged)
    rows = [(pk, label, pk in flagged_ids) for pk, label in labelled]
    return MatrixIndex(rows=rows, counts=counts, times=times, base_version=base_version)


def _rejudge(
    old: MatrixIndex,
    base: _Base,
    changed: set[Key],
    filters: MatrixFilters,
    verdicts: tuple[list[Verdicts], list[Verdicts]],
    version_ids: list[int],
) -> MatrixIndex:
    """``_judge`` of the view of ``base``, from ``old`` (judged against ``verdicts[0]``,
    from an ancestor of ``base``, which differs from it, and ``verdicts[1]`` from
    ``verdicts[0]``, only in the ``changed`` traces): each changed trace's row, found by
    binary search, takes its old label and verdicts out of the counts, and its new ones,
    if the view keeps it, back in. No other row is visited; the rows are copied (other
    threads may read ``old``), in C."""
    rows, times = list(old.rows), list(old.times)
    counts = {pk: list(old.counts.get(pk, (0, 0, 0, 0))) for pk in version_ids}
    before, after = (
        [(counts[pk], *parts) for pk, parts in zip(version_ids, judged, strict=True)]
        for judged in verdicts
    )
    keeps = _keeps(filters)
    for key in changed:
        i = _place(times, lambda n: rows[n][0], key)
        if i < len(rows) and rows[i][0] == key[1] and times[i] == key[0]:
            _count(before, key[1], rows[i][1], -1)
            del rows[i], times[i]
        at = base.find(key)
        if at is None:
            continue  # no longer labelled in the set
        label = base.labels[at]
        kept = label is not None if keeps is None else keeps(key[0], base.sources[at], label)
        if not kept:
            continue  # a tie, or out of the view's range
        rows.insert(i, (key[1], label, _count(after, key[1], label, 1)))
        times.insert(i, key[0])
    counts = {pk: tuple(c) for pk, c in counts.items()}
    return MatrixIndex(rows=rows, counts=counts, times=times, base_version=base.version)


def _verdict_keys(base: _Base, before: list[Verdicts], after: list[Verdicts]) -> set[Key] | None:
    """The keys of the base's traces whose verdicts differ between ``before`` and
    ``after`` (each version's, word by word); None when more than MAX_PATCHED differ."""
    ids = []
    for old, new in zip(before, after, strict=True):
        if old is new:
            continue
        # The words whose masks differ in any part: a set operation on the parts' items
        # (in C), not a walk over every word.
        words = {
            w
            for was, now in zip(old, new, strict=True)
            for w, _ in was.masks.items() ^ now.masks.items()
        }
        for word in words:
            diff = 0
            for was, now in zip(old, new, strict=True):
                diff |= was.masks.get(word, 0) ^ now.masks.get(word, 0)
            while diff:
                low = diff & -diff
                ids.append(64 * word + low.bit_length() - 1)
                diff ^= low
        if len(ids) > MAX_PATCHED:
            return None
    if not ids:
        return set()
    at = dict(zip(base.order, base.times, strict=True))
    return {(at[pk], pk) for pk in ids if pk in at}


def _count(columns: list[tuple], pk: int, label: str, sign: int) -> bool:
    """Add (``sign`` 1) or take away (-1) one trace's judgements from each version's
    counts [agree, contradict, errors, ran]; return whether any contradicts or errs."""
    flagged = False
    for counts, passed, failed, erred in columns:
        if pk in erred:
            counts[2] += sign
        elif pk in passed or pk in failed:
            if label != "neutral":
                agrees = (pk in passed) == (label == "positive")
                counts[0 if agrees else 1] += sign
                flagged = flagged or not agrees
        else:
            continue  # never ran on it
        counts[3] += sign
        flagged = flagged or pk in erred
    return flagged


def matrix_index(
    *, eval_set: EvalSet, filters: MatrixFilters, version_ids: list[int]
) -> MatrixIndex:
    """Return the matrix's rows and counts: cached per view while nothing they read changed.

    One query (the stamp) when the view is cached. Else the base, from the cache, patched
    after label or trace changes (one small query) or built (one), and the versions'
    verdicts, from the cache or, for the versions whose executions changed, patched with
    the executions written since (one small query each) or read (one). The view this
    process judged last is updated with the traces whose labels or verdicts changed
    since (``_rejudge``) rather than judged again whole.

    Ingestion and batch runs change the stamp all the time on a busy workspace: each
    costs the next page a few small reads, not a rebuild (bench/load.py, where every
    matrix load followed one).
    """
    stamp = _stamp(eval_set=eval_set, version_ids=version_ids)
    view = (filters.date_from, filters.date_to, filters.source)
    key = cache_key(("index", eval_set.pk, eval_set.created_at, tuple(version_ids), view), ())
    seen = _views_seen.get(key)
    if seen is not None and seen[0] == stamp:
        return seen[1]
    # The view this process saw last is updated (only the changed traces are judged), even
    # once its time is up: the cache's is not unpickled. This process also knows the
    # verdicts it was judged with.
    old = _views_seen.get(key, expired=True)
    cached = None if old is not None else _from_cache(key, tuple)
    judged_with = None
    if cached is not None and cached[0] == stamp:
        index = cached[1]
    else:
        old = old or cached
        base, verdicts = _base_and_verdicts(eval_set, version_ids, stamp)
        changed = None if old is None else _changed_keys(base, old[1].base_version)
        if changed is not None:
            # Executions changed, or were read again once settled (a verdict that committed
            # behind the newest): the traces whose verdicts differ from those judged with.
            judged_with = old[2] if len(old) > 2 else None
            if judged_with is None and old[0][4:] == stamp[4:]:
                judged_with = verdicts  # from the cache, judged at these executions
            more = None if judged_with is None else _verdict_keys(base, judged_with, verdicts)
            changed = None if more is None else changed | more
        if changed is not None:
            index = _rejudge(old[1], base, changed, filters, (judged_with, verdicts), version_ids)
        else:
            labelled, times = _in_range(base, filters)
            index = _judge(labelled, times, verdicts, version_ids, base.version)
        judged_with = verdicts
        try:
            cache.set(key, (stamp, index), _seconds_to_keep(stamp))
        except Exception:
            logger.warning("matrix cache unavailable, not storing", exc_info=True)
    _views_seen.put(key, (stamp, index, judged_with), _seconds_to_keep(stamp))
    return index


def _base_and_verdicts(eval_set: EvalSet, version_ids: list[int], stamp: tuple):
    """``_base`` and ``_verdicts`` at ``stamp``. When verdicts must be read, on PostgreSQL
    and outside a transaction, they are read on a second connection in a thread while
    this one reads the labels: PostgreSQL runs the two statements on two cores. Inside a
    transaction a second connection would not see its writes: one after the other."""
    newest = stamp[4:]
    # Seen, or to be patched with a small read: no second connection for it.
    seen = all(
        _patchable(pk)
        or _parts_seen.get(cache_key(("verdicts", eval_set.workspace_id, pk), (at,))) is not None
        for pk, at in zip(version_ids, newest, strict=True)
    )
    if seen or connection.vendor != "postgresql" or connection.in_atomic_block:
        base = _base(eval_set=eval_set, stamp=stamp[:4])
        return base, _verdicts(eval_set=eval_set, version_ids=version_ids, newest=newest)
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(
            _on_own_connection, _verdicts, eval_set=eval_set, version_ids=version_ids, newest=newest
        )
        base = _base(eval_set=eval_set, stamp=stamp[:4])
        return base, reading.result()


def _on_own_connection(fn, **kwargs):
    """``fn(**kwargs)`` in a thread of its own: Django opens the thread its own database
    connection, closed here when done."""
    try:
        return fn(**kwargs)
    finally:
        connections.close_all()  # this thread's connections only


def _from_cache(key: str, kind: type):
    """The cache's value under ``key`` if it is a ``kind``; None if not, or the cache is down."""
    try:
        value = cache.get(key)
    except Exception:
        logger.warning("matrix cache unavailable, building without it", exc_info=True)
        return None
    return value if isinstance(value, kind) else None


class _Seen:
    """What this process built or read last, per cache key, as _parts_seen keeps verdicts:
    a value seen here at the current stamp is what the cache would return, without
    unpickling it. Kept no longer than the cache keeps it."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[str, tuple] = OrderedDict()

    def get(self, key: str, expired: bool = False):
        """The value under ``key`` while its time holds (or, ``expired``, after)."""
        value, until = self.items.get(key, (None, 0.0))
        return value if expired or until > time.time() else None

    def put(self, key: str, value, seconds: int) -> None:
        self.items[key] = (value, time.time() + seconds)
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


_views_seen = _Seen(20)
_parts_seen = _Seen(MAX_PARTS_SEEN)
_bases_seen = _Seen(5)
