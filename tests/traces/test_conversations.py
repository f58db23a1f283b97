"""Conversations: grouping at ingest from each source's id field, completion and resume."""

import datetime as dt
import uuid

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from integrations.adapters.langfuse.normalise import normalise_rows
from integrations.adapters.langsmith.normalise import normalise_runs
from integrations.adapters.openai import normalise_completion
from integrations.adapters.openai_agents import merge_trace
from integrations.models import Integration
from integrations.otlp.receiver import receive_spans
from iofold.pipeline import ingest_traces
from tests.integrations.otlp_helpers import Recorder, protobuf_body, semconv_agent_trace
from tests.traces import tau2
from tests.traces.factories import EvalSetFactory, arriving_live, trace_data
from traces.conversations import complete_idle_conversations
from traces.models import Conversation, EvalSet, Trace

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _turn(n: int, session: str | None, *, minutes: int = 0, **extra):
    data = trace_data(n)
    data.update(
        id=f"turn-{n}",
        session_id=session,
        timestamp=(T0 + dt.timedelta(minutes=minutes)).isoformat(),
        **extra,
    )
    return data


def _ingest(workspace, traces, source="upload", integration=None):
    with arriving_live(workspace, traces):
        return ingest_traces(
            workspace=workspace, source=source, traces=traces, integration=integration
        )


def _only_conversation(workspace) -> Conversation:
    conversation = Conversation.objects.for_workspace(workspace).get()
    assert conversation.turns.count() == conversation.turn_count
    return conversation


def test_upload_session_id_groups_turns_in_order(workspace):
    _ingest(workspace, [_turn(2, "s-1", minutes=3), _turn(1, "s-1"), _turn(3, None)])
    _ingest(workspace, [_turn(4, "s-1", minutes=5)])

    conversation = _only_conversation(workspace)
    assert conversation.external_id == "s-1"
    assert conversation.turn_count == 3
    assert conversation.started_at == T0
    assert conversation.last_activity_at == T0 + dt.timedelta(minutes=5)
    assert list(conversation.turns.order_by("timestamp").values_list("external_id", flat=True)) == [
        "turn-1",
        "turn-2",
        "turn-4",
    ]
    assert Trace.objects.get(external_id="turn-3").conversation is None
    assert not conversation.is_complete


def test_figures_sum_the_turns_and_the_anchor_is_set_once(workspace):
    """Turns, first and last activity, errors and cost come from all turns of each batch."""
    _ingest(
        workspace,
        [
            _turn(1, "s-1", minutes=5, cost=0.5),
            _turn(2, "s-1", minutes=10, cost=0.25, steps=trace_data(2, error="boom")["steps"]),
            _turn(3, "s-2", minutes=7, cost=None),
        ],
    )
    first = Trace.objects.get(external_id="turn-1")
    # A later batch brings an earlier turn: the figures move, the anchor (labels) stays.
    _ingest(workspace, [_turn(4, "s-1", minutes=0, cost=1.0)])

    figures = {
        c.external_id: (
            c.turn_count,
            c.started_at,
            c.last_activity_at,
            c.has_error,
            c.cost,
            c.anchor_id,
        )
        for c in Conversation.objects.for_workspace(workspace)
    }
    assert figures == {
        "s-1": (3, T0, T0 + dt.timedelta(minutes=10), True, 1.75, first.pk),
        "s-2": (
            1,
            T0 + dt.timedelta(minutes=7),
            T0 + dt.timedelta(minutes=7),
            False,
            None,
            Trace.objects.get(external_id="turn-3").pk,
        ),
    }


def _figures(conversation: Conversation) -> tuple:
    return (
        conversation.turn_count,
        conversation.started_at,
        conversation.last_activity_at,
        conversation.has_error,
        conversation.cost,
    )


def _counted(conversation: Conversation) -> tuple:
    """The figures counted afresh from the conversation's stored turns."""
    turns = list(conversation.turns.all())
    costs = [t.cost for t in turns if t.cost is not None]
    return (
        len(turns),
        min(t.timestamp for t in turns),
        max(t.timestamp for t in turns),
        any(t.has_error for t in turns),
        sum(costs) if costs else None,
    )


def _erring(n: int, session: str, **extra):
    return _turn(n, session, steps=trace_data(n, error="boom")["steps"], **extra)


def test_figures_built_batch_by_batch_match_one_batch(workspace):
    """A conversation that grows over many syncs has the figures of one synced at once."""

    def turns(session, base):
        # (minutes, cost, error) of each turn; the earliest comes first, an earlier-than-
        # the-rest turn later, an error and the only costs last.
        spec = [(0, None, False), (50, None, False), (20, None, False), (90, 0.5, True)]
        spec += [(10, 0.25, False), (60, None, False)]
        make = {False: _turn, True: _erring}
        return [
            make[error](base + i, session, minutes=minutes, cost=cost)
            for i, (minutes, cost, error) in enumerate(spec)
        ]

    whole, pieces = turns("whole", 100), turns("pieces", 200)
    _ingest(workspace, whole)
    for batch in (pieces[:2], pieces[2:3], pieces[3:5], pieces[5:]):
        _ingest(workspace, batch)
        # Before any cost is known it is none, not zero.
        conversation = Conversation.objects.for_workspace(workspace).get(external_id="pieces")
        assert _figures(conversation) == _counted(conversation)
    # Another that never learns a cost.
    for batch in (
        [_turn(300, "free", minutes=5, cost=None)],
        [_turn(301, "free", minutes=1, cost=None)],
    ):
        _ingest(workspace, batch)

    conversations = {c.external_id: c for c in Conversation.objects.for_workspace(workspace)}
    assert _figures(conversations["pieces"]) == _figures(conversations["whole"])
    assert _figures(conversations["whole"]) == (
        6, T0, T0 + dt.timedelta(minutes=90), True, 0.75
    )  # fmt: skip
    assert _figures(conversations["free"]) == (
        2, T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=5), False, None
    )  # fmt: skip
    # Both anchored on their earliest turn; one arriving later and earlier still does not
    # take the anchor (the labels) from the turn that had it.
    anchors = {c: conversations[c].anchor.external_id for c in conversations}
    assert anchors == {"whole": "turn-100", "pieces": "turn-200", "free": "turn-300"}


def test_resent_turns_give_exact_figures(workspace):
    """A re-sent turn whose time, cost or error changed moves the figures it set."""
    _ingest(
        workspace,
        [
            _turn(1, "s-1", minutes=0, cost=0.5),
            _erring(2, "s-1", minutes=10, cost=0.25),
            _turn(3, "s-2", minutes=0, cost=1.0),
        ],
    )
    first = Trace.objects.get(external_id="turn-1").pk
    # The first turn moves after the others and loses its cost, the error is fixed, a turn
    # is added; another conversation only grows in the same batch.
    _ingest(
        workspace,
        [
            _turn(1, "s-1", minutes=30, cost=None),
            _turn(2, "s-1", minutes=10, cost=0.25),
            _turn(4, "s-1", minutes=5, cost=2.0),
            _turn(5, "s-2", minutes=7, cost=None),
        ],
    )

    conversations = {c.external_id: c for c in Conversation.objects.for_workspace(workspace)}
    for conversation in conversations.values():
        assert _figures(conversation) == _counted(conversation)
    assert _figures(conversations["s-1"]) == (
        3, T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=30), False, 2.25
    )  # fmt: skip
    assert conversations["s-1"].anchor_id == first
    assert _figures(conversations["s-2"]) == (2, T0, T0 + dt.timedelta(minutes=7), False, 1.0)


def _listed(client, workspace) -> dict[str, tuple]:
    """The conversation list as a user reads it: turns, last activity, error, cost."""
    page = client.get(_page("conversation_list", workspace)).context["page"]
    return {
        c.external_id: (c.turn_count, c.last_activity_at, c.has_error, c.cost)
        for c in page.conversations
    }


def _shown_turns(client, workspace, conversation: Conversation) -> int:
    """How many turns the conversation's own page shows."""
    html = client.get(_page("conversation_detail", workspace, pk=conversation.pk)).content
    return html.decode().count('data-testid="turn"')


def test_conversation_pages_write_times_sources_and_pauses_as_trace_pages_do(
    login, workspace, owner
):
    _ingest(
        workspace,
        [_turn(1, "s-1"), _turn(2, "s-1", minutes=17), _turn(3, "s-1", minutes=142)],
    )
    conversation = _only_conversation(workspace)
    client = login(owner)

    detail = client.get(_page("conversation_detail", workspace, pk=conversation.pk))
    listing = client.get(_page("conversation_list", workspace)).content.decode()

    page = detail.content.decode()
    assert "2026-11-30 12:00 → 2026-11-30 14:22 UTC · Upload · 3 turns" in page
    assert "+17 min" in page and "+2 h 5 min" in page  # pauses since the turn before
    assert "<td>2026-11-30 14:22</td>" in listing and "<td>Upload</td>" in listing


def test_turns_moved_to_another_conversation_leave_both_as_counted(login, workspace, owner):
    """A re-sent turn whose session id changed leaves its old conversation for the new one."""
    _ingest(
        workspace,
        [
            _turn(1, "a", minutes=0, cost=0.5),
            _erring(2, "a", minutes=10, cost=0.25),
            _turn(3, "a", minutes=20, cost=None),
            _turn(4, "b", minutes=5, cost=1.0),
        ],
    )
    # The first turn (the anchor, where a's labels live) and the erring one move to b.
    _ingest(workspace, [_turn(1, "b", minutes=0, cost=0.5), _erring(2, "b", minutes=10, cost=0.25)])

    client = login(owner)
    assert _listed(client, workspace) == {
        "a": (1, T0 + dt.timedelta(minutes=20), False, None),
        "b": (3, T0 + dt.timedelta(minutes=10), True, 1.75),
    }
    conversations = {c.external_id: c for c in Conversation.objects.for_workspace(workspace)}
    for conversation in conversations.values():
        assert _figures(conversation) == _counted(conversation)
        assert _shown_turns(client, workspace, conversation) == conversation.turn_count
    # a is anchored on its earliest remaining turn; b keeps the anchor it had.
    assert conversations["a"].anchor.external_id == "turn-3"
    assert conversations["b"].anchor.external_id == "turn-4"


def test_a_conversation_whose_turns_all_moved_is_no_longer_listed(login, workspace, owner):
    _ingest(workspace, [_erring(1, "a", minutes=0, cost=0.5), _turn(2, "b", minutes=5, cost=None)])
    _ingest(workspace, [_erring(1, "b", minutes=0, cost=0.5)])

    client = login(owner)
    assert _listed(client, workspace) == {"b": (2, T0 + dt.timedelta(minutes=5), True, 0.5)}
    emptied = Conversation.objects.for_workspace(workspace).get(external_id="a")
    assert (emptied.turn_count, emptied.has_error, emptied.cost, emptied.anchor) == (
        0, False, None, None
    )  # fmt: skip
    assert _shown_turns(client, workspace, emptied) == 0
    # Idle, it is not completed (nor judged) as a conversation without turns.
    swept = complete_idle_conversations(now=T0 + dt.timedelta(days=1))
    assert swept == {workspace.pk: [Conversation.objects.get(external_id="b").pk]}

    # Sent back, the turn brings it back as it was.
    _ingest(workspace, [_erring(1, "a", minutes=0, cost=0.5)])
    assert _listed(client, workspace) == {
        "a": (1, T0, True, 0.5),
        "b": (1, T0 + dt.timedelta(minutes=5), False, None),
    }
    emptied.refresh_from_db()
    assert emptied.anchor.external_id == "turn-1"
    # Sent again without a session id, it leaves it once more.
    _ingest(workspace, [_erring(1, None, minutes=0, cost=0.5)])
    assert list(_listed(client, workspace)) == ["b"]


def _page_labels(client, workspace, conversation: Conversation) -> list[tuple[str, str]]:
    """The labels the conversation's page shows: (eval set, rating)."""
    page = client.get(_page("conversation_detail", workspace, pk=conversation.pk))
    return [(label.eval_set.name, label.rating) for label in page.context["feedback"]]


def _page_state(client, workspace, conversation: Conversation) -> str:
    """The conversation's state as its page says it."""
    html = client.get(_page("conversation_detail", workspace, pk=conversation.pk)).content
    return html.decode().split("<dt>State</dt><dd>")[1].split("</dd>")[0]


def test_a_conversations_labels_stay_with_it_when_its_first_turn_moves(login, workspace, owner):
    """What a conversation set wrote on a conversation's first turn (pick, label, review
    assignment, verdict) stays the conversation's when that turn moves to another: its new
    first turn takes it, and the label history says so. A trace set's label of the turn
    stays on the turn."""
    from django.urls import reverse
    from django.utils.html import strip_tags

    from evals.models import Eval, EvalExecution
    from traces.assignments import assign_trace
    from traces.models import LabelAssignment
    from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback

    _ingest(workspace, [_turn(1, "a"), _turn(2, "a", minutes=10), _turn(3, "a", minutes=20)])
    turns = {t.external_id: t for t in Trace.objects.for_workspace(workspace)}
    first = turns["turn-1"]
    chats = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit=EvalSet.Unit.CONVERSATION
    )
    singles = create_eval_set(workspace=workspace, name="Turns", criteria="good")
    add_traces_to_eval_set(eval_set=chats, trace_ids=[turns["turn-3"].pk])
    add_traces_to_eval_set(eval_set=singles, trace_ids=[first.pk])
    record_feedback(eval_set=chats, trace=first, user=owner, rating="negative", note="asked twice")
    record_feedback(eval_set=singles, trace=first, user=owner, rating="positive")
    assign_trace(eval_set=chats, trace=first, reviewer_id=owner.pk, assigned_by=owner)
    version = Eval.objects.create(
        workspace=workspace, eval_set=chats, version=1, code="def eval_fn(c):\n    return False"
    )
    EvalExecution.objects.create(workspace=workspace, eval=version, trace=first, passed=False)
    client = login(owner)
    matrix_url = reverse("evals:matrix", kwargs={"slug": workspace.slug, "pk": chats.pk})

    def matrix() -> list[tuple]:
        rows = client.get(matrix_url).context["matrix"].rows
        return [(r.trace.pk, r.label, [c.state for c in r.cells]) for r in rows]

    assert matrix() == [(first.pk, "negative", ["agree"])]

    # The first turn, re-sent under another session id, starts conversation b.
    _ingest(workspace, [_turn(1, "b")])

    a, b = (Conversation.objects.get(external_id=key) for key in ("a", "b"))
    assert (a.anchor, b.anchor) == (turns["turn-2"], first)
    assert _page_labels(client, workspace, a) == [("Chats", "negative")]
    assert _page_labels(client, workspace, b) == []  # the turn's label in Turns is its own
    # a is still the set's one conversation, labelled, judged and in the reviewer's queue.
    assert list(Trace.objects.in_eval_set(chats)) == [a.anchor]
    assert matrix() == [(a.anchor_id, "negative", ["agree"])]
    assert list(LabelAssignment.objects.values_list("trace", flat=True)) == [a.anchor_id]
    detail = client.get(_page("evalset_detail", workspace, pk=chats.pk)).content.decode()
    detail = " ".join(strip_tags(detail).split())
    assert "1 conversation labelled good or bad, of the 10 targeted" in detail
    assert f"iofold moved {owner.email}'s label to {a.anchor}, its conversation's" in detail
    # Its trace set still holds the turn, labelled as it was.
    assert [(t, lb) for t, lb in Trace.objects.in_eval_set(singles).values_list(
        "external_id", "feedback__rating"
    )] == [("turn-1", "positive")]  # fmt: skip


def test_moving_anchors_costs_the_same_queries_for_2_conversations_or_20(workspace, owner):
    """Labels follow moved anchors set-based: a fixed number of queries per batch."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from evals.models import Eval
    from traces.models import Feedback
    from traces.services import create_eval_set, record_feedback

    chats = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit=EvalSet.Unit.CONVERSATION,
        source_kind=EvalSet.SourceKind.FILTER,
    )  # fmt: skip
    Eval.objects.create(workspace=workspace, eval_set=chats, version=1, code="def eval_fn(c): 1")

    def moving(first: int, conversations: int) -> int:
        session = f"c{first}-"
        turns = [_turn(first + n, f"{session}{n % conversations}", minutes=n) for n in range(40)]
        _ingest(workspace, turns)
        for conversation in Conversation.objects.filter(external_id__startswith=session):
            record_feedback(
                eval_set=chats, trace=conversation.anchor, user=owner, rating="positive"
            )
        # Each conversation's first turn (its anchor) moves to a conversation of its own.
        anchors = [dict(t, session_id=f"moved-{t['id']}") for t in turns[:conversations]]
        with CaptureQueriesContext(connection) as captured:
            _ingest(workspace, anchors)
        seconds = [t["id"] for t in turns[conversations : 2 * conversations]]
        labelled = Feedback.objects.filter(eval_set=chats, trace__external_id__in=seconds)
        assert labelled.count() == conversations
        return len(captured)

    assert moving(1000, 2) == moving(2000, 20)


def test_a_conversation_whose_ending_turn_moved_out_is_open_again(login, workspace, owner):
    """Complete by an end marker, a conversation whose marked turn moves to another is open
    again (until idle, then complete and judged once more); the marked turn ends the one
    it joined. One whose newest remaining turn carries a marker too stays complete."""
    end = {"metadata": {"conversation_end": True}}
    _ingest(workspace, [_turn(1, "a"), _turn(2, "a", minutes=10, **end)])
    _ingest(workspace, [_turn(3, "c", **end), _turn(4, "c", minutes=10, **end)])
    client = login(owner)
    a, c = (Conversation.objects.get(external_id=key) for key in ("a", "c"))
    assert _page_state(client, workspace, a) == "complete (end marker)"

    _ingest(workspace, [_turn(2, "b", minutes=10, **end), _turn(4, "d", minutes=10, **end)])

    b, d = (Conversation.objects.get(external_id=key) for key in ("b", "d"))
    assert _page_state(client, workspace, a) == "open"
    assert _page_state(client, workspace, b) == "complete (end marker)"
    assert _page_state(client, workspace, c) == "complete (end marker)"
    assert _page_state(client, workspace, d) == "complete (end marker)"
    swept = complete_idle_conversations(now=T0 + dt.timedelta(days=1))
    assert swept == {workspace.pk: [a.pk]}
    a.refresh_from_db()
    assert (_page_state(client, workspace, a), a.completion_count) == ("complete", 2)


def test_a_new_conversation_carries_its_source_and_key_and_is_open(workspace):
    _ingest(workspace, [_turn(1, "s1")], source="api")

    conversation = _only_conversation(workspace)
    assert (conversation.source, conversation.source_key, conversation.integration) == (
        "api",
        "api",
        None,
    )
    assert (conversation.completion_count, conversation.ended_at) == (0, None)
    assert not conversation.is_complete


def test_same_session_id_in_two_workspaces_or_sources_is_two_conversations(workspace):
    from tests.factories import WorkspaceFactory

    other = WorkspaceFactory()
    _ingest(workspace, [_turn(1, "shared")])
    _ingest(workspace, [_turn(2, "shared")], source="api")
    _ingest(other, [_turn(3, "shared")])
    assert Conversation.objects.for_workspace(workspace).count() == 2
    assert Conversation.objects.for_workspace(other).get().turn_count == 1


def test_langfuse_session_id(workspace):
    rows = [
        {"id": f"obs-{n}", "type": "SPAN", "name": "root", "startTime": T0.isoformat()}
        for n in range(2)
    ]
    traces = [
        normalise_rows(
            f"lf-{n}",
            [rows[n]],
            header={"id": f"lf-{n}", "timestamp": T0.isoformat(), "sessionId": "lf-session"},
        )
        for n in range(2)
    ]
    _ingest(workspace, traces, source="langfuse")
    assert _only_conversation(workspace).external_id == "lf-session"


@pytest.mark.parametrize("key", ["session_id", "thread_id", "conversation_id"])
def test_langsmith_thread_metadata(workspace, key):
    traces = [
        normalise_runs(
            {
                "id": str(uuid.uuid4()),
                "name": "agent",
                "run_type": "chain",
                "start_time": T0.isoformat(),
                "end_time": T0.isoformat(),
                "extra": {"metadata": {key: "ls-thread"}},
            },
            [],
        )
        for _ in range(2)
    ]
    _ingest(workspace, traces, source="langsmith")
    conversation = _only_conversation(workspace)
    assert (conversation.external_id, conversation.turn_count) == ("ls-thread", 2)


def test_openai_agents_group_id(workspace):
    traces = [
        merge_trace(
            None,
            f"trace_{n:032x}",
            {"object": "trace", "id": f"trace_{n:032x}", "workflow_name": "w", "group_id": "g-7"},
            {},
            now=T0,
        )
        for n in range(3)
    ]
    _ingest(workspace, traces, source="openai")
    assert _only_conversation(workspace).external_id == "g-7"


def test_openai_stored_completion_metadata(workspace):
    traces = [
        normalise_completion(
            {
                "id": f"chatcmpl-{n}",
                "created": int(T0.timestamp()),
                "model": "gpt-4o",
                "metadata": {"conversation_id": "chat-9"},
                "choices": [{"message": {"role": "assistant", "content": "hi"}}],
            },
            [{"role": "user", "content": "hello"}],
        )
        for n in range(2)
    ]
    _ingest(workspace, traces, source="openai")
    assert _only_conversation(workspace).external_id == "chat-9"


def test_otlp_conversation_id(workspace):
    integration = Integration.objects.create(
        workspace=workspace, kind=Integration.Kind.OTLP, name="OTel", host=""
    )
    recorder = Recorder()
    semconv_agent_trace(recorder)
    semconv_agent_trace(recorder, answer="Anything else?")
    request = ExportTraceServiceRequest.FromString(protobuf_body(recorder.take()))
    receive_spans(integration=integration, request=request)

    conversation = _only_conversation(workspace)
    assert (conversation.external_id, conversation.turn_count) == ("conv-42", 2)
    assert conversation.integration == integration


def test_otlp_end_marker_in_the_root_spans_metadata_or_tags(workspace):
    """OpenTelemetry carries the end marker as OpenInference does metadata and tags: the
    root span's ``metadata`` JSON or its ``tag.tags``."""
    integration = Integration.objects.create(
        workspace=workspace, kind=Integration.Kind.OTLP, name="OTel", host=""
    )
    recorder = Recorder()
    for session, marker in [
        ("by-metadata", None),
        ("by-metadata", ("metadata", '{"conversation_end": true, "plan": "pro"}')),
        ("by-tag", ("tag.tags", ["conversation:end"])),
        ("not-ended", ("metadata", '{"conversation_end": false}')),
    ]:
        with recorder.tracer.start_as_current_span("turn") as span:
            span.set_attribute("session.id", session)
            if marker:
                span.set_attribute(*marker)
    request = ExportTraceServiceRequest.FromString(protobuf_body(recorder.take()))
    receive_spans(integration=integration, request=request)

    conversations = Conversation.objects.for_workspace(workspace)
    assert {c.external_id: (c.turn_count, c.is_complete) for c in conversations} == {
        "by-metadata": (2, True),
        "by-tag": (1, True),
        "not-ended": (1, False),
    }


def test_idle_completion_and_resume(workspace):
    _ingest(workspace, [_turn(1, "s"), _turn(2, "s", minutes=1)])
    conversation = _only_conversation(workspace)

    # 29 minutes after the last turn: still open; 31: complete.
    assert complete_idle_conversations(T0 + dt.timedelta(minutes=30)) == {}
    done = complete_idle_conversations(T0 + dt.timedelta(minutes=32))
    assert done == {workspace.pk: [conversation.pk]}
    conversation.refresh_from_db()
    assert conversation.is_complete and conversation.completion_count == 1
    # A second sweep does not complete it again.
    assert complete_idle_conversations(T0 + dt.timedelta(minutes=90)) == {}

    # A trace of the conversation changing in place does not reopen it; a new turn does.
    changed = _turn(2, "s", minutes=1, output="edited")
    _ingest(workspace, [changed])
    conversation.refresh_from_db()
    assert conversation.is_complete
    _ingest(workspace, [_turn(3, "s", minutes=120)])
    conversation.refresh_from_db()
    assert not conversation.is_complete and conversation.turn_count == 3

    complete_idle_conversations(T0 + dt.timedelta(minutes=160))
    conversation.refresh_from_db()
    assert conversation.is_complete and conversation.completion_count == 2


def test_idle_time_follows_the_workspaces_conversation_eval_sets(workspace):
    EvalSetFactory(workspace=workspace, unit=EvalSet.Unit.CONVERSATION, conversation_idle_minutes=5)
    _ingest(workspace, [_turn(1, "s")])
    assert complete_idle_conversations(T0 + dt.timedelta(minutes=6)) != {}


def test_end_marker_completes_at_ingest_and_a_later_turn_reopens(workspace):
    result = _ingest(
        workspace,
        [_turn(1, "s"), _turn(2, "s", minutes=1, metadata={"conversation_end": True})],
    )
    conversation = _only_conversation(workspace)
    assert result.completed_conversation_ids == [conversation.pk]
    assert conversation.is_complete and conversation.ended_at == T0 + dt.timedelta(minutes=1)

    _ingest(workspace, [_turn(3, "s", minutes=2, tags=["conversation:end"])])
    conversation.refresh_from_db()
    assert conversation.is_complete and conversation.completion_count == 2

    _ingest(workspace, [_turn(4, "s", minutes=3)])
    conversation.refresh_from_db()
    assert not conversation.is_complete and conversation.ended_at is None


def test_tau2_conversations_split_into_turns_regroup(workspace):
    records = tau2.load(limit=3)
    turns = [turn for record in records for turn in tau2.split(record)]
    _ingest(workspace, turns)

    conversations = Conversation.objects.for_workspace(workspace)
    assert sorted(conversations.values_list("external_id", flat=True)) == sorted(
        r["id"] for r in records
    )
    for record in records:
        conversation = conversations.get(external_id=record["id"])
        assert conversation.turn_count == len(tau2.split(record)) > 1
        assert conversation.has_error == any(s["error"] for s in record["steps"])
        assert conversation.is_complete == bool(record["metadata"]["ended_by_user_stop"])


# --- pages ------------------------------------------------------------------------------


def _page(name, workspace, **kwargs):
    from django.urls import reverse

    return reverse(f"traces:{name}", kwargs={"slug": workspace.slug, **kwargs})


@pytest.fixture
def tau2_conversation(workspace):
    record = tau2.load(limit=1)[0]
    _ingest(workspace, tau2.split(record))
    return record, Conversation.objects.for_workspace(workspace).get()


def test_conversation_page_reads_like_a_chat(login, workspace, owner, tau2_conversation):
    record, conversation = tau2_conversation
    response = login(owner).get(_page("conversation_detail", workspace, pk=conversation.pk))
    html = response.content.decode()
    assert response.status_code == 200
    users = [s["output"] for s in record["steps"] if s["name"] == "user"]
    # Every customer message is shown, in order, as a user turn.
    positions = [html.index(m.replace("'", "&#x27;").replace('"', "&quot;")[:40]) for m in users]
    assert positions == sorted(positions)
    assert html.count('data-testid="turn"') == conversation.turn_count
    assert "find_user_id_by_name_zip" in html  # the tools each turn called


def test_only_those_who_can_label_are_offered_to_label_a_conversation(
    login, workspace, owner, viewer, tau2_conversation
):
    from traces.services import add_traces_to_eval_set, create_eval_set

    _, conversation = tau2_conversation
    eval_set = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit=EvalSet.Unit.CONVERSATION
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[conversation.anchor_id])
    url = _page("conversation_detail", workspace, pk=conversation.pk)

    assert "Label in Chats" in login(owner).get(url).content.decode()
    # A viewer's review page has no label buttons: the link would lead to nothing to do.
    assert "Label in Chats" not in login(viewer).get(url).content.decode()


def test_a_conversation_review_card_describes_the_conversation_not_its_first_turn(
    login, workspace, owner
):
    """The header of a conversation set's card gives the whole conversation's figures (every
    turn's steps, its span, an error in a later turn) and opens the conversation; a trace
    set's card still describes and opens the trace."""
    from django.utils.html import strip_tags

    from traces.services import add_traces_to_eval_set, create_eval_set

    # Only the third turn, 7 minutes in, has an error.
    _ingest(
        workspace,
        [_turn(1, "chat-a"), _turn(2, "chat-a", minutes=3), _erring(3, "chat-a", minutes=7)],
    )
    conversation = _only_conversation(workspace)
    first = conversation.anchor
    steps = sum(t.step_count for t in conversation.turns.all())
    assert steps > first.step_count and not first.has_error
    client = login(owner)

    def card(unit):
        eval_set = create_eval_set(workspace=workspace, name=unit, criteria="good", unit=unit)
        add_traces_to_eval_set(eval_set=eval_set, trace_ids=[first.pk])
        html = client.get(_page("review", workspace, pk=eval_set.pk)).content.decode()
        header = html[html.index('data-testid="review-card"') :].split("</header>", 1)[0]
        return header, " ".join(strip_tags(header).split())

    header, text = card(EvalSet.Unit.CONVERSATION)
    assert "Conversation chat-a" in text
    assert f"12:00 → 2026-11-30 12:07 UTC · Upload · 3 turns over 7 min · {steps} steps" in text
    assert 'class="badge bad">error' in header
    assert _page("conversation_detail", workspace, pk=conversation.pk) in header
    assert "Open conversation" in text and "Open full trace" not in text

    header, text = card(EvalSet.Unit.TRACE)
    assert f"{first.step_count} steps" in text and "turns" not in text
    assert "error" not in header
    assert _page("detail", workspace, pk=first.pk) in header and "Open full trace" in text


def test_a_conversation_cards_compact_view_shows_what_the_conversation_eval_reads(
    login, workspace, owner
):
    """A conversation eval reads the whole conversation, so the card's "what evals read"
    shows every turn, the last included; a trace set's card still shows the compact trace."""
    from traces.services import add_traces_to_eval_set, create_eval_set
    from traces.templatetags.trace_tags import compact_trace

    last_reply = "Parcel three left the depot"
    _ingest(
        workspace,
        [
            _turn(1, "chat-a"),
            _turn(2, "chat-a", minutes=3),
            _turn(3, "chat-a", minutes=7, output=last_reply),
        ],
    )
    first = _only_conversation(workspace).anchor
    client = login(owner)

    def compact_view(unit):
        eval_set = create_eval_set(workspace=workspace, name=unit, criteria="good", unit=unit)
        add_traces_to_eval_set(eval_set=eval_set, trace_ids=[first.pk])
        html = client.get(_page("review", workspace, pk=eval_set.pk)).content.decode()
        return html[html.index('data-testid="compact-view"') :].split("<footer", 1)[0]

    shown = compact_view(EvalSet.Unit.CONVERSATION)
    assert last_reply in shown and "Where is order 3?" in shown
    assert "the whole conversation, 3 turns" in shown

    shown = compact_view(EvalSet.Unit.TRACE)
    compact = compact_trace(first.data)
    assert f"({compact['size']} of {compact['full_size']} characters)" in shown
    assert last_reply not in shown and "Where is order 3?" not in shown


def test_a_conversations_review_sets_cost_the_same_queries_for_1_set_or_5(workspace):
    """The conversation page names the sets labelling it with a fixed number of queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from traces.selectors import conversation_review_sets
    from traces.services import create_eval_set

    _ingest(workspace, [_turn(1, "chat-a"), _turn(2, "chat-a", minutes=3)])
    conversation = _only_conversation(workspace)
    _ingest(workspace, [_turn(9, "chat-b")])
    other = Conversation.objects.for_workspace(workspace).get(external_id="chat-b")

    def add_set(name, anchor_id=None, **kwargs):
        create_eval_set(
            workspace=workspace,
            name=name,
            criteria="good",
            unit=EvalSet.Unit.CONVERSATION,
            trace_ids=[anchor_id] if anchor_id else (),
            **kwargs,
        )

    def named():
        with CaptureQueriesContext(connection) as captured:
            names = sorted(s.name for s in conversation_review_sets(conversation))
        return names, len(captured)

    add_set("Picked", conversation.anchor_id)
    one, one_queries = named()
    assert one == ["Picked"]

    add_set("Picked too", conversation.anchor_id)
    add_set("Every conversation", source_kind=EvalSet.SourceKind.FILTER, saved_filter={})
    add_set("Another chat", other.anchor_id)
    add_set("Empty")
    five, five_queries = named()
    assert five == ["Every conversation", "Picked", "Picked too"]
    assert five_queries == one_queries


def test_a_conversation_sets_finished_review_points_to_conversations(login, workspace, owner):
    """A hand-picked conversation set short of its target says to add conversations (from
    the trace list, where any turn brings its conversation), not traces."""
    from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback

    _ingest(workspace, [_turn(1, "chat-a"), _turn(2, "chat-a", minutes=3)])
    first = _only_conversation(workspace).anchor
    eval_set = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit=EvalSet.Unit.CONVERSATION
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[first.pk])
    record_feedback(eval_set=eval_set, trace=first, user=owner, rating="positive")
    html = login(owner).get(_page("review", workspace, pk=eval_set.pk)).content.decode()

    assert "Add conversations to the set" in html
    assert "(any of its turns brings the whole conversation)" in html
    assert "Add traces" not in html and "Find traces" not in html


def test_turn_steps_load_only_within_the_conversation(login, workspace, owner, tau2_conversation):
    _, conversation = tau2_conversation
    client = login(owner)
    turn = conversation.turns.order_by("timestamp").first()
    response = client.get(
        _page("conversation_turn_steps", workspace, pk=conversation.pk, trace_pk=turn.pk)
    )
    assert response.status_code == 200
    assert response.content.decode().count('data-testid="step"') == turn.step_count
    _ingest(workspace, [_turn(1, None)])
    loose = Trace.objects.get(external_id="turn-1")
    response = client.get(
        _page("conversation_turn_steps", workspace, pk=conversation.pk, trace_pk=loose.pk)
    )
    assert response.status_code == 404


def test_conversation_list_groups_and_filters(login, workspace, owner):
    _ingest(workspace, [_turn(1, "a"), _turn(2, "a", minutes=1), _turn(3, "b", minutes=2)])
    _ingest(workspace, [_turn(4, "c", metadata={"conversation_end": True})])
    client = login(owner)
    listed = client.get(_page("conversation_list", workspace)).context["page"].conversations
    assert [(c.external_id, c.turn_count) for c in listed] == [("b", 1), ("a", 2), ("c", 1)]
    done = client.get(_page("conversation_list", workspace), {"state": "complete"})
    assert [c.external_id for c in done.context["page"].conversations] == ["c"]
    assert "Group by conversation" in client.get(_page("list", workspace)).content.decode()


def test_conversation_list_names_the_filters_it_could_not_read(login, workspace, owner):
    _ingest(workspace, [_turn(1, "a"), _turn(2, "b", metadata={"conversation_end": True})])
    client = login(owner)

    response = client.get(
        _page("conversation_list", workspace), {"has_error": "maybe", "state": "closed"}
    )

    assert len(response.context["page"].conversations) == 2  # neither filter applied
    html = response.content.decode()
    notice = html.split('data-testid="unread-filters">')[1].split("</p>")[0]
    assert "<strong>Errors</strong>: &#x27;maybe&#x27; is not true or false." in notice
    assert "<strong>State</strong>: &#x27;closed&#x27; is not open or complete." in notice


def test_conversation_api_refuses_the_filters_it_could_not_read(api_client, workspace, owner):
    from django.urls import reverse

    _ingest(workspace, [_turn(1, "a")])
    api_client.force_login(owner)
    headers = {"X-Workspace": workspace.slug}
    bad = {"source": "bogus", "has_error": "maybe", "state": "closed", "cursor": "x", "limit": "a"}
    response = api_client.get(reverse("api-conversations"), bad, headers=headers)
    # As the trace list's API: a 400 naming each, not every conversation as if none applied.
    assert response.status_code == 400
    assert set(response.json()) == {"source", "has_error", "state", "cursor", "limit"}
    assert "'closed' is not open or complete." in str(response.json()["state"])
    good = {"source": "upload", "has_error": "false", "state": "open"}
    assert api_client.get(reverse("api-conversations"), good, headers=headers).status_code == 200


def test_conversation_list_filtered_to_nothing_says_no_match_not_none_yet(login, workspace, owner):
    _ingest(workspace, [_turn(1, "a")])  # open, no end marker

    html = login(owner).get(_page("conversation_list", workspace), {"state": "complete"})
    html = html.content.decode()

    assert "No conversations match" in html and "Clear filters" in html
    assert "No conversations yet" not in html


def test_an_empty_conversation_list_says_how_conversations_arrive(login, workspace, owner, viewer):
    upload = f"/w/{workspace.slug}/integrations/upload/"

    html = login(owner).get(_page("conversation_list", workspace)).content.decode()
    seen_by_viewer = login(viewer).get(_page("conversation_list", workspace)).content.decode()

    assert "No conversations yet" in html
    # What groups traces into one, per source, and where to go next: as the trace list.
    assert "share a session, thread or conversation id" in html and "sessionId" in html
    assert f'href="/w/{workspace.slug}/integrations/">Connect a source' in html
    assert f'href="{upload}">Upload a file' in html
    # A viewer cannot upload: the page offers only what they can open.
    assert "Connect a source" in seen_by_viewer and upload not in seen_by_viewer


# --- conversation eval sets ---------------------------------------------------------------


def test_conversation_set_picks_whole_conversations_and_refuses_loose_traces(workspace, owner):
    from traces.exceptions import TraceError
    from traces.services import (
        add_traces_to_eval_set,
        create_eval_set,
        record_feedback,
        update_eval_set,
    )

    _ingest(workspace, [_turn(1, "a"), _turn(2, "a", minutes=1), _turn(3, None)])
    eval_set = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit=EvalSet.Unit.CONVERSATION
    )
    turns = {t.external_id: t for t in Trace.objects.for_workspace(workspace)}
    assert add_traces_to_eval_set(eval_set=eval_set, trace_ids=[turns["turn-2"].pk]) == 1
    assert add_traces_to_eval_set(eval_set=eval_set, trace_ids=[turns["turn-1"].pk]) == 0
    with pytest.raises(TraceError, match="belong to no conversation"):
        add_traces_to_eval_set(eval_set=eval_set, trace_ids=[turns["turn-3"].pk])

    anchor = Conversation.objects.get(external_id="a").anchor
    assert list(Trace.objects.in_eval_set(eval_set)) == [anchor] == [turns["turn-1"]]
    with pytest.raises(TraceError, match="not in the eval set"):
        record_feedback(eval_set=eval_set, trace=turns["turn-2"], user=owner, rating="positive")
    record_feedback(eval_set=eval_set, trace=anchor, user=owner, rating="positive")
    with pytest.raises(TraceError, match="create a new set"):
        update_eval_set(eval_set=eval_set, unit=EvalSet.Unit.TRACE)


def test_eval_set_form_takes_the_unit(login, workspace, owner):
    client = login(owner)
    response = client.post(
        _page("evalset_create", workspace),
        {
            "name": "Chats",
            "criteria": "good",
            "target_labels": 5,
            "source_kind": "filter",
            "unit": "conversation",
            "conversation_idle_minutes": 10,
        },
    )
    assert response.status_code == 302
    eval_set = EvalSet.objects.get(name="Chats")
    assert (eval_set.unit, eval_set.conversation_idle_minutes) == ("conversation", 10)
    bad = client.post(
        _page("evalset_create", workspace),
        {
            "name": "X",
            "criteria": "good",
            "target_labels": 5,
            "source_kind": "filter",
            "unit": "session",
            "conversation_idle_minutes": 0,
        },
    )
    assert bad.status_code == 400 and not EvalSet.objects.filter(name="X").exists()


# --- API ----------------------------------------------------------------------------------


def test_api_lists_reads_and_labels_conversations(api_client, workspace, owner):
    from django.urls import reverse

    from traces.services import create_eval_set

    headers = {"X-Workspace": workspace.slug}
    _ingest(workspace, [_turn(1, "a"), _turn(2, "a", minutes=1), _turn(3, "b", minutes=2)])
    api_client.force_login(owner)

    listed = api_client.get(reverse("api-conversations"), {"limit": 1}, headers=headers).json()
    assert [c["external_id"] for c in listed["results"]] == ["b"] and listed["next_cursor"]
    a = Conversation.objects.get(external_id="a")
    detail = api_client.get(reverse("api-conversation", kwargs={"pk": a.pk}), headers=headers)
    body = detail.json()
    assert body["turn_count"] == 2 and len(body["turn_ids"]) == 2
    assert [m["role"] for m in body["conversation"]["messages"]] == ["user", "assistant"] * 2
    assert body["conversation"]["id"] == "a" and body["conversation"]["is_complete"] is False

    chats = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit="conversation",
        source_kind="filter",
    )  # fmt: skip
    traces_set = create_eval_set(workspace=workspace, name="Traces", criteria="good")
    labels_url = reverse("api-conversation-labels", kwargs={"pk": a.pk})
    posted = api_client.post(
        labels_url, {"eval_set": chats.pk, "rating": "negative", "note": "asked twice"},
        format="json", headers=headers,
    )  # fmt: skip
    assert posted.status_code == 201 and posted.json()["trace"] == a.anchor_id
    refused = api_client.post(
        labels_url, {"eval_set": traces_set.pk, "rating": "negative"}, format="json",
        headers=headers,
    )  # fmt: skip
    assert refused.status_code == 400
    labels = api_client.get(labels_url, headers=headers).json()
    assert [(lb["rating"], lb["note"]) for lb in labels] == [("negative", "asked twice")]
    runs = api_client.get(reverse("api-conversation-runs", kwargs={"pk": a.pk}), headers=headers)
    assert runs.status_code == 200 and runs.json() == []


def test_a_turns_trace_page_links_to_its_conversation(login, workspace, owner, tau2_conversation):
    _, conversation = tau2_conversation
    turn = conversation.turns.first()
    html = login(owner).get(_page("detail", workspace, pk=turn.pk)).content.decode()
    assert _page("conversation_detail", workspace, pk=conversation.pk) in html


def test_conversation_bookkeeping_costs_a_fixed_number_of_queries(workspace):
    """Grouping a batch adds the same few queries whether it holds 2 conversations or 20."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(traces):
        with CaptureQueriesContext(connection) as captured:
            _ingest(workspace, traces)
        return len(captured)

    def batch(first, conversations, session=True):
        return [
            _turn(n, f"s-{n % conversations}" if session else None, minutes=n)
            for n in range(first, first + 40)
        ]

    # Warm: the conversations exist, as in a live sync's later batches.
    _ingest(workspace, batch(0, 20) + batch(1000, 2))
    alone = queries(batch(2000, 1, session=False))
    few, many = queries(batch(3000, 2)), queries(batch(4000, 20))
    assert few == many
    # Lock-and-read, the figures update and re-read: no separate locking read.
    assert many - alone <= 3, many - alone


def test_conversation_set_pages_count_conversations(login, workspace, owner):
    """A conversation set's pages name conversations, not traces, wherever they name items."""
    from django.urls import reverse
    from django.utils.html import strip_tags

    from evals.models import Eval
    from traces.services import create_eval_set, record_feedback

    _ingest(workspace, [_turn(1, "a"), _turn(2, "a", minutes=1), _turn(3, "b", minutes=2)])
    eval_set = create_eval_set(
        workspace=workspace,
        name="Chats",
        criteria="good",
        unit=EvalSet.Unit.CONVERSATION,
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={},
    )
    anchor = Conversation.objects.get(external_id="a").anchor
    record_feedback(eval_set=eval_set, trace=anchor, user=owner, rating="positive")
    Eval.objects.create(
        workspace=workspace, eval_set=eval_set, version=1, code="def eval_fn(c):\n    return True"
    )
    client = login(owner)

    def text(url):
        response = client.get(url)
        assert response.status_code == 200
        return " ".join(strip_tags(response.content.decode()).split())

    detail = text(_page("evalset_detail", workspace, pk=eval_set.pk))
    assert "Review conversations" in detail
    assert "1 conversation labelled good or bad, of the 10 targeted" in detail
    assert "What makes a conversation good" in detail
    assert "Assign unlabelled conversations" in detail
    review = text(_page("review", workspace, pk=eval_set.pk))
    assert "What makes a conversation good" in review
    assert "1 conversation labelled good or bad, of the 10 targeted" in review
    matrix = text(reverse("evals:matrix", kwargs={"slug": workspace.slug, "pk": eval_set.pk}))
    assert "Each labelled conversation against each version" in matrix
    assert "1 labelled conversation" in matrix
    for page in (detail, review, matrix):
        for words in ("labelled trace", "Review traces", "trace good"):
            assert words not in page, page[page.find(words) - 200 : page.find(words) + 50]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "first_session", ["a", None, "unsent"], ids=["from a conversation", "from none", "new"]
)
def test_two_ingests_moving_one_turn_at_once_leave_every_conversation_counted(
    workspace, monkeypatch, first_session
):
    """Ingest X moves a turn to b; ingest Y, which read the turn before X committed, moves
    it on to c. b must not keep counting (and be anchored on) a turn that is now in c."""
    import threading

    from django.db import connection, transaction

    from traces import ingest

    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one transaction at a time: these two cannot interleave")
    first = [] if first_session == "unsent" else [_turn(1, first_session, minutes=0)]
    _ingest(workspace, [*first, _turn(2, "a", minutes=10)])
    x_written, y_read, x_may_commit = threading.Event(), threading.Event(), threading.Event()
    failures = []

    def ingest_x():
        try:
            with transaction.atomic():
                _ingest(workspace, [_turn(1, "b", minutes=0, name="x")])
                x_written.set()
                assert x_may_commit.wait(10)
        except Exception as error:
            failures.append(error)
        finally:
            connection.close()

    def ingest_y():
        try:
            _ingest(workspace, [_turn(1, "c", minutes=0, name="y")])
        except Exception as error:
            failures.append(error)
            y_read.set()
        finally:
            connection.close()

    attach = ingest.attach_conversations

    def attach_after_reading(**kwargs):
        # Y has read the turn's conversation (X's move is not committed yet): X commits now,
        # while Y goes on to lock the conversations it read.
        y_read.set()
        return attach(**kwargs)

    x = threading.Thread(target=ingest_x)
    x.start()
    assert x_written.wait(10)
    monkeypatch.setattr(ingest, "attach_conversations", attach_after_reading)
    y = threading.Thread(target=ingest_y)
    y.start()
    assert y_read.wait(10)
    x_may_commit.set()
    x.join(10)
    y.join(10)
    assert not failures, failures
    assert not x.is_alive() and not y.is_alive()

    turn = Trace.objects.get(workspace=workspace, external_id="turn-1")
    conversations = {c.external_id: c for c in Conversation.objects.for_workspace(workspace)}
    assert turn.conversation == conversations["c"]
    assert (conversations["b"].turn_count, conversations["b"].anchor_id) == (0, None)
    assert (conversations["c"].turn_count, conversations["c"].anchor_id) == (1, turn.pk)
    assert conversations["a"].turn_count == 1
    assert conversations["a"].anchor.external_id == "turn-2"
    for conversation in (conversations["a"], conversations["c"]):
        assert _figures(conversation) == _counted(conversation)


def test_a_long_conversation_shows_its_first_turns_with_show_all(login, workspace, owner):
    """2,000 turns made a 1.4 MB page, sent again with each review card of the conversation:
    the first turns show, each message cut, the rest one click away."""
    from traces.services import add_traces_to_eval_set, create_eval_set
    from traces.templatetags.trace_tags import MAX_SHOWN_TURNS, MAX_TURN_CHARS

    long_answer = "word " * MAX_TURN_CHARS
    turns = [_turn(n, "long", minutes=n) for n in range(MAX_SHOWN_TURNS + 30)]
    turns[1]["output"] = long_answer
    _ingest(workspace, turns)
    conversation = _only_conversation(workspace)
    eval_set = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit=EvalSet.Unit.CONVERSATION
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[conversation.anchor_id])
    client = login(owner)
    page_url = _page("conversation_detail", workspace, pk=conversation.pk)

    for response in (client.get(page_url), client.get(_page("review", workspace, pk=eval_set.pk))):
        html = response.content.decode()
        assert response.status_code == 200
        assert html.count('data-testid="turn"') == MAX_SHOWN_TURNS
        notice = html.split('data-testid="turns-cut">')[1].split("</p>")[0]
        assert f"Showing the first {MAX_SHOWN_TURNS} of {MAX_SHOWN_TURNS + 30} turns." in notice
        assert f'<a href="{page_url}?full=1"' in notice and "Show all" in notice
        assert long_answer.strip() not in html and long_answer[:3000] in html
    full = client.get(page_url, {"full": "1"}).content.decode()
    assert full.count('data-testid="turn"') == MAX_SHOWN_TURNS + 30
    assert long_answer.strip() in full and 'data-testid="turns-cut"' not in full


def test_a_conversations_labels_are_those_given_to_it_not_to_its_first_turn_alone(
    login, api_client, workspace, owner
):
    """A trace set's label on the turn that anchors a conversation judged that one turn:
    the conversation's page and API list only the labels given to the conversation."""
    from django.urls import reverse

    from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback

    _ingest(workspace, [_turn(1, "a"), _turn(2, "a", minutes=1), _turn(3, "a", minutes=2)])
    conversation = _only_conversation(workspace)
    first, second = conversation_turns_of(conversation)[:2]
    chats = create_eval_set(
        workspace=workspace, name="Chats", criteria="good", unit=EvalSet.Unit.CONVERSATION
    )
    singles = create_eval_set(workspace=workspace, name="Turns", criteria="good")
    add_traces_to_eval_set(eval_set=chats, trace_ids=[first.pk])
    add_traces_to_eval_set(eval_set=singles, trace_ids=[first.pk, second.pk])
    record_feedback(eval_set=singles, trace=first, user=owner, rating="negative", note="rude")
    record_feedback(eval_set=singles, trace=second, user=owner, rating="negative")

    assert _page_labels(login(owner), workspace, conversation) == []
    html = login(owner).get(_page("conversation_detail", workspace, pk=conversation.pk))
    assert "Not labelled yet." in html.content.decode()

    record_feedback(eval_set=chats, trace=first, user=owner, rating="positive", note="solved")
    assert _page_labels(login(owner), workspace, conversation) == [("Chats", "positive")]
    api_client.force_login(owner)
    listed = api_client.get(
        reverse("api-conversation-labels", kwargs={"pk": conversation.pk}),
        headers={"X-Workspace": workspace.slug},
    ).json()
    assert [(lb["eval_set"], lb["rating"], lb["note"]) for lb in listed] == [
        (chats.pk, "positive", "solved")
    ]


def conversation_turns_of(conversation: Conversation) -> list[Trace]:
    return list(conversation.turns.order_by("timestamp", "id"))


def test_turns_whose_messages_hold_content_parts_read_as_their_text(api_client, workspace, owner):
    """OpenAI's content parts (text beside an image) and Anthropic's reply blocks (text
    beside a tool_use): the conversation an eval receives holds the text, not the JSON."""
    from django.urls import reverse

    asked = {
        "messages": [
            {"role": "system", "content": "You are a support agent."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Is this parcel mine?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ]
    }
    replied = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look it up."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": {"order": 7}},
        ],
    }
    _ingest(workspace, [_turn(1, "a", input=asked, output=replied)])
    conversation = _only_conversation(workspace)

    api_client.force_login(owner)
    body = api_client.get(
        reverse("api-conversation", kwargs={"pk": conversation.pk}),
        headers={"X-Workspace": workspace.slug},
    ).json()
    assert [(m["role"], m["content"]) for m in body["conversation"]["messages"]] == [
        ("user", "Is this parcel mine?\n[image_url]"),
        ("assistant", "Let me look it up."),
    ]


def test_a_conversation_sets_filter_reads_the_whole_conversation(login, workspace, owner):
    """A conversation set saved with a filter holds the conversations the filter describes,
    whichever turn matches it: "with errors" holds a chat whose third turn failed, "without
    errors" only chats where no turn failed; a tag or words on any turn count."""
    from traces.services import create_eval_set

    _ingest(
        workspace,
        [
            _turn(1, "late-error"),
            _turn(2, "late-error", minutes=1),
            _erring(3, "late-error", minutes=2),
            _erring(4, "first-error", minutes=3),
            _turn(5, "first-error", minutes=4),
            _turn(6, "clean", minutes=5),
            _turn(7, "clean", minutes=6, tags=["vip"]),
        ],
    )

    def held(**saved_filter) -> set[str]:
        eval_set = create_eval_set(
            workspace=workspace,
            name=f"Chats {saved_filter}",
            criteria="good",
            unit=EvalSet.Unit.CONVERSATION,
            source_kind=EvalSet.SourceKind.FILTER,
            saved_filter=saved_filter,
        )
        return set(
            Conversation.objects.filter(anchor__in=Trace.objects.in_eval_set(eval_set)).values_list(
                "external_id", flat=True
            )
        )

    assert held() == {"late-error", "first-error", "clean"}
    assert held(has_error="true") == {"late-error", "first-error"}
    assert held(has_error="false") == {"clean"}
    assert held(tag="vip") == {"clean"}
    assert held(tag="vip", has_error="true") == set()
    assert held(source="upload", has_error="true") == {"late-error", "first-error"}


def test_a_tool_call_the_model_asked_for_reaches_the_eval_with_its_arguments_parsed(workspace):
    """Uninstrumented tools show only as the calls a model asked for, their arguments JSON
    text (OpenAI's wire format): the conversation an eval receives holds them as values, as
    it holds the arguments of a tool step."""
    from traces.conversations import conversation_dict, conversation_turns

    asked = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "refund", "arguments": '{"order": 7, "amount": 120}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "note", "arguments": "hi"}},
        ],
    }
    steps = [{**trace_data(1)["steps"][0], "type": "llm", "output": asked}]
    _ingest(workspace, [_turn(1, "a", steps=steps)])
    conversation = _only_conversation(workspace)

    messages = conversation_dict(conversation, [t.data for t in conversation_turns(conversation)])[
        "messages"
    ]
    assert [(c["name"], c["arguments"]) for c in messages[1]["tool_calls"]] == [
        ("refund", {"order": 7, "amount": 120}),
        ("note", "hi"),  # not JSON: the text it is
    ]
