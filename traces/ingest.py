"""Write normalised traces into ``Trace`` rows: the one ingestion path for sync, upload, API.

Each batch is validated per trace, deduplicated, compared by content hash with what is
stored, and written with one bulk upsert on the natural key (workspace, source_key,
external_id), so a sync or an upload can run any number of times without duplicates and
unchanged traces are not rewritten.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from integrations.adapters.base import (
    is_normal_shape,
    parse_time,
    trace_id_problem,
    trace_text_problem,
    validate_normalised_trace,
)
from integrations.store import UpsertResult
from iofold.lib import jsontext
from iofold.lib.sql import server_bound_cursor
from iofold.lib.text import search_form
from traces.conversations import (
    attach_conversations,
    lock_conversations,
    refresh_conversations,
)
from traces.models import Trace

logger = logging.getLogger(__name__)

SEARCH_TEXT_LIMIT = 10_000
LOOKUP_CHUNK = 500
UPDATE_FIELDS = [
    "integration",
    "source",
    "name",
    "timestamp",
    "data",
    "search_text",
    "tags",
    "has_error",
    "step_count",
    "tool_call_count",
    "latency_ms",
    "cost",
    "content_hash",
    "conversation",
    "updated_at",
]
# Rows per INSERT statement of the PostgreSQL upsert.
WRITE_CHUNK = 1000
# Column names come from the model, never from input. The rows' columns come as one JSON
# document, their payloads beside it as a binary text array, zipped row by row (ROWS FROM):
# inside the document PostgreSQL's recordset parser walked every token of every payload,
# most of the statement's parsing, where the json column only validates each payload once.
_UPSERT_SQL = (
    "INSERT INTO traces_trace (workspace_id, integration_id, source, source_key, external_id,"  # noqa: S608
    " name, timestamp, data, search_text, tags, has_error, step_count, tool_call_count,"
    " latency_ms, cost, content_hash, conversation_id, created_at, updated_at)"
    " SELECT %s, %s, %s, %s, r.e, r.n, r.t, r.d::json, r.s, r.g, r.h, r.sc, r.tc, r.l, r.c,"
    " r.x, r.v, %s, %s FROM ROWS FROM (json_to_recordset(%s::json) AS (e text, n text,"
    " t timestamptz, s text, g jsonb, h boolean, sc integer, tc integer, l double precision,"
    " c double precision, x text, v bigint), unnest(%b::text[]))"
    " AS r(e, n, t, s, g, h, sc, tc, l, c, x, v, d)"
    " ON CONFLICT (workspace_id, source_key, external_id) DO UPDATE SET "
    + ", ".join(
        f"{Trace._meta.get_field(name).column} = EXCLUDED.{Trace._meta.get_field(name).column}"
        for name in UPDATE_FIELDS
    )
    # A stored row is taken only while in the conversation this ingest read it in (and
    # locked): one a concurrent ingest moved since is locked but left out of RETURNING,
    # for ``upsert_traces`` to write again once it holds that conversation too.
    + " WHERE traces_trace.conversation_id IS NOT DISTINCT FROM"
    + " (%s::jsonb ->> EXCLUDED.external_id)::bigint"
    # xmax is 0 only on a row version this statement inserted: its conversation's figures
    # can then be added to rather than recomputed (``refresh_conversations``).
    + " RETURNING id, external_id, xmax = 0"
)
STEP_DEFAULTS = {
    "parent_id": None,
    "input": None,
    "output": None,
    "error": None,
    "model": None,
    "usage": None,
    "start_time": None,
    "end_time": None,
}


class StoredTraces(dict):
    """Stored payloads by external id, read under lock by a caller that merges into them.

    It also keeps the id, content hash and conversation of each stored row, and which
    external ids were asked for, so that the upsert writing the merged traces back in the
    same transaction (rows still locked) need not look them up a second time.
    """

    def __init__(self, *, source_key: str, asked: Iterable[str], rows, locked: bool) -> None:
        super().__init__()
        self.source_key = source_key
        self.locked = locked
        self.asked = frozenset(asked)
        self.keys: dict[str, tuple[int, str, int | None]] = {}
        for external_id, pk, digest, conversation_id, data in rows:
            self[external_id] = data
            self.keys[external_id] = (pk, digest, conversation_id)


def source_key_for(*, source: str, integration=None) -> str:
    """Return the natural-key namespace: one per integration, else one per source."""
    return f"i{integration.pk}" if integration is not None else source


@dataclass
class PreparedTraces:
    """A batch validated, canonicalised and encoded: what storing it needs but the database.

    ``prepare_traces`` makes it without touching the database, so a sync prepares its next
    page on the thread that fetches it while this thread writes the current one.
    """

    # Canonical payloads by id (the last copy of a duplicated id wins), their encodings
    # and the content hashes of those encodings.
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    # The columns each trace's row derives from its payload (``trace_columns``).
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    # On PostgreSQL, each row's upsert record but its conversation (``_row_head``).
    heads: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def prepare_traces(traces: list[dict[str, Any]], *, checked: bool = False) -> PreparedTraces:
    """Validate and canonicalise normalised traces, and hash what would be stored.

    ``checked``: an adapter's normaliser built these traces to the schema and in their
    canonical form (``TracePage.checked``), so neither the check nor the copy is made;
    the rest still runs. The row columns derived from each payload are computed here
    too, so a sync's writing thread only assembles the rows.
    """
    batch = PreparedTraces()
    # The upsert's records are written here, off a sync's writing thread (``_write_rows``).
    heads = connection.vendor == "postgresql"
    # One encoding of each trace serves both the check for unstorable text and the hash.
    for index, raw in enumerate(traces):
        problems = [] if checked else validate_normalised_trace(raw, check_text=False)
        if not problems and parse_time(raw["timestamp"]) is None:
            problems = ["field 'timestamp' is empty"]
        if not problems:
            data = raw if checked else canonical_trace(raw)
            encoded = _encode(data)
            if id_problem := trace_id_problem(data["id"]):  # the schema check says so too
                problems = [id_problem]
            elif problem := trace_text_problem(raw, encoded=encoded):
                problems = [problem]
            elif encoded is None:
                problems = ["the trace cannot be encoded as JSON"]
        if problems:
            batch.failed += 1
            batch.errors.append((index, "; ".join(problems)))
            continue
        if data["id"] in batch.traces:
            batch.duplicates += 1
        batch.traces[data["id"]] = data
        batch.encodings[data["id"]] = encoded
        digest = batch.digests[data["id"]] = hashlib.sha256(encoded.encode()).hexdigest()
        columns = batch.columns[data["id"]] = trace_columns(data)
        if heads:
            batch.heads[data["id"]] = _row_head(columns, digest)
    return batch


def upsert_traces(
    *,
    workspace,
    source: str,
    integration=None,
    traces: list[dict[str, Any]] | PreparedTraces,
    on_ingested: Callable[[list[int]], None] | None = None,
    stored: StoredTraces | None = None,
    on_anchors_moved: Callable[[int, dict[int, int]], None] | None = None,
) -> UpsertResult:
    """Validate and upsert normalised traces; return the counts and the new or changed ids.

    ``traces`` may come already through ``prepare_traces``. ``on_ingested(trace_ids)``
    runs after the surrounding transaction commits, and only when some trace was created
    or changed. What happens next (continuous evaluation) is the caller's to decide:
    ``iofold.pipeline.ingest_traces`` is the caller that does it. ``stored`` is what
    ``stored_trace_data(lock=True)`` returned earlier in the same transaction, for the
    same source: the traces it was asked about are not looked up again.
    ``on_anchors_moved(workspace_id, {old anchor: new anchor})`` runs in the transaction
    when conversations' anchor turns moved to another conversation, for what downstream
    apps keep on a conversation's anchor (verdicts) to follow it.
    """
    if source not in Trace.Source.values:
        raise ValueError(f"unknown trace source {source!r}")
    source_key = source_key_for(source=source, integration=integration)
    batch = traces if isinstance(traces, PreparedTraces) else prepare_traces(traces)
    result = UpsertResult(
        failed=batch.failed, duplicates=batch.duplicates, errors=list(batch.errors)
    )
    prepared, encodings = batch.traces, batch.encodings
    if not prepared:
        return result

    # Stored rows are read in the transaction that writes them: on SQLite it begins
    # IMMEDIATE (settings), so a concurrent ingest's write is committed before this one
    # reads, never after (what a re-sent turn leaves, ``previous``, would be stale). No
    # savepoint inside a caller's transaction (a sync's page): an error here fails that
    # transaction whole anyway, and the savepoint cost two round trips a batch.
    with transaction.atomic(savepoint=False):
        existing: dict[str, tuple[int, str, int | None]] = {}
        ids = list(prepared)
        if stored is not None and stored.locked and stored.source_key == source_key:
            existing = {i: stored.keys[i] for i in ids if i in stored.keys}
            ids = [i for i in ids if i not in stored.asked]
        for start in range(0, len(ids), LOOKUP_CHUNK):
            for external_id, pk, digest, conversation_id in _stored_keys(
                workspace, source_key, ids[start : start + LOOKUP_CHUNK]
            ):
                existing[external_id] = (pk, digest, conversation_id)

        # On PostgreSQL the upsert needs no model instances (``_write_rows``): a row there is
        # what the conversations read and its id, a third of the time to make.
        make_row = build_trace if connection.vendor != "postgresql" else PendingRow.of
        to_write: list[Trace | PendingRow] = []
        # The conversation each re-sent trace is stored in: its session id may have changed,
        # and the conversation it leaves must lose it (``refresh_conversations``).
        previous: dict[str, int] = {}
        for external_id, data in prepared.items():
            digest = batch.digests[external_id]
            known = existing.get(external_id)
            if known is not None and known[1] == digest:
                result.unchanged += 1
                continue
            if known is None:
                result.created += 1
            else:
                result.updated += 1
                if known[2] is not None:
                    previous[external_id] = known[2]
            to_write.append(
                make_row(
                    data,
                    batch.columns[external_id],
                    workspace=workspace,
                    source=source,
                    source_key=source_key,
                    integration=integration,
                    digest=digest,
                )
            )

        if to_write:
            before = attach_conversations(
                workspace=workspace,
                source=source,
                source_key=source_key,
                integration=integration,
                rows=to_write,
                previous=previous,
            )
            write = functools.partial(
                _write_rows,
                encodings=encodings,
                heads=batch.heads,
                workspace_id=workspace.pk,
                integration_id=integration.pk if integration is not None else None,
                source=source,
                source_key=source_key,
                previous=previous,
            )
            # Rows are locked in the order they are written: in key order, so two ingests
            # writing the same traces (a sync's page and a webhook's batch, in any order)
            # wait for one another, never on each other crosswise (a deadlock, which
            # PostgreSQL ends by failing one of them).
            in_key_order = sorted(to_write, key=_external_id)
            write(in_key_order)
            postgresql = connection.vendor == "postgresql"
            if postgresql:
                _count_rows_another_ingest_created(in_key_order, existing, result)
            # On PostgreSQL, rows a concurrent ingest moved after they were read here.
            moved = [row for row in in_key_order if row.pk is None] if postgresql else []
            if moved:
                _follow_moved_rows(workspace, source_key, moved, previous, before, existing, result)
                write(moved)  # now in the conversations they are read in, and locked there
            refreshed = refresh_conversations(
                workspace=workspace, rows=to_write, before=before, previous=previous
            )
            result.completed_conversation_ids = refreshed.completed
            if refreshed.anchors_moved and on_anchors_moved is not None:
                on_anchors_moved(workspace.pk, refreshed.anchors_moved)
            written = [t.pk for t in to_write if t.pk is not None]
            if len(written) != len(to_write):
                # Backends that cannot return ids from an upsert: look them up.
                written = list(
                    Trace.objects.for_workspace(workspace)
                    .with_keys(source_key, [t.external_id for t in to_write])
                    .values_list("id", flat=True)
                )
            result.trace_ids = written
            ids_for_callback = list(written)
            if on_ingested is not None:
                transaction.on_commit(lambda: on_ingested(ids_for_callback))
    logger.info(
        "traces upserted workspace=%s source=%s created=%d updated=%d unchanged=%d failed=%d",
        workspace.pk,
        source_key,
        result.created,
        result.updated,
        result.unchanged,
        result.failed,
    )
    return result


_external_id = operator.attrgetter("external_id")


def _count_rows_another_ingest_created(rows, existing, result):
    """Count as updated the traces read as absent that a concurrent ingest inserted first:
    this upsert waited on that insert and then updated its row (``inserted`` is false)."""
    raced = sum(
        1
        for row in rows
        if row.pk is not None and not row.inserted and row.data["id"] not in existing
    )
    result.created -= raced
    result.updated += raced


def _follow_moved_rows(workspace, source_key, moved, previous, before, existing, result):
    """Take in rows a concurrent ingest moved to another conversation (or wrote) after this
    one read them: the upsert left them locked, so their conversation read now stays; it
    is locked in turn, to be recounted with the others (``refresh_conversations``).

    Only when that happened: one read and one lock. That lock is taken out of id order: a
    third ingest holding it and waiting for one of this one's is a deadlock, which
    PostgreSQL ends by failing one of the two: a failed sync keeps its cursor, and its next
    run writes that page again.
    """
    stored = {
        row[0]: row[3]
        for row in _stored_keys(workspace, source_key, [row.external_id for row in moved])
    }
    for row in moved:
        key = row.data["id"]
        if key not in existing:  # written by the other ingest since it was read
            result.created -= 1
            result.updated += 1
        if stored.get(row.external_id) is None:
            previous.pop(key, None)
        else:
            previous[key] = stored[row.external_id]
    before.update(
        lock_conversations(workspace, source_key, set(stored.values()) - set(before) - {None})
    )


# One probe of the unique index per key, whatever the planner believes of the table: asked
# with IN, PostgreSQL scanned all of the source's keys in that index when its statistics
# said the table was small (a new table, or the first sync of a big source), each page of
# a sync longer than the one before. The keys go as a binary array (%b): as text, psycopg
# quoted each one in Python, after a regex search, eight times as long.
_STORED_KEYS_SQL = (
    "SELECT k.e, t.id, t.content_hash, t.conversation_id FROM unnest(%b::text[]) AS k(e)"  # noqa: S608
    f" CROSS JOIN LATERAL (SELECT id, content_hash, conversation_id FROM {Trace._meta.db_table}"
    " WHERE workspace_id = %s"
    " AND source_key = %s AND external_id = k.e LIMIT 1) AS t"
)


def _stored_keys(workspace, source_key: str, external_ids: list[str]):
    """Return ``(external_id, id, content_hash, conversation_id)`` of the stored traces."""
    if connection.vendor != "postgresql":
        rows = Trace.objects.for_workspace(workspace).with_keys(source_key, external_ids)
        return rows.values_list("external_id", "id", "content_hash", "conversation_id")
    with server_bound_cursor() as cursor:
        cursor.execute(
            _STORED_KEYS_SQL, [external_ids, getattr(workspace, "pk", workspace), source_key]
        )
        return cursor.fetchall()


def _row_json(columns: dict[str, Any]) -> str:
    """Return one upsert row's columns as JSON for PostgreSQL to read back.

    orjson's text is json.dumps's but for some floats (0.00001 for 1e-05): the same values,
    in a tenth of the time (NaN and infinities fail the payload's cast either way). It
    refuses ints past 64 bits, which json.dumps writes and the column's cast judges.
    """
    try:
        return orjson.dumps(columns).decode()
    except orjson.JSONEncodeError:
        return json.dumps(columns, ensure_ascii=False)


def _row_head(columns: dict[str, Any], digest: str) -> str:
    """Return a row's upsert record but its conversation and payload: JSON left open."""
    sent = columns["data"]["timestamp"]
    return _row_json(
        {
            "e": columns["external_id"],
            "n": columns["name"],
            # The payload's own time when shaped as PostgreSQL reads it as that very instant
            # (a normaliser writes every time so); otherwise the parsed time, written out.
            "t": sent if is_normal_shape(sent) else columns["timestamp"].isoformat(),
            "s": columns["search_text"],
            "g": columns["tags"],
            "h": columns["has_error"],
            "sc": columns["step_count"],
            "tc": columns["tool_call_count"],
            "l": columns["latency_ms"],
            "c": columns["cost"],
            "x": digest,
        }
    )[:-1]


def _write_rows(
    rows: list[Trace] | list[PendingRow],
    encodings: dict[str, str],
    heads: dict[str, str],
    *,
    workspace_id: int,
    integration_id: int | None,
    source: str,
    source_key: str,
    previous: dict[str, int],
) -> None:
    """Upsert unsaved rows on their natural key and set their ids.

    ``Trace`` instances on other backends (``bulk_create``), ``PendingRow``s on PostgreSQL.
    There a stored row is written only if still in its conversation of ``previous`` (by
    trace id; none if absent): a row moved by a concurrent ingest is left without an id.

    On PostgreSQL the batch's columns go as one JSON document that the server unpacks
    (``json_to_recordset``) and its payloads as a text array beside it (``_UPSERT_SQL``):
    each payload's canonical encoding, already made for the content hash, is sent as is and
    stored as that very text (a ``json`` column: traces.fields), where ``bulk_create`` would
    encode every payload again and quote every value of every column in Python (most of a
    batch's CPU time).
    """
    if connection.vendor != "postgresql":
        Trace.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["workspace", "source_key", "external_id"],
            update_fields=UPDATE_FIELDS,
            batch_size=500,
        )
        return
    now = timezone.now()
    for start in range(0, len(rows), WRITE_CHUNK):
        chunk = rows[start : start + WRITE_CHUNK]
        records, payloads, expected = [], [], {}
        for row in chunk:
            # The row's head and its payload's own encoding, both keyed by the id it was
            # prepared under (the stored external id may be cut to the column's length).
            key = row.data["id"]
            conversation = "null" if row.conversation_id is None else int(row.conversation_id)
            records.append(f'{heads[key]},"v":{conversation}}}')
            payloads.append(encodings[key])
            if key in previous:
                expected[row.external_id] = previous[key]
        with server_bound_cursor() as cursor:
            cursor.execute(
                _UPSERT_SQL,
                [
                    workspace_id,
                    integration_id,
                    source,
                    source_key,
                    now,
                    now,
                    f"[{','.join(records)}]",
                    payloads,
                    orjson.dumps(expected).decode(),
                ],
            )
            ids = {external_id: (pk, new) for pk, external_id, new in cursor.fetchall()}
        for row in chunk:
            row.pk, row.inserted = ids.get(row.external_id, (None, False))


def stored_trace_data(
    *, workspace, source: str, integration=None, external_ids: list[str], lock: bool = False
) -> StoredTraces:
    """Return the stored payloads of these traces by external id, locked for update if asked.

    For sources whose traces arrive in pieces (OTLP spans), which merge each piece into
    what is stored before upserting the whole again. ``lock`` also covers traces not
    stored yet: two requests bringing the first spans of one trace would otherwise both
    read nothing and the later write would drop the earlier one's spans. On PostgreSQL a
    transaction-scoped advisory lock per trace (taken in one order, so no deadlock) makes
    the second wait; SQLite transactions here begin IMMEDIATE, one writer at a time.
    """
    source_key = source_key_for(source=source, integration=integration)
    rows = Trace.objects.for_workspace(workspace).with_keys(source_key, external_ids)
    if lock:
        _lock_trace_keys(workspace.pk, source_key, external_ids)
        rows = rows.select_for_update()
    return StoredTraces(
        source_key=source_key,
        asked=external_ids,
        rows=rows.values_list("external_id", "id", "content_hash", "conversation_id", "data"),
        locked=lock,
    )


def _lock_trace_keys(workspace_id: int, source_key: str, external_ids: list[str]) -> None:
    if connection.vendor != "postgresql" or not external_ids:
        return
    keys = sorted(
        int.from_bytes(
            hashlib.blake2b(
                f"trace:{workspace_id}:{source_key}:{external_id}".encode(), digest_size=8
            ).digest(),
            "big",
            signed=True,
        )
        for external_id in set(external_ids)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            # unnest keeps the array's (sorted) order.
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k",
            [keys],
        )


def canonical_trace(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the trace with every optional key filled in, as evals receive it."""
    steps = []
    for step in raw.get("steps") or []:
        steps.append({**STEP_DEFAULTS, **step, "metadata": step.get("metadata") or {}})
    return {
        **raw,
        "id": raw["id"].strip(),
        "name": raw.get("name"),
        "input": raw.get("input"),
        "output": raw.get("output"),
        "steps": steps,
        "metadata": raw.get("metadata") or {},
        "tags": list(raw.get("tags") or []),
        "user_id": raw.get("user_id"),
        "session_id": raw.get("session_id"),
        "latency_ms": raw.get("latency_ms"),
        "cost": raw.get("cost"),
    }


def _encode(data: dict[str, Any]) -> str | None:
    """Return the encoding of a canonical trace its content hash (change detection) is
    taken of; None when it has none (a value JSON cannot hold)."""
    try:
        # No circular check: a trace made from JSON cannot hold a cycle, and one that did
        # would still end here, as a RecursionError.
        return jsontext.dumps_sorted(data)
    except (ValueError, RecursionError):
        return None


def trace_columns(data: dict[str, Any]) -> dict[str, Any]:
    """Return the denormalised columns of a canonical trace's row, from its payload alone."""
    steps = data["steps"]
    return {
        "external_id": data["id"],
        "name": (data.get("name") or "")[:255],
        "timestamp": parse_time(data["timestamp"]),
        "data": data,
        "search_text": _search_text(data),
        "tags": data["tags"],
        "has_error": any(step.get("error") for step in steps),
        "step_count": len(steps),
        "tool_call_count": _tool_calls(steps),
        "latency_ms": _latency_ms(data),
        "cost": data.get("cost"),
    }


class PendingRow:
    """A trace row on its way into PostgreSQL: what its conversation needs, then its id
    and whether the upsert inserted it (rather than updated a stored trace)."""

    __slots__ = (
        "data",
        "external_id",
        "timestamp",
        "has_error",
        "cost",
        "conversation_id",
        "pk",
        "inserted",
    )

    def __init__(
        self, data: dict[str, Any], external_id: str, timestamp, has_error: bool, cost
    ) -> None:
        self.data, self.external_id, self.timestamp = data, external_id, timestamp
        self.has_error, self.cost = has_error, cost
        self.conversation_id: int | None = None
        self.pk: int | None = None
        self.inserted = False

    @classmethod
    def of(cls, data: dict[str, Any], columns: dict[str, Any], **keys: Any) -> PendingRow:
        """Take ``build_trace``'s arguments; the keys go with the batch (``_write_rows``)."""
        return cls(
            data,
            columns["external_id"],
            columns["timestamp"],
            columns["has_error"],
            columns["cost"],
        )


def build_trace(
    data: dict[str, Any],
    columns: dict[str, Any],
    *,
    workspace,
    source: str,
    source_key: str,
    integration,
    digest: str,
) -> Trace:
    """Return an unsaved ``Trace`` of ``data`` with its ``trace_columns`` and its keys.

    Only column values are set (``workspace_id``, not ``workspace``): what storing needs.
    """
    columns = {
        **columns,
        "workspace_id": workspace.pk,
        "integration_id": integration.pk if integration is not None else None,
        "source": source,
        "source_key": source_key,
        "content_hash": digest,
    }
    # Positional, in the model's column order: Django's keyword path (defaults, relation
    # descriptors) took three times as long, and a sync builds a row per new trace.
    return Trace(*[columns.get(name) for name in _trace_columns()])


@functools.cache
def _trace_columns() -> tuple[str, ...]:
    """The attribute of each of ``Trace``'s columns, in the order ``Trace(*values)`` takes."""
    return tuple(field.attname for field in Trace._meta.concrete_fields)


def _tool_calls(steps: list[dict[str, Any]]) -> int:
    tool_steps = sum(1 for step in steps if step.get("type") == "tool")
    if tool_steps:
        return tool_steps
    # Uninstrumented tools show up only as calls requested in LLM outputs.
    return sum(
        len(_requested_calls(step.get("output"))) for step in steps if step.get("type") == "llm"
    )


def _requested_calls(output: Any) -> list:
    messages = output if isinstance(output, list) else [output]
    calls: list = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
            calls += message["tool_calls"]
    return calls


def _latency_ms(data: dict[str, Any]) -> float | None:
    if isinstance(data.get("latency_ms"), (int, float)):
        return float(data["latency_ms"])
    starts = [parse_time(s["start_time"]) for s in data["steps"] if s.get("start_time")]
    ends = [parse_time(s["end_time"]) for s in data["steps"] if s.get("end_time")]
    if starts and ends:
        return max(0.0, (max(ends) - min(starts)).total_seconds() * 1000)
    return None


# json.dumps(value, ensure_ascii=False, default=str), without building an encoder for
# every input and output of every trace (a third of the call for a small one).
_SEARCH_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _SEARCH_ENCODER.encode(value)


def _search_text(data: dict[str, Any]) -> str:
    parts: Iterable[str] = [
        data.get("name") or "",
        " ".join(data["tags"]),
        data.get("user_id") or "",
        data.get("session_id") or "",
        _text(data.get("input")),
        _text(data.get("output")),
        *(f"{s.get('name', '')} {s.get('error') or ''}" for s in data["steps"]),
    ]
    # In the form the filter puts its query in; cut before (a big payload's rest is never
    # searched, so never normalised) and after (NFKC may lengthen it). ASCII, most traces,
    # is tested here too: search_form's own test, behind a call, cost ~900 instructions.
    text = " ".join(p for p in parts if p)[:SEARCH_TEXT_LIMIT]
    return text if text.isascii() else search_form(text)[:SEARCH_TEXT_LIMIT]
