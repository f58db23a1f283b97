"""Conversations: traces of one source sharing a session id, kept up to date at ingest.

Every source's adapter puts its own conversation field into the normalised trace's
``session_id`` (Langfuse ``sessionId``; LangSmith ``session_id`` / ``thread_id`` /
``conversation_id`` metadata or the run's thread; OpenAI Agents ``group_id``; OTLP
``gen_ai.conversation.id`` or ``session.id``; an upload's ``session_id``), so grouping
reads that one field. ``traces.ingest.upsert_traces`` calls ``attach_conversations``
before its bulk upsert (the trace rows are written with their conversation in the same
statement) and ``refresh_conversations`` after it: a few queries per batch, not per trace.

A conversation is complete once no turn began, and none arrived, for the idle time, or as
soon as a turn carries an end marker (``metadata.conversation_end`` true, or the tag
``conversation:end``). A later turn reopens it; it then completes again, and
``completion_count`` says how many times. Turns arriving late (earlier turns, changed
turns) leave it complete: once none has arrived for the idle time it completes again, to
be judged again if what its evals receive changed (``content_fingerprint``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from iofold.lib.sql import server_bound_cursor
from traces.models import (
    Conversation,
    EvalSet,
    EvalSetTrace,
    Feedback,
    LabelAssignment,
    LabelChange,
    Trace,
)

END_TAG = "conversation:end"
KEY_LIMIT = 255


def conversation_key(data: dict[str, Any]) -> str | None:
    """Return the conversation id of a normalised trace, or None when it has none."""
    value = data.get("session_id")
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:KEY_LIMIT]


def ends_conversation(data: dict[str, Any]) -> bool:
    """Tell whether this trace is the explicit last turn of its conversation.

    The marker may be the text "true": OpenAI's metadata holds only strings.
    """
    metadata = data.get("metadata") or {}
    marker = metadata.get("conversation_end") if isinstance(metadata, dict) else None
    if isinstance(marker, str):
        marker = marker.strip().lower() == "true"
    return marker is True or END_TAG in (data.get("tags") or [])


def attach_conversations(
    *, workspace, source: str, source_key: str, integration, rows, previous: dict[str, int]
) -> dict[int, tuple]:
    """Set ``conversation_id`` on unsaved ``Trace`` rows, creating missing conversations.

    New conversations are created with placeholder figures; ``refresh_conversations``
    fills them in after the traces are written. Returns the state of the batch's
    conversations before it, read under a row lock by the same query that finds them
    (``refresh_conversations`` needs both): call inside the ingest's transaction.
    ``previous`` holds the conversation of each re-sent row (by trace id) as stored: a turn
    may leave one for another, whose figures change too, so they are locked as well.
    """
    keyed = [(row, conversation_key(row.data)) for row in rows]
    keys = {key for _, key in keyed if key}
    if not keys and not (previous and connection.features.has_select_for_update):
        return {}
    known = _lock_conversations(workspace, source_key, keys, set(previous.values()))
    missing = keys - known.keys()
    if missing:
        _create_conversations(workspace, integration, source, source_key, sorted(missing))
        known.update(_lock_conversations(workspace, source_key, missing))
    for row, key in keyed:
        row.conversation_id = known[key][0] if key else None
    return dict(known.values())


# Placeholder figures, as the model's defaults; ``refresh_conversations`` fills them in.
_CREATE_SQL = (
    f"INSERT INTO {Conversation._meta.db_table} (workspace_id, integration_id, source,"  # noqa: S608
    " source_key, external_id, started_at, last_activity_at, turn_count, has_error,"
    " completion_count, created_at, updated_at)"
    " SELECT %s, %s, %s, %s, k, %s, %s, 0, false, 0, %s, %s FROM unnest(%s::text[]) AS k"
    " ON CONFLICT DO NOTHING"
)


def _create_conversations(workspace, integration, source: str, source_key: str, keys) -> None:
    """Insert conversations for these keys (in this order); one that exists stays as it is.

    Two ingests creating one conversation at once: the second reads the first's. On
    PostgreSQL in one statement without model instances, which ``bulk_create`` spent 4 ms
    of CPU on for a sync page's 67 conversations.
    """
    now = timezone.now()
    if connection.vendor != "postgresql":
        Conversation.objects.bulk_create(
            [
                Conversation(
                    workspace=workspace,
                    integration=integration,
                    source=source,
                    source_key=source_key,
                    external_id=key,
                    started_at=now,
                    last_activity_at=now,
                )
                for key in keys
            ],
            ignore_conflicts=True,
            batch_size=500,
        )
        return
    integration_id = integration.pk if integration is not None else None
    with connection.cursor() as cursor:
        cursor.execute(
            _CREATE_SQL,
            [workspace.pk, integration_id, source, source_key, now, now, now, now, list(keys)],
        )


def lock_conversations(workspace, source_key: str, ids: Iterable[int]) -> dict[int, tuple]:
    """Lock these conversations; return ``id -> state before`` of each (as ``before``)."""
    if not ids:
        return {}
    return dict(_lock_conversations(workspace, source_key, (), ids).values())


def _lock_conversations(
    workspace, source_key: str, keys: Iterable[str], ids: Iterable[int] = ()
) -> dict[str, tuple]:
    """Return ``external_id -> (id, state before)`` for these keys, rows locked in id order.

    Where rows are locked, the conversations of these ids (those re-sent turns may leave)
    are locked with the first keys, in the same order.
    """
    found: dict[str, tuple] = {}
    locking = connection.features.has_select_for_update
    keys, ids = sorted(keys), sorted(ids) if locking else []
    if connection.vendor == "postgresql":
        # The keys as one array, bound apart from the statement: the queryset below quoted
        # each key in Python and compiled itself anew, twice a sync page.
        if keys or ids:
            with server_bound_cursor() as cursor:
                cursor.execute(
                    _LOCK_SQL, [getattr(workspace, "pk", workspace), source_key, keys, ids]
                )
                for external_id, pk, *state in cursor.fetchall():
                    found[external_id] = (pk, tuple(state))
        return found
    # Locked in id order, so two ingests never wait on each other crosswise. SQLite locks
    # no rows (one writer at a time); asked for an order, or for keys or ids, it would walk
    # the workspace's conversations rather than look each key up in the unique index.
    lock_order = ["id"] if locking else []
    # Where rows are locked, all in one statement: in chunks of keys, each chunk's rows
    # were locked in id order but not the whole batch's, and two batches of more than one
    # chunk sharing conversations locked them crosswise. SQLite locks none: it keeps
    # its chunks.
    size = max(len(keys), 1) if locking else 500
    chunks = [keys[start : start + size] for start in range(0, len(keys), size)] or [[]]
    for index, chunk in enumerate(chunks):
        wanted = Q(source_key=source_key, external_id__in=chunk)
        if ids and not index:
            wanted |= Q(id__in=ids)
        rows = (
            Conversation.objects.for_workspace(workspace)
            .filter(wanted)
            .select_for_update()
            .order_by(*lock_order)
            .values_list(
                "external_id", "id", "turn_count", "last_activity_at", "completed_at", "ended_at"
            )
        )
        for external_id, pk, *state in rows:
            found[external_id] = (pk, tuple(state))
    return found


# _lock_conversations on PostgreSQL: the queryset's own statement, keys and ids as arrays.
_LOCK_SQL = (
    "SELECT external_id, id, turn_count, last_activity_at, completed_at, ended_at"  # noqa: S608
    f" FROM {Conversation._meta.db_table} WHERE workspace_id = %s"
    " AND ((source_key = %s AND external_id = ANY(%s::text[])) OR id = ANY(%s::bigint[]))"
    " ORDER BY id FOR UPDATE"
)


class Refreshed(NamedTuple):
    """What ``refresh_conversations`` did that the ingest's caller acts on."""

    completed: list[int]  # conversations that completed with this batch
    # Old anchor -> new anchor of each conversation whose anchor turn moved out of it.
    anchors_moved: dict[int, int]


def refresh_conversations(
    *, workspace, rows, before: dict[int, tuple], previous: dict[str, int]
) -> Refreshed:
    """Recompute the figures of the written rows' conversations; say which completed.

    ``before`` and ``previous`` are what ``attach_conversations`` returned and was given in
    the same transaction: the conversations' state before the batch, their rows already
    locked, and the conversation each re-sent row was stored in.

    A conversation with a turn that began after its latest (the user came back) is open
    again; one whose newest turn, in this batch, carries an end marker completes at once.
    Every one here had its turns changed: ``changed_at`` is set, so it completes (again)
    only once they settle (``complete_idle_conversations``). The figures are written
    by one set-based UPDATE; only conversations whose state changes get their own rows.
    A conversation whose turns moved to another (their session id changed) is recounted
    and, left with none, keeps zero figures and no anchor: lists no longer show it. Left
    with some, it takes its earliest remaining turn as anchor if its anchor went, with
    what its conversation eval sets wrote there (``follow_anchors``), and is open again
    if the turn that ended it went.
    """
    left = {
        previous[row.data["id"]]
        for row in rows
        if previous.get(row.data["id"], row.conversation_id) != row.conversation_id
    }
    conversation_ids = sorted({row.conversation_id for row in rows if row.conversation_id} | left)
    if not conversation_ids:
        return Refreshed([], {})
    marked_end: dict[int, dt.datetime] = {}
    for row in rows:
        if row.conversation_id and ends_conversation(row.data):
            previous = marked_end.get(row.conversation_id)
            marked_end[row.conversation_id] = max(row.timestamp, previous or row.timestamp)
    # Only when a turn moved out: what the conversations it left were, and whether their
    # newest remaining turn still ends them.
    old_anchors, unmarked = {}, set()
    if left:
        old_anchors, newest = _left_conversations(workspace, left, before)
        for pk, (timestamp, ends) in newest.items():
            if ends:
                marked_end[pk] = max(timestamp, marked_end.get(pk, timestamp))
            else:
                unmarked.add(pk)
    now = timezone.now()
    mine = Conversation.objects.for_workspace(workspace).filter(id__in=conversation_ids)
    completed: list[int] = []
    # The caller's transaction holds the rows' locks (attach_conversations).
    counts, after, anchors = {}, {}, {}
    figures = _update_figures(workspace, mine, rows, conversation_ids, sorted(left), now)
    for pk, turn_count, last, anchor in figures:
        counts[pk], after[pk], anchors[pk] = turn_count, last, anchor
    reopened, cleared, ends = [], [], []
    for pk, (turn_count, last, completed_at, ended_at) in before.items():
        if not counts.get(pk):
            # All its turns moved away: nothing is left to complete. Or none was in it after
            # all (a concurrent ingest had moved the turn read there): it is not recounted.
            continue
        fresh = turn_count == 0
        # Only a later turn reopens it: an earlier one arriving late (a newest-first sync's
        # next page, a span batch held back) or a turn changing in place leaves it
        # complete, to complete again once its turns settle.
        resumed = after[pk] > last and not fresh
        ended = marked_end.get(pk)
        # Complete by an end marker whose turn moved out: open again, until idle.
        lost_end = ended_at is not None and pk in unmarked
        if ended is not None and ended >= after[pk]:
            ended_at = ended
        elif ended_at is not None and (ended_at < after[pk] or lost_end):
            ended_at = None  # a turn came after the end (resumed), or the ending turn left
            cleared.append(pk)
        if (resumed or lost_end) and completed_at is not None:
            completed_at = None
            reopened.append(pk)
        if ended_at is not None and completed_at is None:
            ends.append((pk, ended_at))
    if cleared:
        mine.filter(id__in=cleared).update(ended_at=None)
    if reopened:
        mine.filter(id__in=reopened).update(completed_at=None)
    for pk, ended_at in ends:
        mine.filter(id=pk).update(
            ended_at=ended_at, completed_at=now, completion_count=F("completion_count") + 1
        )
        completed.append(pk)
    # Left with no turn, a conversation has no anchor to take them: they stay put.
    moved = {
        old: anchors[pk]
        for pk, old in old_anchors.items()
        if old is not None and anchors[pk] is not None and anchors[pk] != old
    }
    if moved:
        _move_conversation_items(workspace, moved, now)
    return Refreshed(completed, moved)


def _left_conversations(workspace, left: set[int], before: dict[int, tuple]):
    """Read the conversations turns moved out of: return their anchors as they were and,
    for those with turns left, when their newest turn began and whether it ends them.

    Their state before the batch is added to ``before`` where missing (SQLite locks no
    rows, so ``attach_conversations`` read none of them). Two queries, only when a turn
    moved out of its conversation.
    """
    latest = Trace.objects.filter(conversation=OuterRef("pk")).order_by("-timestamp", "-id")
    rows = (
        Conversation.objects.for_workspace(workspace)
        .filter(id__in=sorted(left))
        .order_by()
        .annotate(newest=Subquery(latest.values("id")[:1]))
        .values_list(
            "id", "anchor_id", "turn_count", "last_activity_at", "completed_at", "ended_at",
            "newest",
        )
    )  # fmt: skip
    anchors, newest_ids = {}, []
    for pk, anchor, *state, newest in rows:
        anchors[pk] = anchor
        before.setdefault(pk, tuple(state))
        if newest is not None:
            newest_ids.append(newest)
    newest = {
        pk: (timestamp, ends_conversation(data))
        for pk, timestamp, data in Trace.objects.filter(id__in=newest_ids)
        .order_by()
        .values_list("conversation_id", "timestamp", "data")
    }
    return anchors, newest


def follow_anchors(rows: QuerySet, moves: dict[int, int], key: tuple[str, ...], now) -> list[int]:
    """Point ``rows`` (one model's, in conversation eval sets) on an old anchor at the new
    one; return the ids of those moved.

    ``key`` names the fields that with the trace are unique (a label: its set and its
    reviewer): where the new anchor already holds a row of that key, the old one stays
    where it is. One read and one UPDATE whatever the number of moves; ``updated_at`` is
    set, so caches stamped with it (the comparison matrix) see the change.
    """
    held: set[tuple] = set()
    movable: list[tuple] = []
    for pk, trace_id, *values in rows.filter(trace_id__in=[*moves, *moves.values()]).values_list(
        "id", "trace_id", *key
    ):
        held.add((trace_id, *values))
        if trace_id in moves:
            movable.append((pk, moves[trace_id], *values))
    ids = []
    for pk, target, *values in movable:
        if (target, *values) not in held:
            held.add((target, *values))
            ids.append(pk)
    if ids:
        rows.filter(id__in=ids).update(
            trace_id=Case(*(When(trace_id=old, then=Value(new)) for old, new in moves.items())),
            updated_at=now,
        )
    return ids


def _move_conversation_items(workspace, moves: dict[int, int], now) -> None:
    """Move what conversation eval sets wrote on the anchors in ``moves`` to the new ones:
    picks, review assignments and labels (each moved label audited). A trace eval set's
    rows are about the trace itself, and stay."""
    set_ids = list(
        EvalSet.objects.for_workspace(workspace)
        .filter(unit=EvalSet.Unit.CONVERSATION)
        .values_list("id", flat=True)
    )
    if not set_ids:
        return
    in_sets = {"eval_set_id__in": set_ids}
    follow_anchors(
        EvalSetTrace.objects.for_workspace(workspace).filter(**in_sets),
        moves,
        ("eval_set_id",),
        now,
    )
    assigned = LabelAssignment.objects.for_workspace(workspace).filter(**in_sets)
    follow_anchors(assigned, moves, ("eval_set_id", "assignee_id"), now)
    labels = follow_anchors(
        Feedback.objects.for_workspace(workspace).filter(**in_sets),
        moves,
        ("eval_set_id", "user_id"),
        now,
    )
    LabelChange.objects.bulk_create(
        LabelChange(
            workspace_id=label.workspace_id,
            eval_set_id=label.eval_set_id,
            trace_id=label.trace_id,
            labeller_id=label.user_id,
            changed_by=None,  # iofold itself
            action=LabelChange.Action.MOVED,
            origin=label.origin,
            rating_after=label.rating,
            note_after=label.note,
        )
        for label in Feedback.objects.for_workspace(workspace).filter(id__in=labels).order_by("id")
    )


# A conversation whose batch rows were all inserted (new turns) adds the batch's figures,
# summed from the rows in hand, to its own ("added"): a sync's page then reads none of a
# long session's turns (recounting them all, page after page, was quadratic over a sync).
# One with a re-sent turn, whose time, cost or error may have changed, is recounted from
# all its turns in one grouped pass, as is one a turn moved out of ("left"); left with no
# turn, it gets zero figures (its times stay: the columns hold one). A new conversation
# (no turns yet) holds placeholder figures, which do not count.
# MATERIALIZED: the totals are computed once even when the planner, misjudging the
# conversations' row count, picks a nested loop (it would regroup for every row). The
# earliest turn is looked up (one index probe) only for a conversation without an anchor,
# or one left by a turn whose anchor may have gone with it: sorting every turn for it, page
# after page of a sync, took half the statement's time.
_UPDATE_FIGURES_SQL = """
WITH f AS MATERIALIZED (
    SELECT conversation_id, false AS added, count(*) AS n, min(timestamp) AS first_at,
           max(timestamp) AS last_at, bool_or(has_error) AS has_error, sum(cost) AS cost
    FROM {trace} WHERE workspace_id = %(workspace)s AND conversation_id = ANY(%(recount)s)
    GROUP BY conversation_id
    UNION ALL
    SELECT l.id, false, 0, NULL, NULL, false, NULL FROM unnest(%(left)s::bigint[]) AS l(id)
    WHERE NOT EXISTS (
        SELECT FROM {trace} WHERE workspace_id = %(workspace)s AND conversation_id = l.id
    )
    UNION ALL
    SELECT conversation_id, true, n, first_at, last_at, has_error, cost FROM unnest(
        %(ids)s::bigint[], %(n)s::bigint[], %(first)s::timestamptz[], %(last)s::timestamptz[],
        %(error)s::boolean[], %(cost)s::double precision[]
    ) AS a(conversation_id, n, first_at, last_at, has_error, cost)
)
UPDATE {conversation} AS c
SET turn_count = f.n + CASE WHEN f.added THEN c.turn_count ELSE 0 END,
    started_at = CASE WHEN f.added AND c.turn_count > 0 THEN LEAST(c.started_at, f.first_at)
        ELSE COALESCE(f.first_at, c.started_at) END,
    last_activity_at = CASE WHEN f.added AND c.turn_count > 0
        THEN GREATEST(c.last_activity_at, f.last_at)
        ELSE COALESCE(f.last_at, c.last_activity_at) END,
    has_error = CASE WHEN f.added AND c.turn_count > 0 THEN c.has_error OR f.has_error
        ELSE f.has_error END,
    -- No cost known is NULL, as SUM over all the turns gives.
    cost = CASE WHEN f.added AND c.turn_count > 0 AND c.cost IS NOT NULL
        THEN c.cost + COALESCE(f.cost, 0) ELSE f.cost END,
    changed_at = %(now)s,
    anchor_id = COALESCE(CASE WHEN c.id <> ALL(%(left)s) THEN c.anchor_id END, (
        SELECT t.id FROM {trace} AS t WHERE t.id = c.anchor_id AND t.conversation_id = c.id
    ), (
        SELECT t.id FROM {trace} AS t
        WHERE t.workspace_id = %(workspace)s AND t.conversation_id = c.id
        ORDER BY t.timestamp, t.id LIMIT 1
    )),
    updated_at = %(now)s
FROM f
WHERE c.id = f.conversation_id AND c.workspace_id = %(workspace)s AND c.id = ANY(%(all)s)
RETURNING c.id, c.turn_count, c.last_activity_at, c.anchor_id
"""


def _added_figures(rows) -> dict[int, list]:
    """Sum the figures of new turns by conversation: ``[n, first, last, error, cost]``."""
    added: dict[int, list] = {}
    for row in rows:
        figures = added.get(row.conversation_id)
        if figures is None:
            added[row.conversation_id] = [1, row.timestamp, row.timestamp, row.has_error, row.cost]
            continue
        figures[0] += 1
        figures[1] = min(figures[1], row.timestamp)
        figures[2] = max(figures[2], row.timestamp)
        figures[3] = figures[3] or row.has_error
        if row.cost is not None:
            figures[4] = row.cost if figures[4] is None else figures[4] + row.cost
    return added


def _update_figures(
    workspace, mine, rows, conversation_ids: list[int], left: list[int], now
) -> list[tuple]:
    """Write the conversations' figures from their turns; return ``(id, turns, last turn,
    anchor)``.

    Every conversation here but those in ``left`` has a turn: the batch just wrote one.
    The anchor is set once, from the earliest turn: the conversation's labels live on it.
    A conversation a turn left keeps its anchor while that is still one of its turns, else
    takes its earliest turn, or none. On PostgreSQL a row knows whether the upsert
    inserted it (``PendingRow.inserted``); elsewhere every conversation is recounted.
    """
    if connection.vendor == "postgresql":
        sql = _UPDATE_FIGURES_SQL.format(
            conversation=connection.ops.quote_name(Conversation._meta.db_table),
            trace=connection.ops.quote_name(Trace._meta.db_table),
        )
        recount = {row.conversation_id for row in rows if row.conversation_id and not row.inserted}
        recount.update(left)
        added = _added_figures(
            row for row in rows if row.conversation_id and row.conversation_id not in recount
        )
        columns = list(zip(*added.values(), strict=True)) or [()] * 5
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                {
                    "workspace": getattr(workspace, "pk", workspace),
                    "recount": sorted(recount),
                    "ids": list(added),
                    **{
                        name: list(values)
                        for name, values in zip(
                            ("n", "first", "last", "error", "cost"), columns, strict=True
                        )
                    },
                    "all": conversation_ids,
                    "left": left,
                    "now": now,
                },
            )
            return cursor.fetchall()
    turns = Trace.objects.filter(conversation=OuterRef("pk")).order_by()
    count = Subquery(turns.values("conversation").annotate(n=Count("id")).values("n")[:1])
    first = Subquery(turns.order_by("timestamp", "id").values("id")[:1])
    anchor = Coalesce(F("anchor"), first)
    if left:
        # Read by primary key, the anchor's row (its payload first): only where it may have gone.
        kept = Subquery(turns.filter(pk=OuterRef("anchor")).values("id"))
        anchor = Case(When(pk__in=left, then=Coalesce(kept, first)), default=anchor)
    mine.update(
        # A conversation left with no turn: zero, and its times as they were.
        turn_count=Coalesce(count, 0),
        started_at=Coalesce(
            Subquery(turns.order_by("timestamp", "id").values("timestamp")[:1]), F("started_at")
        ),
        last_activity_at=Coalesce(
            Subquery(turns.order_by("-timestamp", "-id").values("timestamp")[:1]),
            F("last_activity_at"),
        ),
        has_error=Exists(turns.filter(has_error=True)),
        cost=Subquery(turns.values("conversation").annotate(total=Sum("cost")).values("total")[:1]),
        anchor=anchor,
        changed_at=now,
        updated_at=now,
    )
    # Unordered: in the model's order (latest activity) SQLite walks all the workspace's.
    return list(mine.order_by().values_list("id", "turn_count", "last_activity_at", "anchor_id"))


def recount_conversations(workspace, conversation_ids: Iterable[int]) -> None:
    """Write again the figures of conversations some of whose turns were deleted.

    One left with no turn keeps zero figures and no anchor: lists no longer show it.
    """
    ids = sorted(conversation_ids)
    mine = Conversation.objects.for_workspace(workspace).filter(pk__in=ids)
    _update_figures(workspace, mine, [], ids, ids, timezone.now())


def idle_minutes_by_workspace() -> dict[int, int]:
    """Return the idle time of workspaces whose conversation eval sets set one.

    A workspace's conversations complete after the shortest idle time among its active
    conversation eval sets, so no set waits for a conversation it considers finished.
    """
    return dict(
        EvalSet.objects.active()
        .filter(unit=EvalSet.Unit.CONVERSATION)
        .values("workspace")
        .annotate(idle=Min("conversation_idle_minutes"))
        .values_list("workspace", "idle")
    )


def complete_idle_conversations(now: dt.datetime | None = None) -> dict[int, list[int]]:
    """Mark conversations complete whose turns have settled; return their ids by workspace.

    Open ones complete once no turn began and none arrived for the idle time. Complete
    ones whose turns changed since (late earlier turns, turns changed in place or moved)
    complete again once none has arrived for the idle time: a burst of late pages is one
    more completion, not one per page.
    """
    now = now or timezone.now()
    default = dt.timedelta(minutes=settings.IOFOLD_CONVERSATION_IDLE_MINUTES)
    overrides = idle_minutes_by_workspace()
    # The sweep spans workspaces (like the reaper); each workspace's slice is explicit.
    scopes = [(Conversation.objects.exclude(workspace_id__in=list(overrides)), now - default)]
    scopes += [
        (Conversation.objects.for_workspace(workspace_id), now - dt.timedelta(minutes=minutes))
        for workspace_id, minutes in overrides.items()
    ]
    sweeps = []
    for conversations, cutoff in scopes:
        settled = Q(changed_at__isnull=True) | Q(changed_at__lt=cutoff)
        sweeps.append(
            conversations.open().with_turns().filter(settled, last_activity_at__lt=cutoff)
        )
        sweeps.append(
            conversations.complete()
            .with_turns()
            .filter(changed_at__gt=F("completed_at"), changed_at__lt=cutoff)
        )
    completed: dict[int, list[int]] = {}
    for sweep in sweeps:
        with transaction.atomic():
            rows = list(sweep.select_for_update(skip_locked=True).values_list("id", "workspace_id"))
            if not rows:
                continue
            Conversation.objects.filter(id__in=[pk for pk, _ in rows]).update(
                completed_at=now, completion_count=F("completion_count") + 1, updated_at=now
            )
        for pk, workspace_id in rows:
            completed.setdefault(workspace_id, []).append(pk)
    return completed


# --- the conversation as evals and pages read it ------------------------------------------

USER_KEYS = ("user", "input", "question", "query", "message", "prompt", "content", "text")
ASSISTANT_KEYS = ("content", "output", "answer", "response", "text", "message")


def _compact(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


# LangChain names a message's role by its type: "human", or "HumanMessage" serialised.
_LANGCHAIN_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
# Content parts that call a tool: the turn's tool calls show them, not its text.
_CALL_PARTS = ("tool_use", "tool_call", "function_call")


def _message_body(message: Any) -> tuple[str | None, dict]:
    """Return a chat message's role and the dict holding its content: OpenAI's and
    Anthropic's ``role``, LangChain's ``type`` (as LangSmith stores a LangGraph state) or
    its serialised form (``{"lc": 1, "id": [..., "AIMessage"], "kwargs": {...}}``)."""
    if not isinstance(message, dict):
        return None, {}
    if isinstance(message.get("role"), str):
        return message["role"], message
    body, kind = message, message.get("type")
    if message.get("lc") is not None and isinstance(message.get("kwargs"), dict):
        ids = message.get("id")
        body, kind = message["kwargs"], ids[-1] if isinstance(ids, list) and ids else None
    if not isinstance(kind, str) or "content" not in body:
        return None, {}
    kind = kind.lower().removesuffix("chunk").removesuffix("message") or kind.lower()
    return _LANGCHAIN_ROLES.get(kind), body


def _last_message(messages: list, role: str) -> dict | None:
    for message in reversed(messages):
        found, body = _message_body(message)
        if found == role:
            return body
    return None


def _parts_text(parts: list) -> str:
    """A content list's text: its text parts joined, other parts named, tool calls left out."""
    return "\n".join(
        _part_text(part)
        for part in parts
        if not (isinstance(part, dict) and part.get("type") in _CALL_PARTS)
    )


def _content(value: Any, keys: tuple[str, ...], role: str) -> str:
    """The text of one side of a turn, from the shapes sources use for it."""
    if isinstance(value, str) or value is None:
        return value or ""
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if _message_body(value)[0] == role:
        value = [value]  # one message: a model's reply
    if isinstance(value, list):
        message = _last_message(value, role)
        if message is None:
            return _compact(value)
        content = message.get("content")
        return _parts_text(content) if isinstance(content, list) else _content(content, keys, role)
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), str):
                return value[key]
        if "content" in value and value.get("tool_calls"):
            return ""  # a reply that only calls tools
    return _compact(value)


def _tool_calls(data: dict[str, Any]) -> list[dict[str, Any]]:
    steps = [s for s in data.get("steps") or [] if isinstance(s, dict)]
    tools = [s for s in steps if s.get("type") == "tool"]
    if tools:
        return [
            {
                "name": s.get("name"),
                "arguments": s.get("input"),
                "output": s.get("output"),
                "error": s.get("error"),
            }
            for s in tools
        ]
    # Uninstrumented tools show up only as the calls an LLM step asked for.
    calls = []
    for step in steps:
        output = step.get("output")
        if step.get("type") == "llm" and isinstance(output, dict):
            calls += [
                {**_requested_call(call), "output": None, "error": None}
                for call in output.get("tool_calls") or []
                if isinstance(call, dict)
            ]
    return calls


def _requested_call(call: dict) -> dict[str, Any]:
    """A tool call an LLM asked for, OpenAI's ``{"function": {...}}`` or flat: name, and
    arguments parsed when they are JSON text (OpenAI sends them so)."""
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        # Not JSON (or nested past the parser's depth): kept as the text it is.
        with contextlib.suppress(ValueError, RecursionError):
            arguments = json.loads(arguments)
    return {"name": function.get("name"), "arguments": arguments}


def _part_text(part: Any) -> str:
    """One part of a message's content list: its text, or what kind of part it is."""
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        if isinstance(part.get("text"), str):
            return part["text"]
        if part.get("type"):
            return f"[{part['type']}]"  # an image, an audio clip: named, not dumped
    return _compact(part)


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("role"), str)


def chat_messages(value: Any) -> list[dict[str, Any]] | None:
    """Return a payload shaped as chat messages as readable messages, or None if it is not.

    Read: a list of ``{role, content}`` messages (or ``{"messages": [...]}``), one such
    message (an LLM's reply), or a list of tool calls. Each message comes back as ``role``,
    ``text`` (content parts joined), ``tool_calls`` (name and arguments, arguments parsed
    when they are a JSON string) and ``call_id`` (a tool result's answer to a call).
    """
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if _is_message(value):
        value = [value]
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(c, dict) and isinstance(c.get("function"), dict) for c in value)
    ):
        value = [{"role": "assistant", "content": None, "tool_calls": value}]
    if not isinstance(value, list) or not value or not all(map(_is_message, value)):
        return None
    messages = []
    for message in value:
        content = message.get("content")
        if isinstance(content, list):
            text = "\n".join(_part_text(part) for part in content)
        else:
            text = _compact(content)
        calls = [
            _requested_call(call)
            for call in message.get("tool_calls") or []
            if isinstance(call, dict)
        ]
        messages.append(
            {
                "role": message["role"],
                "name": message.get("name") or "",
                "text": text,
                "tool_calls": calls,
                "call_id": message.get("tool_call_id") or "",
            }
        )
    return messages


def turn_messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one turn (a normalised trace) as a user and an assistant message."""
    return [
        {
            "role": "user",
            "content": _content(data.get("input"), USER_KEYS, "user"),
            "tool_calls": [],
        },
        {
            "role": "assistant",
            "content": _content(data.get("output"), ASSISTANT_KEYS, "assistant"),
            "tool_calls": _tool_calls(data),
        },
    ]


def conversation_dict(conversation: Conversation, turns: list[dict[str, Any]]) -> dict[str, Any]:
    """Return what a conversation eval receives (docs/conversations.md): one place builds it.

    ``turns`` are the conversation's normalised traces in turn order.
    """
    messages = [message for turn in turns for message in turn_messages(turn)]
    users = {turn.get("user_id") for turn in turns if turn.get("user_id")}
    return {
        "id": conversation.external_id,
        "messages": messages,
        "turns": turns,
        "metadata": {
            "source": conversation.source,
            "turn_count": len(turns),
            "started_at": conversation.started_at.isoformat(),
            "last_activity_at": conversation.last_activity_at.isoformat(),
            "ended_by_marker": conversation.ended_at is not None,
            "user_id": users.pop() if len(users) == 1 else None,
            "has_error": conversation.has_error,
            "cost": conversation.cost,
        },
        "is_complete": conversation.is_complete,
    }


def conversation_turns(conversation: Conversation):
    """The conversation's traces in turn order, scoped to its workspace."""
    return (
        Trace.objects.for_workspace(conversation.workspace_id)
        .filter(conversation=conversation)
        .order_by("timestamp", "id")
    )


def conversation_payloads(
    workspace_id: int, anchor_ids: Iterable[int]
) -> dict[int, dict[str, Any]]:
    """Return the conversation dict of each conversation anchored on one of these traces.

    Two queries whatever the number: the conversations, then all their turns in order.
    """
    return {
        conversation.anchor_id: payload
        for conversation, payload in anchored_conversations(workspace_id, anchor_ids)
    }


def content_fingerprint(payload: dict[str, Any]) -> str:
    """Return a digest of what a conversation eval receives: equal when nothing it sees
    changed (its turns, their order, its figures), whatever order the keys came in."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def anchored_conversations(
    workspace_id: int, anchor_ids: Iterable[int]
) -> list[tuple[Conversation, dict[str, Any]]]:
    """Return each conversation anchored on one of these traces with its conversation dict,
    in id order. Two queries whatever the number."""
    conversations = {
        c.pk: c
        for c in Conversation.objects.for_workspace(workspace_id)
        .filter(anchor_id__in=list(anchor_ids))
        .order_by("id")
    }
    turns: dict[int, list[dict[str, Any]]] = {pk: [] for pk in conversations}
    rows = (
        Trace.objects.for_workspace(workspace_id)
        .filter(conversation_id__in=list(conversations))
        .order_by("conversation_id", "timestamp", "id")
        .values_list("conversation_id", "data")
    )
    for conversation_id, data in rows:
        turns[conversation_id].append(data)
    return [(c, conversation_dict(c, turns[pk])) for pk, c in conversations.items()]


def eval_payloads(eval_set: EvalSet, traces: list[Trace]) -> list[dict[str, Any]]:
    """What an eval of ``eval_set`` receives for each item: the trace, or its conversation.

    Every path that hands items to an eval (runs, generation, dry runs, export) goes
    through here, so trace sets and conversation sets differ in this one place.
    """
    if eval_set.unit != EvalSet.Unit.CONVERSATION:
        return [trace.data for trace in traces]
    payloads = conversation_payloads(eval_set.workspace_id, [t.pk for t in traces])
    return [payloads.get(t.pk) or _lone_turn(t) for t in traces]


def _lone_turn(trace: Trace) -> dict[str, Any]:
    """A trace labelled in a conversation set that no longer anchors one: a one-turn chat."""
    return {
        "id": trace.external_id,
        "messages": turn_messages(trace.data),
        "turns": [trace.data],
        "metadata": {"source": trace.source, "turn_count": 1},
        "is_complete": True,
    }
