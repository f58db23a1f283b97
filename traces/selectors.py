"""Reads for the trace list, the review flow and eval set summaries."""

import base64
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db import connection
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
)

from integrations.adapters.base import as_utc, parse_time
from integrations.models import Integration
from iofold.lib.fields import parse_id
from iofold.lib.kappa import cohen_kappa
from traces.conversations import conversation_dict, conversation_turns, turn_messages
from traces.filters import TraceFilters
from traces.models import (
    Conversation,
    EvalSet,
    EvalSetTrace,
    Feedback,
    LabelAssignment,
    LabelChange,
    Trace,
)
from traces.services import resolve_label
from workspaces.models import Workspace

PAGE_SIZE = 50
# Below this many decided labels a one-sided set is normal; above it the eval can't learn.
IMBALANCE_MIN_LABELS = 4
LIST_FIELDS = (
    "id",
    "workspace_id",
    "integration_id",
    "source",
    "external_id",
    "name",
    "timestamp",
    "tags",
    "has_error",
    "step_count",
    "tool_call_count",
    "latency_ms",
    "cost",
)


# --- trace list -------------------------------------------------------------------------


def encode_cursor(trace: Trace) -> str:
    return encode_position(trace.timestamp, trace.pk)


def encode_position(stamp: dt.datetime, pk: int) -> str:
    raw = f"{stamp.isoformat()}|{pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int] | None:
    """Return ``(timestamp, id)`` from a cursor, or None when it is not one of ours.

    A cursor comes back from the client: its time is read as UTC (one past year 9999 or
    before year 1 there, ``0001-01-01T00:00:00+14:00``, failed in SQLite's query with
    OverflowError), and its id must be one a row can have.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.rsplit("|", 1)
        position = as_utc(dt.datetime.fromisoformat(stamp)), parse_id(pk)
    except (ValueError, UnicodeDecodeError):
        return None
    return position if position[1] is not None else None


def keyset_page(qs, *, field: str, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """Return up to ``limit`` rows of ``qs``, latest ``field`` first, after ``cursor``, and
    the cursor of the next page (None on the last).

    Keyset pagination on ``(field, id)``: page 2,000 costs what page 1 costs, because the
    index range scan starts at the cursor instead of counting past earlier rows.
    """
    position = decode_cursor(cursor) if cursor else None
    if position is not None:
        stamp, pk = position
        # The leading ``lte`` bounds the index range; the OR breaks ties by id.
        qs = qs.filter(**{f"{field}__lte": stamp}).filter(
            Q(**{f"{field}__lt": stamp}) | Q(**{field: stamp, "pk__lt": pk})
        )
    rows = list(qs.order_by(f"-{field}", "-id")[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_position(getattr(last, field), last.pk)


@dataclass
class TracePage:
    traces: list[Trace]
    next_cursor: str | None
    filters: TraceFilters


def trace_page(
    *,
    workspace: Workspace,
    filters: TraceFilters | None = None,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> TracePage:
    """Return one page of traces, newest first, with their label counts.

    Keyset pagination on ``(timestamp, id)`` (``keyset_page``).
    """
    filters = filters or TraceFilters()
    qs = filters.apply(Trace.objects.for_workspace(workspace).present()).only(*LIST_FIELDS)
    rows, next_cursor = keyset_page(qs, field="timestamp", cursor=cursor, limit=limit)
    attach_label_counts(rows)
    return TracePage(traces=rows, next_cursor=next_cursor, filters=filters)


# Raw SQL because it runs on every trace list: the ORM spent about as long compiling this
# query's fifty parameters (0.4 ms of CPU) as fetching its rows.
_LABEL_COUNTS_SQL = """
SELECT {trace}, {rating}, COUNT(*) FROM {table} WHERE {trace} IN ({ids}) GROUP BY {trace}, {rating}
"""


# The workspace's natural-key namespaces (Trace.source_key), one index probe each on the
# unique (workspace, source_key, external_id) index: a loose index scan, which neither
# PostgreSQL nor SQLite makes of a DISTINCT (that reads an entry per trace: ~57 ms at 300k).
# A namespace's source is its first trace's, read in the index's order (else PostgreSQL may
# scan the table for it): the source itself for traces with no integration, else the
# integration's kind.
_SOURCES_SQL = """
WITH RECURSIVE namespaces(key) AS (
    SELECT MIN({key}) FROM {table} WHERE {workspace} = %s
    UNION ALL
    SELECT (SELECT MIN({key}) FROM {table} WHERE {workspace} = %s AND {key} > namespaces.key)
    FROM namespaces WHERE namespaces.key IS NOT NULL
)
SELECT namespaces.key, (
    SELECT {source} FROM {table} WHERE {workspace} = %s AND {key} = namespaces.key
    ORDER BY {external_id} LIMIT 1
)
FROM namespaces WHERE namespaces.key IS NOT NULL
"""


def _namespaces(workspace) -> list[tuple[str, str]]:
    """Return each ``source_key`` of the workspace's traces with the source of one of them."""
    quote = connection.ops.quote_name
    opts = Trace._meta
    sql = _SOURCES_SQL.format(
        table=quote(opts.db_table),
        key=quote(opts.get_field("source_key").column),
        source=quote(opts.get_field("source").column),
        workspace=quote(opts.get_field("workspace").column),
        external_id=quote(opts.get_field("external_id").column),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [workspace.pk] * 3)
        return cursor.fetchall()


def source_choices(workspace, *, keep: str = "") -> list[tuple[str, str]]:
    """The sources the workspace's traces come from, as (value, label), in Source order.

    ``keep``, a value already chosen (from the URL), stays listed even with no trace of it.
    """
    namespaces = _namespaces(workspace)
    present = {source for _, source in namespaces} | {keep}
    # An integration's namespace holds its synced traces and those its webhook pushed,
    # whichever came first: both sources are listed when it can receive both.
    synced = [key[1:] for key, _ in namespaces if key[:1] == "i" and key[1:].isdigit()]
    if synced:
        hooked = ExpressionWrapper(~Q(webhook_secret=""), output_field=BooleanField())
        for kind, webhook in (
            Integration.objects.for_workspace(workspace)
            .filter(pk__in=synced)
            .values_list("kind", hooked)
        ):
            present |= {kind, Trace.Source.WEBHOOK} if webhook else {kind}
    return [(value, label) for value, label in Trace.Source.choices if value in present]


def sources_without_integration(workspace) -> list[tuple[str, str]]:
    """The sources of the workspace's traces that came through no integration (the API, an
    upload, the demo), as (value, label) in Source order: an integration's traces share
    its namespace (``i<id>``), these are each in their source's own."""
    present = {key for key, _ in _namespaces(workspace) if key in Trace.Source.values}
    return [(value, label) for value, label in Trace.Source.choices if value in present]


def attach_label_counts(traces: list[Trace]) -> None:
    """Set ``trace.label_counts`` (rating -> count over every eval set) in one query."""
    counts: dict[int, Counter] = defaultdict(Counter)
    if traces:
        quote = connection.ops.quote_name
        opts = Feedback._meta
        sql = _LABEL_COUNTS_SQL.format(
            table=quote(opts.db_table),
            trace=quote(opts.get_field("trace").column),
            rating=quote(opts.get_field("rating").column),
            ids=", ".join(["%s"] * len(traces)),
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [t.pk for t in traces])
            for trace_id, rating, n in cursor.fetchall():
                counts[trace_id][rating] += n
    for trace in traces:
        trace.label_counts = counts[trace.pk]
        trace.label_state = resolve_label(trace.label_counts) if trace.label_counts else None
        trace.label_total = sum(trace.label_counts.values())


# --- trace detail -----------------------------------------------------------------------


# Steps nested deeper than this are shown flat at this depth: the page renders the tree
# with one template include per level, and a chain of hundreds of steps would exhaust
# the stack.
MAX_STEP_DEPTH = 24


@dataclass
class StepNode:
    step: dict
    depth: int
    children: list["StepNode"] = field(default_factory=list)
    has_error_below: bool = False

    @property
    def tokens(self) -> int | None:
        usage = self.step.get("usage") or {}
        if not isinstance(usage, dict) or not usage:
            return None
        return sum(v for v in (usage.get("input"), usage.get("output")) if isinstance(v, int))

    @property
    def latency_ms(self) -> float | None:
        start, end = _when(self.step.get("start_time")), _when(self.step.get("end_time"))
        if start is None or end is None:
            return None
        return (end - start).total_seconds() * 1000


# Steps a page shows until "Show all": a 5,000-step agent run made a 3.5 MB page that took
# the server close to two seconds to render.
MAX_SHOWN_STEPS = 500


@dataclass
class StepTree:
    roots: list[StepNode]
    shown: int  # the steps under ``roots``, the first ones in tree order
    total: int
    errors_not_shown: int  # steps with an error among those left out


def shown_steps(data: dict, *, full: bool = False) -> StepTree:
    """The step tree cut to its first ``MAX_SHOWN_STEPS`` steps in tree order, unless
    ``full``. Steps above an error left out are still marked as having one below."""
    roots = step_tree(data)
    ordered: list[StepNode] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack.extend(reversed(node.children))
    if full or len(ordered) <= MAX_SHOWN_STEPS:
        return StepTree(roots, shown=len(ordered), total=len(ordered), errors_not_shown=0)
    # A prefix of the depth-first order holds each shown step's ancestors.
    kept = {id(node) for node in ordered[:MAX_SHOWN_STEPS]}
    for node in ordered[:MAX_SHOWN_STEPS]:
        node.children = [child for child in node.children if id(child) in kept]
    return StepTree(
        [root for root in roots if id(root) in kept],
        shown=MAX_SHOWN_STEPS,
        total=len(ordered),
        errors_not_shown=sum(1 for n in ordered[MAX_SHOWN_STEPS:] if n.step.get("error")),
    )


@dataclass(frozen=True)
class Window:
    """Part of a long list: ``limit`` items from ``offset`` of ``total``."""

    offset: int
    limit: int
    total: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + self.limit
        return end if end < self.total else None


def steps_window(data: dict, *, offset: int, limit: int) -> tuple[dict, Window]:
    """Return the trace's data with only ``limit`` of its steps from ``offset`` (stored
    order: each step names its ``parent_id``), and which part that is: the API's answer
    for a trace of thousands of steps stays as small as its page (``MAX_SHOWN_STEPS``)."""
    steps = data.get("steps")
    steps = steps if isinstance(steps, list) else []
    return {**data, "steps": steps[offset : offset + limit]}, Window(offset, limit, len(steps))


def turns_window(conversation: Conversation, *, offset: int, limit: int) -> tuple[list, Window]:
    """Return ``limit`` of the conversation's turns (traces) from ``offset``, in turn order."""
    turns = conversation_turns(conversation)
    window = Window(offset, limit, turns.count())
    # An offset past the end asks nothing (one past PostgreSQL's bigint would be a 500).
    shown = list(turns[offset : offset + limit]) if offset < window.total else []
    return shown, window


def step_tree(data: dict) -> list[StepNode]:
    """Arrange a normalised trace's steps by ``parent_id``; orphans become roots.

    Steps below ``MAX_STEP_DEPTH`` are listed in order under their ancestor at that depth.
    A parent cycle's steps become roots rather than disappear. Walks without recursion, so
    any stored trace renders.
    """
    steps = [s for s in (data.get("steps") or []) if isinstance(s, dict)]
    nodes = {str(s.get("id")): StepNode(step=s, depth=0) for s in steps}
    below: dict[int, list[StepNode]] = {id(n): [] for n in nodes.values()}
    starts = []
    for step in steps:
        node = nodes[str(step.get("id"))]
        parent = nodes.get(str(step.get("parent_id"))) if step.get("parent_id") else None
        if parent is None or parent is node:
            starts.append(node)
        else:
            below[id(parent)].append(node)

    # Depth-first, in step order, each node once; then unreached nodes (cycles) as roots.
    ordered: list[tuple[StepNode, int]] = []
    seen: set[int] = set()
    for start in [*starts, *nodes.values()]:
        if id(start) in seen:
            continue
        stack = [(start, 0)]
        while stack:
            node, depth = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            ordered.append((node, depth))
            stack.extend((child, depth + 1) for child in reversed(below[id(node)]))

    roots: list[StepNode] = []
    last_at: list[StepNode] = []  # the latest node placed at each depth
    for node, depth in ordered:
        node.depth = min(depth, MAX_STEP_DEPTH)
        node.children = []
        if node.depth == 0:
            roots.append(node)
        else:
            last_at[node.depth - 1].children.append(node)
        del last_at[node.depth :]
        last_at.append(node)
    for node, _ in reversed(ordered):
        node.has_error_below = bool(node.step.get("error")) or any(
            child.has_error_below for child in node.children
        )
    return roots


@dataclass
class WaterfallRow:
    node: StepNode
    offset: float | None  # percent of the trace's span before the step started
    width: float | None  # percent of the span the step took (at least a sliver)


# The waterfall lists this many steps; the tree beside it has them all.
WATERFALL_ROWS = 300


def _when(value) -> dt.datetime | None:
    """Return a step's time as an aware UTC datetime (naive is UTC, as a trace's own time
    is), so steps timed in different offsets, or some naive, share one timeline."""
    try:
        return parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


def waterfall(roots: list[StepNode]) -> list[WaterfallRow]:
    """The steps in tree order, each placed on the trace's time span (steps without times
    get a row and no bar)."""
    flat: list[StepNode] = []
    stack = list(reversed(roots))
    while stack and len(flat) < WATERFALL_ROWS:
        node = stack.pop()
        flat.append(node)
        stack.extend(reversed(node.children))
    times = [(_when(n.step.get("start_time")), _when(n.step.get("end_time"))) for n in flat]
    try:
        starts = [a for a, _ in times if a]
        ends = [b for _, b in times if b]
        first, last = min(starts), max(ends + starts)
        span = (last - first).total_seconds()
    except ValueError:  # no times
        return [WaterfallRow(node=n, offset=None, width=None) for n in flat]
    rows = []
    for node, (start, end) in zip(flat, times, strict=True):
        if start is None or span <= 0:
            rows.append(WaterfallRow(node=node, offset=None, width=None))
            continue
        offset = 100 * (start - first).total_seconds() / span
        length = 100 * ((end or start) - start).total_seconds() / span
        rows.append(
            WaterfallRow(node=node, offset=round(offset, 2), width=max(round(length, 2), 0.5))
        )
    return rows


# --- conversations ----------------------------------------------------------------------


@dataclass
class ConversationPage:
    conversations: list[Conversation]
    next_cursor: str | None


def conversation_page(
    *,
    workspace: Workspace,
    source: str = "",
    has_error: bool | None = None,
    state: str = "",
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> ConversationPage:
    """Return one page of conversations, latest activity first (keyset, like traces)."""
    qs = Conversation.objects.for_workspace(workspace).with_turns()
    if source:
        qs = qs.filter(source=source)
    if has_error is not None:
        qs = qs.filter(has_error=has_error)
    if state == "complete":
        qs = qs.complete()
    elif state == "open":
        qs = qs.open()
    rows, next_cursor = keyset_page(qs, field="last_activity_at", cursor=cursor, limit=limit)
    return ConversationPage(conversations=rows, next_cursor=next_cursor)


@dataclass
class TurnView:
    """One turn of the conversation page: the trace and its two chat bubbles."""

    trace: Trace
    number: int
    user: str
    assistant: str
    tool_calls: list[dict]
    tokens: int | None
    gap_seconds: float | None  # since the previous turn began

    @property
    def tool_errors(self) -> int:
        return sum(1 for call in self.tool_calls if call.get("error"))


def conversation_turn_views(conversation: Conversation) -> list[TurnView]:
    views: list[TurnView] = []
    previous = None
    for number, trace in enumerate(conversation_turns(conversation), start=1):
        user, assistant = turn_messages(trace.data)
        usage = [
            s.get("usage")
            for s in trace.data.get("steps") or []
            if isinstance(s, dict) and isinstance(s.get("usage"), dict)
        ]
        tokens = [v for u in usage for v in (u.get("input"), u.get("output")) if isinstance(v, int)]
        views.append(
            TurnView(
                trace=trace,
                number=number,
                user=user["content"],
                assistant=assistant["content"],
                tool_calls=assistant["tool_calls"],
                tokens=sum(tokens) if tokens else None,
                gap_seconds=(trace.timestamp - previous).total_seconds() if previous else None,
            )
        )
        previous = trace.timestamp
    return views


def conversation_judgements(conversation: Conversation) -> list:
    """The evals app's verdicts on the conversation (``iofold.composition``), newest first."""
    # Deferred: the composition layer imports the apps, this one included.
    from iofold.composition import conversation_judgements

    return conversation_judgements(conversation)


def conversation_labels(conversation: Conversation):
    """The labels given to the conversation: those of conversation eval sets on its anchor.

    A trace set's label on the anchor turn judged that one turn, not the conversation.
    """
    return (
        Feedback.objects.for_workspace(conversation.workspace_id)
        .filter(trace_id=conversation.anchor_id, eval_set__unit=EvalSet.Unit.CONVERSATION)
        .select_related("user", "eval_set")
        .order_by("-updated_at", "-id")
    )


def conversation_review_sets(conversation: Conversation) -> list[EvalSet]:
    """The active conversation eval sets this conversation is in, to label it there."""
    if conversation.anchor_id is None:
        return []
    sets = EvalSet.objects.for_workspace(conversation.workspace_id).active()
    sets = list(sets.filter(unit=EvalSet.Unit.CONVERSATION)[:10])
    if not sets:
        return []
    # One query for every set (not one each): a flag per set says whether it holds the anchor.
    anchor = conversation.anchor_id
    flags = (
        Trace.objects.for_workspace(conversation.workspace_id)
        .filter(pk=anchor)
        .values(
            **{f"in_{s.pk}": Exists(Trace.objects.in_eval_set(s).filter(pk=anchor)) for s in sets}
        )
        .first()
    ) or {}
    return [s for s in sets if flags.get(f"in_{s.pk}")]


def conversation_eval_input(conversation: Conversation, turns: list[TurnView]) -> dict:
    """What a conversation eval reads of this conversation (``conversation_dict``), built
    from the turns the page already read."""
    return conversation_dict(conversation, [turn.trace.data for turn in turns])


# --- eval sets and reviews --------------------------------------------------------------


def review_queue(*, eval_set: EvalSet, user, skipped: list[int] | tuple = ()):
    """Traces of the set this user still has to label, in review order."""
    qs = Trace.objects.pending_review(eval_set, user).only(*LIST_FIELDS, "data")
    if skipped:
        qs = qs.exclude(pk__in=skipped)
    if eval_set.source_kind == EvalSet.SourceKind.MANUAL:
        return qs.order_by("pk")
    return qs.order_by("-timestamp", "-id")


def _first_pending(pending, *, eval_set: EvalSet, user, skipped: list[int] | tuple = ()):
    """The smallest trace id of ``pending`` (picks or assignments) this user has not
    labelled, as a subquery.

    A reviewer works through the queue from its start, so the next trace sits behind
    every one already labelled. Anti-joining the rows with the reviewer's labels, both
    read in trace order from their indexes, skips those without reading a trace row.
    """
    mine = Feedback.objects.filter(eval_set=eval_set, user=user, trace_id=OuterRef("trace_id"))
    pending = pending.exclude(Exists(mine))
    if skipped:
        pending = pending.exclude(trace_id__in=skipped)
    return Subquery(pending.order_by("trace_id").values("trace_id")[:1])


def _assigned(eval_set: EvalSet, user, skipped=()):
    pending = LabelAssignment.objects.filter(eval_set=eval_set, assignee=user)
    return _first_pending(pending, eval_set=eval_set, user=user, skipped=skipped)


def _trace_at(eval_set: EvalSet, pk):
    """The one trace ``pk`` (an expression) names, with what the review card shows."""
    return (
        Trace.objects.for_workspace(eval_set.workspace_id)
        .only(*LIST_FIELDS, "data")
        .filter(pk=pk)
        .first()
    )


# Raw SQL because it runs on every review card: the ORM spends more CPU compiling the two
# anti-joined subqueries than PostgreSQL spends running them (as _PROGRESS_SQL below).
# The subqueries are ``_first_pending``'s.
_FIRST_PENDING_SQL = """
SELECT p.{trace} FROM {table} p
WHERE p.{eval_set} = %s{assignee}
  AND NOT EXISTS (SELECT 1 FROM {feedback} f WHERE f.{fb_eval_set} = %s
                  AND f.{fb_user} = %s AND f.{fb_trace} = p.{trace}){skip}
ORDER BY p.{trace} LIMIT 1
"""
_NEXT_PICKED_SQL = """
SELECT {columns} FROM {table} WHERE {workspace} = %s AND {pk} = COALESCE(({assigned}), ({picked}))
"""


def _first_pending_sql(model, *, eval_set: EvalSet, user, skipped, assigned: bool):
    """``_first_pending`` of picks or assignments as SQL and its parameters."""
    quote = connection.ops.quote_name
    opts, fb = model._meta, Feedback._meta
    sql = _FIRST_PENDING_SQL.format(
        table=quote(opts.db_table),
        trace=quote(opts.get_field("trace").column),
        eval_set=quote(opts.get_field("eval_set").column),
        assignee=f" AND p.{quote(opts.get_field('assignee').column)} = %s" if assigned else "",
        feedback=quote(fb.db_table),
        fb_eval_set=quote(fb.get_field("eval_set").column),
        fb_user=quote(fb.get_field("user").column),
        fb_trace=quote(fb.get_field("trace").column),
        skip=(
            f" AND p.{quote(opts.get_field('trace').column)} NOT IN "
            f"({', '.join(['%s'] * len(skipped))})"
            if skipped
            else ""
        ),
    )
    params = [eval_set.pk, *([user.pk] if assigned else []), eval_set.pk, user.pk, *skipped]
    return sql, params


def _next_picked_trace(eval_set: EvalSet, user, skipped: list[int] | tuple = ()):
    """The first trace of a hand-picked set assigned to this user, else the first picked,
    that they have not labelled: one query."""
    quote = connection.ops.quote_name
    opts = Trace._meta
    assigned, assigned_params = _first_pending_sql(
        LabelAssignment, eval_set=eval_set, user=user, skipped=skipped, assigned=True
    )
    picked, picked_params = _first_pending_sql(
        EvalSetTrace, eval_set=eval_set, user=user, skipped=skipped, assigned=False
    )
    columns = ", ".join(quote(opts.get_field(f).column) for f in (*LIST_FIELDS, "data"))
    sql = _NEXT_PICKED_SQL.format(
        columns=columns,
        table=quote(opts.db_table),
        workspace=quote(opts.get_field("workspace").column),
        pk=quote(opts.pk.column),
        assigned=assigned,
        picked=picked,
    )
    rows = Trace.objects.raw(sql, [eval_set.workspace_id, *assigned_params, *picked_params])
    return next(iter(rows), None)


def next_trace_for_review(
    *, eval_set: EvalSet, user, skipped: list[int] | tuple = (), come_back: bool = True
):
    """Return the next trace to review, coming back to skipped ones when nothing else is left
    (unless ``come_back`` is false: the review page offers them explicitly instead).

    A reviewer's assigned traces come first; then the rest of the set, so nobody runs dry.
    For a hand-picked set both are one query (the first assigned, else the first picked).
    """
    if eval_set.source_kind == EvalSet.SourceKind.MANUAL:
        trace = _next_picked_trace(eval_set, user, skipped)
        if trace is None and skipped and come_back:
            trace = _next_picked_trace(eval_set, user)
        return trace
    trace = _trace_at(eval_set, _assigned(eval_set, user, skipped))
    if trace is not None:
        return trace
    trace = review_queue(eval_set=eval_set, user=user, skipped=skipped).first()
    if trace is None and skipped and come_back:
        trace = review_queue(eval_set=eval_set, user=user).first()
    return trace


def skipped_left(*, eval_set: EvalSet, user, skipped: list[int] | tuple) -> int:
    """How many of the ``skipped`` traces this user still has to label in the set."""
    if not skipped:
        return 0
    return Trace.objects.pending_review(eval_set, user).filter(pk__in=skipped).count()


class TargetProgress:
    """How far a set's labels are toward its target, for a class with ``target``,
    ``labelled_traces`` and traces by majority label (``positive``, ``negative``)."""

    @property
    def decided(self) -> int:
        """Traces whose majority label is good or bad: the synthesiser learns from these only
        (evals.synthesis.fit ignores neutral examples; ties have no label), so only these
        count toward the target."""
        return self.positive + self.negative

    @property
    def not_counted(self) -> int:
        """Labelled traces left out of the target: neutral or tied majority."""
        return self.labelled_traces - self.decided

    @property
    def remaining(self) -> int:
        return max(self.target - self.decided, 0)

    @property
    def ready(self) -> bool:
        return self.decided >= self.target

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.decided / self.target)) if self.target else 100

    @property
    def imbalance(self) -> str | None:
        return imbalance_warning(self.positive, self.negative)


@dataclass
class ReviewProgress(TargetProgress):
    """The counters the review card shows after every label, from aggregate queries only."""

    target: int
    labelled_traces: int
    mine: int
    # Traces by majority label (``services.resolve_label``; ties in none), as the eval set's
    # page counts them: counting single labels here made the two pages disagree.
    positive: int
    negative: int
    neutral: int
    disagreements: int


def imbalance_warning(positive: int, negative: int) -> str | None:
    """Say so when every decided label goes one way: the eval would learn nothing."""
    if positive + negative < IMBALANCE_MIN_LABELS:
        return None
    if negative == 0:
        return (
            f"All {positive} decided labels are good. Label some bad traces too, "
            "or the eval cannot learn what bad looks like."
        )
    if positive == 0:
        return (
            f"All {negative} decided labels are bad. Label some good traces too, "
            "or the eval cannot learn what good looks like."
        )
    return None


# Raw SQL because it runs on every review card: the ORM spends ~8 ms of CPU compiling this
# aggregate over a grouped subquery, ten times what it spends running the SQL.
_PROGRESS_SQL = """
SELECT COUNT(*), COALESCE(SUM(mine), 0),
       COUNT(*) FILTER (WHERE positive > negative AND positive > neutral),
       COUNT(*) FILTER (WHERE negative > positive AND negative > neutral),
       COUNT(*) FILTER (WHERE neutral > positive AND neutral > negative),
       COUNT(*) FILTER (WHERE positive > 0 AND negative > 0 OR positive > 0 AND neutral > 0
                        OR negative > 0 AND neutral > 0)
FROM (
    SELECT COUNT(*) FILTER (WHERE {user} = %s) AS mine,
           COUNT(*) FILTER (WHERE {rating} = %s) AS positive,
           COUNT(*) FILTER (WHERE {rating} = %s) AS negative,
           COUNT(*) FILTER (WHERE {rating} = %s) AS neutral
    FROM {table}
    WHERE {eval_set} = %s
    GROUP BY {trace}
) AS per_trace
"""


def review_progress(*, eval_set: EvalSet, user=None) -> ReviewProgress:
    """Counters of the set's labels in one aggregate query (``mine``: ``user``'s labels).

    One pass over the set's labels grouped by trace gives the labelled traces, the label
    counts and the disagreements (a trace with two different ratings; counted from the
    per-rating counts, as COUNT(DISTINCT rating) would sort every trace's labels).
    """
    quote = connection.ops.quote_name
    opts = Feedback._meta
    column = {f: quote(opts.get_field(f).column) for f in ("user", "rating", "eval_set", "trace")}
    sql = _PROGRESS_SQL.format(table=quote(opts.db_table), **column)
    ratings = Feedback.Rating
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                getattr(user, "pk", None),
                ratings.POSITIVE.value,
                ratings.NEGATIVE.value,
                ratings.NEUTRAL.value,
                eval_set.pk,
            ],
        )
        traces, mine, positive, negative, neutral, disagreements = cursor.fetchone()
    return ReviewProgress(
        target=eval_set.target_labels,
        labelled_traces=int(traces),
        mine=int(mine),
        positive=int(positive),
        negative=int(negative),
        neutral=int(neutral),
        disagreements=int(disagreements),
    )


@dataclass
class EvalSetSummary(TargetProgress):
    eval_set: EvalSet
    positive: int = 0
    negative: int = 0
    neutral: int = 0
    ties: list[int] = field(default_factory=list)
    labelled_traces: int = 0
    feedback_count: int = 0
    reviewers: int = 0
    agreement: float | None = None
    disagreements: list[int] = field(default_factory=list)
    eval_count: int | None = None
    best_agreement: float | None = None
    # A warning from the evals app when the active eval drifts from new labels.
    drift: str | None = None

    @property
    def target(self) -> int:
        return self.eval_set.target_labels

    @property
    def ties_count(self) -> int:
        return len(self.ties)


def eval_set_summaries(eval_sets: list[EvalSet]) -> dict[int, EvalSetSummary]:
    """Summaries of several eval sets: majority labels, ties, agreement, eval numbers."""
    summaries = {s.pk: EvalSetSummary(eval_set=s) for s in eval_sets}
    if not summaries:
        return summaries
    rows = (
        Feedback.objects.filter(eval_set_id__in=list(summaries))
        .values_list("eval_set_id", "trace_id", "user_id", "rating")
        .order_by()
    )
    by_trace: dict[tuple[int, int], list[str]] = defaultdict(list)
    users: dict[int, set] = defaultdict(set)
    for set_id, trace_id, user_id, rating in rows:
        by_trace[(set_id, trace_id)].append(rating)
        users[set_id].add(user_id)
    pairs: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # set -> [agreeing, total]
    for (set_id, trace_id), ratings in by_trace.items():
        summary = summaries[set_id]
        summary.labelled_traces += 1
        summary.feedback_count += len(ratings)
        label = resolve_label(Counter(ratings))
        if label is None:
            summary.ties.append(trace_id)
        else:
            setattr(summary, label, getattr(summary, label) + 1)
        if len(ratings) > 1:
            counts = Counter(ratings)
            n = len(ratings)
            pairs[set_id][0] += sum(c * (c - 1) // 2 for c in counts.values())
            pairs[set_id][1] += n * (n - 1) // 2
            if len(counts) > 1:
                summary.disagreements.append(trace_id)
    for set_id, summary in summaries.items():
        summary.reviewers = len(users[set_id])
        agreeing, total = pairs[set_id]
        summary.agreement = agreeing / total if total else None
    for set_id, stats in eval_stats(list(summaries)).items():
        if set_id in summaries:
            summaries[set_id].eval_count = stats.get("eval_count")
            summaries[set_id].best_agreement = stats.get("best_agreement")
            summaries[set_id].drift = stats.get("drift")
    return summaries


def eval_set_summary(eval_set: EvalSet) -> EvalSetSummary:
    return eval_set_summaries([eval_set])[eval_set.pk]


def eval_stats(eval_set_ids: list[int]) -> dict[int, dict]:
    """Return each set's number of evals, best agreement and drift warning.

    The figures belong to the evals app, downstream of this one: the composition layer
    above the apps asks it (``iofold.composition.eval_set_stats``).
    """
    # Deferred: the composition layer imports the apps, this one included.
    from iofold.composition import eval_set_stats

    return eval_set_stats(eval_set_ids)


def labelling_progress(workspace) -> tuple[int, int]:
    """Return ``(traces labelled good or bad, target)`` of the workspace's most advanced
    eval set: what counts toward a target (``ReviewProgress.decided``).

    The first active set that reached its target wins; otherwise the one with the most
    such traces. Without sets, ``(0, 10)``.
    """
    best, target = 0, 10
    sets = EvalSet.objects.for_workspace(workspace).active().only("id", "target_labels")
    for eval_set in sets[:20]:
        labelled = review_progress(eval_set=eval_set).decided
        if labelled >= eval_set.target_labels:
            return labelled, eval_set.target_labels
        if labelled > best:
            best, target = labelled, eval_set.target_labels
    return best, target


class LabelledTrace(NamedTuple):
    trace: Trace
    label: str  # "positive", "negative" or "neutral" (neutral: kept, excluded from metrics)
    notes: list[str]


def labelled_examples(eval_set: EvalSet) -> list[LabelledTrace]:
    """Return the set's traces with their majority label and every reviewer's note.

    Ties have no label and are left out; neutral majorities are kept with label
    ``"neutral"`` so callers can show them yet leave them out of metrics.
    """
    ratings: dict[int, list[str]] = defaultdict(list)
    notes: dict[int, list[str]] = defaultdict(list)
    rows = (
        Feedback.objects.filter(eval_set=eval_set)
        .values_list("trace_id", "rating", "note")
        .order_by("trace_id", "created_at", "id")
    )
    for trace_id, rating, note in rows:
        ratings[trace_id].append(rating)
        if note:
            notes[trace_id].append(note)
    labels = {pk: resolve_label(Counter(r)) for pk, r in ratings.items()}
    wanted = [pk for pk, label in labels.items() if label is not None]
    traces = Trace.objects.for_workspace(eval_set.workspace_id).in_bulk(wanted)
    return [LabelledTrace(traces[pk], labels[pk], notes[pk]) for pk in wanted if pk in traces]


@dataclass
class LabelRow:
    trace: Trace
    label: str | None
    feedback: list[Feedback]

    @property
    def is_tie(self) -> bool:
        return self.label is None

    @property
    def disagreement(self) -> bool:
        return len({f.rating for f in self.feedback}) > 1


def label_rows(*, eval_set: EvalSet, limit: int = 200) -> list[LabelRow]:
    """The most recently labelled traces of the set with every reviewer's label and note."""
    recent = list(
        Feedback.objects.filter(eval_set=eval_set)
        .values_list("trace_id", flat=True)
        .order_by("-updated_at", "-id")[: limit * 4]
    )
    trace_ids = list(dict.fromkeys(recent))[:limit]
    # Input and output only, for the snippets: the steps can be most of a payload.
    traces = (
        Trace.objects.for_workspace(eval_set.workspace_id)
        .only(*LIST_FIELDS)
        .annotate(input=F("data__input"), output=F("data__output"))
        .in_bulk(trace_ids)
    )
    by_trace: dict[int, list[Feedback]] = defaultdict(list)
    for fb in (
        Feedback.objects.filter(eval_set=eval_set, trace_id__in=trace_ids)
        .select_related("user")
        .order_by("created_at", "id")
    ):
        by_trace[fb.trace_id].append(fb)
    return [
        LabelRow(
            trace=traces[pk],
            label=resolve_label(Counter(f.rating for f in by_trace[pk])),
            feedback=by_trace[pk],
        )
        for pk in trace_ids
        if pk in traces
    ]


def label_origins(eval_set: EvalSet) -> list[tuple[str, int]]:
    """How many of the set's labels came from each origin, as ``(label, count)``, largest first."""
    names = dict(Feedback.Origin.choices)
    rows = (
        Feedback.objects.filter(eval_set=eval_set)
        .values_list("origin")
        .annotate(n=Count("id"))
        .order_by("-n", "origin")
    )
    return [(names.get(origin, origin), n) for origin, n in rows]


def label_changes(eval_set: EvalSet, *, limit: int = 20) -> list[LabelChange]:
    """The set's latest label changes: who changed whose label on which trace, and when."""
    return list(
        LabelChange.objects.filter(eval_set=eval_set)
        .select_related("labeller", "changed_by", "trace")
        .only(
            "created_at",
            "action",
            "origin",
            "rating_before",
            "rating_after",
            "note_after",
            "labeller__email",
            "changed_by__email",
            "trace__name",
            "trace__external_id",
        )[:limit]
    )


def eval_sets_of_trace(trace: Trace) -> list[EvalSet]:
    """The active eval sets the trace is in: hand-picked into, or matched by the saved filter.

    One query for the active sets, each hand-picked one with whether it holds the trace;
    then one per filter set (a workspace has a handful, not hundreds). Testing every filter
    set in one query of EXISTS columns saves those round trips but costs more CPU in the
    ORM, per set, than they do.
    """
    picks = EvalSetTrace.objects.filter(eval_set=OuterRef("pk"), trace_id=trace.pk)
    sets = list(
        EvalSet.objects.for_workspace(trace.workspace_id)
        .active()
        .annotate(holds_trace=Exists(picks))
    )
    found = [s for s in sets if s.source_kind == EvalSet.SourceKind.MANUAL and s.holds_trace]
    for eval_set in sets:
        if eval_set.source_kind != EvalSet.SourceKind.FILTER:
            continue
        if Trace.objects.in_eval_set(eval_set).filter(pk=trace.pk).exists():
            found.append(eval_set)
    return found


# --- queues and agreement between reviewers -----------------------------------------------

# Inter-reviewer κ under which labels are too close to chance to teach an eval anything.
REVIEWER_KAPPA_BAR = 0.4


@dataclass
class QueueEntry:
    eval_set: EvalSet
    pending: int


def my_queue(workspace, user) -> list[QueueEntry]:
    """The active eval sets with traces assigned to ``user`` that they have not labelled."""
    mine = Feedback.objects.filter(
        eval_set=OuterRef("eval_set"), user=user, trace_id=OuterRef("trace_id")
    )
    rows = (
        LabelAssignment.objects.for_workspace(workspace)
        .filter(assignee=user, eval_set__archived_at__isnull=True)
        .exclude(Exists(mine))
        .values_list("eval_set_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = dict(rows)
    sets = EvalSet.objects.for_workspace(workspace).in_bulk(list(counts))
    return [QueueEntry(eval_set=sets[pk], pending=n) for pk, n in counts.items() if pk in sets]


@dataclass
class ReviewerLine:
    email: str
    labelled: int
    assigned: int
    pending: int
    shared: int  # labels on traces another reviewer labelled too


@dataclass
class ReviewerAgreement:
    kappa: float | None
    shared_traces: int  # traces labelled by two or more reviewers
    target: int
    reviewers: list[ReviewerLine]
    best_eval_agreement: float | None = None
    raw_agreement: float | None = None

    @property
    def target_reached(self) -> bool:
        return self.shared_traces >= self.target

    @property
    def warning(self) -> str | None:
        if self.kappa is not None and self.kappa < REVIEWER_KAPPA_BAR:
            return (
                f"Reviewers agree with each other barely above chance (κ {self.kappa:.2f} on "
                f"{self.shared_traces} shared traces). An eval learnt from these labels cannot "
                "do better: agree on the criteria, then relabel the split traces."
            )
        if (
            self.raw_agreement is not None
            and self.best_eval_agreement is not None
            and self.raw_agreement < self.best_eval_agreement
        ):
            return (
                f"Reviewers agree with each other on {self.raw_agreement:.0%} of shared "
                f"labels, less than the best eval agrees with the labels "
                f"({self.best_eval_agreement:.0%}): the labels, not the eval, are the limit."
            )
        return None


def reviewer_agreement(eval_set: EvalSet, summary=None) -> ReviewerAgreement:
    """κ between the set's reviewers on the traces they both labelled, and each one's queue.

    With more than two reviewers κ is the mean of every pair's, weighted by the traces
    the pair shares. Imported labels (a file, Langfuse scores, LangSmith feedback) are
    recorded under the person who imported them but are not that person's judgement: they
    count in the reviewer's labels, not in κ.
    """
    labels: dict[int, dict[int, str]] = defaultdict(dict)  # user -> trace -> rating
    reviewed: dict[int, dict[int, str]] = defaultdict(dict)  # the same, reviewed in iofold
    emails: dict[int, str] = {}
    for user_id, email, trace_id, rating, origin in Feedback.objects.filter(
        eval_set=eval_set
    ).values_list("user_id", "user__email", "trace_id", "rating", "origin"):
        labels[user_id][trace_id] = rating
        if origin == Feedback.Origin.REVIEW:
            reviewed[user_id][trace_id] = rating
        emails[user_id] = email
    assigned = Counter()
    pending = Counter()
    for user_id, email, trace_id in LabelAssignment.objects.filter(eval_set=eval_set).values_list(
        "assignee_id", "assignee__email", "trace_id"
    ):
        emails.setdefault(user_id, email)
        assigned[user_id] += 1
        if trace_id not in labels.get(user_id, {}):
            pending[user_id] += 1
    users = sorted(emails, key=lambda u: emails[u])
    weighted, weight, agreeing, compared = 0.0, 0, 0, 0
    shared_traces: set[int] = set()
    for i, a in enumerate(users):
        for b in users[i + 1 :]:
            common = reviewed[a].keys() & reviewed[b].keys()
            pairs = [(reviewed[a][t], reviewed[b][t]) for t in common]
            shared_traces |= common
            agreeing += sum(x == y for x, y in pairs)
            compared += len(pairs)
            kappa = cohen_kappa(pairs) if len(pairs) >= 2 else None
            if kappa is not None:
                weighted += kappa * len(pairs)
                weight += len(pairs)
    lines = [
        ReviewerLine(
            email=emails[u],
            labelled=len(labels[u]),
            assigned=assigned[u],
            pending=pending[u],
            shared=len(reviewed[u].keys() & shared_traces),
        )
        for u in users
    ]
    return ReviewerAgreement(
        kappa=weighted / weight if weight else None,
        shared_traces=len(shared_traces),
        target=eval_set.agreement_target,
        reviewers=lines,
        best_eval_agreement=getattr(summary, "best_agreement", None),
        raw_agreement=agreeing / compared if compared else None,
    )
