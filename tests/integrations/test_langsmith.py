"""The LangSmith source end to end: the SDK against a fake LangSmith over real HTTP."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from integrations import services
from integrations.adapters.base import ScoreIn, format_time, parse_time, validate_normalised_trace
from integrations.adapters.langsmith import (
    SELECTS,
    LangSmithAdapter,
    feedback_id,
    normalise_run,
    normalise_runs,
)
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from tests.fakes.langsmith_server import API_KEY, PROJECT_ID, FakeLangSmith
from tests.integrations.helpers import Sleeps
from traces.ingest import canonical_trace, prepare_traces
from traces.models import Conversation, Trace

pytestmark = pytest.mark.django_db

TENANT = "11111111-2222-4333-8444-555555555555"


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing in the service gets to clean up."""


@pytest.fixture
def fake_langsmith():
    started = []

    def _start(traces: int = 0, **kwargs):
        fake = FakeLangSmith(traces=traces, **kwargs).start()
        started.append(fake)
        return fake

    yield _start
    for fake in started:
        fake.stop()


def connect(workspace, fake, **options):
    return services.create_integration(
        workspace=workspace,
        kind=Integration.Kind.LANGSMITH,
        name="LangSmith prod",
        host=fake.url,
        public_key="",
        secret_key=API_KEY,
        options={"project": "default", **options},
    )


def sync(integration, *, sleeps=None, page_size=10, on_page=None):
    run = services.start_sync(integration=integration)
    adapter = services.get_adapter(
        integration, sleep=sleeps if sleeps is not None else Sleeps(), page_size=page_size
    )
    return services.run_sync(run_id=run.pk, adapter=adapter, on_page=on_page)


def synced(integration):
    return Trace.objects.filter(integration=integration)


def queries(fake, path="/api/v2/runs/query"):
    return [body for method, p, body, _ in fake.requests if p == path]


def test_a_sync_reads_every_trace_with_its_runs(workspace, fake_langsmith):
    fake = fake_langsmith(traces=25)
    integration = connect(workspace, fake)
    run = sync(integration)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.created_count, run.updated_count, run.failed_count, run.pages) == (25, 0, 0, 3)
    assert synced(integration).count() == 25
    assert set(synced(integration).values_list("source", flat=True)) == {"langsmith"}
    trace = synced(integration).get(external_id=str(uuid.UUID(int=10))).data
    assert [s["type"] for s in trace["steps"]] == ["chain", "llm", "tool", "retriever"]
    root, llm = trace["steps"][0], trace["steps"][1]
    assert root["parent_id"] is None and llm["parent_id"] == root["id"]
    assert llm["model"] == "gpt-4o-mini" and llm["usage"] == {"input": 12, "output": 5}
    assert root["error"] == "ValueError: boom"  # every tenth trace failed
    assert trace["session_id"] == "s-0" and trace["tags"] == ["prod"]
    assert trace["metadata"]["env"] == "prod" and trace["cost"] == 0.0003
    assert trace["latency_ms"] == 3000.0
    integration.refresh_from_db()
    assert (integration.status, integration.sync_cursor) == (Integration.Status.OK, "")
    assert integration.watermark == max(t.timestamp for t in synced(integration))


def test_later_pages_add_their_turns_to_the_conversations_earlier_pages_opened(
    workspace, fake_langsmith
):
    # 25 traces in three threads (s-0, s-1, s-2), read newest first in pages of 10: every
    # page adds turns to all three conversations.
    fake = fake_langsmith(traces=25)
    integration = connect(workspace, fake)
    anchors_after_first_page = {}

    def first_anchors(run, pages):
        if pages == 1:
            anchors_after_first_page.update(
                Conversation.objects.for_workspace(workspace).values_list("external_id", "anchor")
            )

    run = sync(integration, on_page=first_anchors)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.pages == 3
    conversations = Conversation.objects.for_workspace(workspace)
    assert sorted(c.external_id for c in conversations) == ["s-0", "s-1", "s-2"]
    for conversation in conversations:
        turns = synced(integration).filter(conversation=conversation)
        times = sorted(turns.values_list("timestamp", flat=True))
        assert conversation.turn_count == turns.count() == len(times) > 3
        assert (conversation.started_at, conversation.last_activity_at) == (times[0], times[-1])
        assert conversation.cost == pytest.approx(sum(t.cost for t in turns))
        assert conversation.has_error == turns.filter(has_error=True).exists()
        # The labels live on the anchor: set from the first page, kept by the later ones.
        assert conversation.anchor_id == anchors_after_first_page[conversation.external_id]
        assert turns.filter(pk=conversation.anchor_id).exists()


def _lc_dump(kind, content, **extra):
    """A LangChain message as LangSmith stores a LangGraph run's state: its model dump."""
    return {"content": content, "additional_kwargs": {}, "type": kind, "id": None, **extra}


def test_a_langgraph_threads_turns_read_as_what_the_user_and_the_agent_said(
    login, workspace, owner, fake_langsmith
):
    """A LangGraph agent's root runs hold LangChain messages (``type`` human / ai / tool,
    content as text or parts, or serialised): the conversation page and the conversation
    an eval receives show what was said, not the messages' JSON."""
    from django.urls import reverse

    from traces.conversations import conversation_dict, conversation_turns

    fake = fake_langsmith(traces=4)  # traces 0 and 3 are the turns of thread s-0
    first, second = fake.runs[str(uuid.UUID(int=4))], fake.runs[str(uuid.UUID(int=1))]
    call = {"name": "lookup_order", "args": {"order": 7}, "id": "call_1", "type": "tool_call"}
    first["inputs"] = {"messages": [{"role": "user", "content": "Where is order 7?"}]}
    first["outputs"] = {
        "messages": [
            _lc_dump("human", "Where is order 7?"),
            _lc_dump("ai", "", tool_calls=[call]),
            _lc_dump("tool", '{"status": "shipped"}', tool_call_id="call_1"),
            _lc_dump("ai", [{"type": "text", "text": "It shipped on Monday."}]),
        ]
    }
    serialised_human = {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "HumanMessage"],
        "kwargs": {"content": [{"type": "text", "text": "And order 8?"}], "type": "human"},
    }
    second["inputs"] = {"messages": [serialised_human]}
    second["outputs"] = {
        "messages": [
            *first["outputs"]["messages"],
            _lc_dump("human", "And order 8?"),
            _lc_dump("AIMessageChunk", "Order 8 is on its way."),
        ]
    }
    integration = connect(workspace, fake)
    assert sync(integration).status == SyncRun.Status.SUCCEEDED

    conversation = Conversation.objects.for_workspace(workspace).get(external_id="s-0")
    said = [
        (m["role"], m["content"])
        for m in conversation_dict(
            conversation, [t.data for t in conversation_turns(conversation)]
        )["messages"]
    ]
    assert said == [
        ("user", "Where is order 7?"),
        ("assistant", "It shipped on Monday."),
        ("user", "And order 8?"),
        ("assistant", "Order 8 is on its way."),
    ]
    page = login(owner).get(
        reverse(
            "traces:conversation_detail", kwargs={"slug": workspace.slug, "pk": conversation.pk}
        )
    )
    turns = [(t.user, t.assistant) for t in page.context["turns"]]
    assert turns == [
        ("Where is order 7?", "It shipped on Monday."),
        ("And order 8?", "Order 8 is on its way."),
    ]
    assert "additional_kwargs" not in page.content.decode()


def test_a_malformed_trace_fails_alone_and_the_rest_of_its_page_is_stored(
    workspace, fake_langsmith
):
    # Traces are checked on the thread that fetches pages, apart from the one writing them.
    fake = fake_langsmith(traces=12)
    fake.runs[str(uuid.UUID(int=5))]["inputs"] = {"question": "a\x00b"}  # NUL: unstorable
    integration = connect(workspace, fake)

    run = sync(integration)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.created_count, run.failed_count, run.pages) == (11, 1, 2)
    assert not synced(integration).filter(external_id=str(uuid.UUID(int=5))).exists()
    assert synced(integration).count() == 11


@pytest.mark.parametrize("cost", ["nan", "NaN", "inf", "-Infinity", 10**400])
def test_a_cost_that_is_no_finite_number_is_no_cost(workspace, fake_langsmith, cost):
    # JSON cannot hold NaN or infinity: the trace was refused whole for its cost.
    fake = fake_langsmith(traces=2)
    root = str(uuid.UUID(int=1))
    fake.runs[root]["total_cost"] = cost
    llm = next(r for r in fake.runs.values() if r["trace_id"] == root and r["run_type"] == "llm")
    llm["total_cost"] = cost
    integration = connect(workspace, fake)

    run = sync(integration)

    assert (run.status, run.created_count, run.failed_count) == (SyncRun.Status.SUCCEEDED, 2, 0)
    trace = synced(integration).get(external_id=root)
    assert trace.cost is None and trace.data["cost"] is None
    assert not any("cost" in step["metadata"] for step in trace.data["steps"])


def test_a_name_that_is_no_text_is_stored_as_text(workspace, fake_langsmith):
    fake = fake_langsmith(traces=2)
    root = str(uuid.UUID(int=1))
    fake.runs[root]["name"] = 42
    llm = next(r for r in fake.runs.values() if r["trace_id"] == root and r["run_type"] == "llm")
    llm["name"] = ["Chat", 1]
    integration = connect(workspace, fake)

    run = sync(integration)

    assert (run.status, run.created_count, run.failed_count) == (SyncRun.Status.SUCCEEDED, 2, 0)
    trace = synced(integration).get(external_id=root)
    assert trace.name == "42" and trace.data["name"] == "42"
    assert [s["name"] for s in trace.data["steps"]][:2] == ["42", "['Chat', 1]"]


def test_langsmith_pages_are_not_checked_against_the_schema_again(
    workspace, fake_langsmith, monkeypatch
):
    # The normaliser builds to the schema (next test): preparing a page skips the check.
    def refuse(trace, **kwargs):
        raise AssertionError("a LangSmith trace went through the schema check")

    monkeypatch.setattr("traces.ingest.validate_normalised_trace", refuse)
    fake = fake_langsmith(traces=3)
    run = sync(connect(workspace, fake))
    assert (run.status, run.created_count) == (SyncRun.Status.SUCCEEDED, 3), run.error


MALFORMED = [None, "", " ", 0, 7, -1.5, True, False, [], ["x", 1], {}, {"a": [1]}, "text"]
ROOT_RUN = {
    "id": "r1", "name": "agent", "run_type": "CHAIN", "status": "SUCCESS",
    "start_time": "2026-03-01T09:30:05.123456Z", "end_time": "2026-03-01T09:30:08Z",
    "error": None, "inputs": {"q": 1}, "outputs": {"a": 2}, "extra": {"metadata": {}},
    "metadata": {"session_id": "s"}, "parent_run_ids": [], "trace_id": "r1",
    "thread_id": "s", "dotted_order": "20260301T093005123456Zr1", "is_root": True,
    "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "total_cost": 0.1,
    "tags": ["t"],
}  # fmt: skip
CHILD_RUN = {
    **ROOT_RUN, "id": "c1", "name": "ChatOpenAI", "run_type": "LLM", "parent_run_ids": ["r1"],
    "dotted_order": "20260301T093005123456Zr1.20260301T093006Zc1", "is_root": False,
    "extra": {"invocation_params": {"model": "m"}}, "metadata": {"ls_model_name": "m"},
}  # fmt: skip


@pytest.mark.parametrize("which", ["root", "child"])
@pytest.mark.parametrize("field", sorted(set(ROOT_RUN) - {"id", "start_time", "end_time"}))
def test_whatever_a_run_holds_its_trace_passes_the_schema_check(which, field):
    """What ``TracePage.checked`` claims: malformed runs still make valid, canonical traces
    (names are written out as text); a time that is no date raises (the next tests) and an
    empty id is refused when preparing."""
    for value in MALFORMED:
        root, child = dict(ROOT_RUN), dict(CHILD_RUN)
        (root if which == "root" else child)[field] = value
        trace = normalise_runs(root, [child])
        assert validate_normalised_trace(trace) == [], (field, value)
        assert canonical_trace(trace) == trace, (field, value)  # nothing left to fill in


def test_tags_or_parent_ids_that_are_no_list_are_read_as_one_value():
    root = {**ROOT_RUN, "tags": "prod"}
    child = {**CHILD_RUN, "parent_run_ids": "r1", "tags": 7}
    trace = normalise_runs(root, [child])
    assert trace["tags"] == ["prod"]
    step = {s["id"]: s for s in trace["steps"]}["c1"]
    assert step["parent_id"] == "r1"
    assert step["metadata"]["tags"] == [7]


def test_a_tree_of_runs_becomes_the_trace_a_user_sees():
    """Everything the trace page shows of a run tree, pinned: steps in tree order, their
    errors, tokens, costs, tags and metadata; the runs' costs add up when the root has none."""
    root = {**ROOT_RUN, "total_cost": None, "metadata": {"session_id": "s", "user_id": "u"}}
    tool = {
        "id": "t1", "name": "search", "run_type": "tool", "error": "timeout",
        "parent_run_ids": ["r1"], "dotted_order": "20260301T093005123456Zr1.20260301T093007Zt1",
        "start_time": "2026-03-01T09:30:07Z", "end_time": "2026-03-01T09:30:07.5Z",
        "inputs": {"query": "q"}, "outputs": None, "total_cost": "0.25", "tags": "slow",
    }  # fmt: skip
    child = {**CHILD_RUN, "total_cost": 0.5, "prompt_tokens": 10, "completion_tokens": None}
    trace = normalise_runs(root, [tool, child])
    assert trace == {
        "id": "r1", "name": "agent", "timestamp": "2026-03-01T09:30:05.123Z",
        "input": {"q": 1}, "output": {"a": 2},
        "steps": [
            {"id": "r1", "parent_id": None, "type": "chain", "name": "agent",
             "input": {"q": 1}, "output": {"a": 2}, "error": None, "model": None,
             "usage": {"input": 1, "output": 2}, "start_time": "2026-03-01T09:30:05.123Z",
             "end_time": "2026-03-01T09:30:08.000Z",
             "metadata": {"session_id": "s", "user_id": "u", "langsmith_run_type": "chain",
                          "tags": ["t"]}},
            {"id": "c1", "parent_id": "r1", "type": "llm", "name": "ChatOpenAI",
             "input": {"q": 1}, "output": {"a": 2}, "error": None, "model": "m",
             "usage": {"input": 10, "output": 0}, "start_time": "2026-03-01T09:30:05.123Z",
             "end_time": "2026-03-01T09:30:08.000Z",
             "metadata": {"ls_model_name": "m", "langsmith_run_type": "llm", "cost": 0.5,
                          "tags": ["t"]}},
            {"id": "t1", "parent_id": "r1", "type": "tool", "name": "search",
             "input": {"query": "q"}, "output": None, "error": "timeout", "model": None,
             "usage": None, "start_time": "2026-03-01T09:30:07.000Z",
             "end_time": "2026-03-01T09:30:07.500Z",
             "metadata": {"langsmith_run_type": "tool", "cost": 0.25, "tags": ["slow"]}},
        ],
        "metadata": {"session_id": "s", "user_id": "u"}, "tags": ["t"], "user_id": "u",
        "session_id": "s", "latency_ms": 2876.544, "cost": 0.75,
    }  # fmt: skip


def test_a_trace_of_an_empty_id_is_refused_even_when_checked():
    trace = normalise_runs({**ROOT_RUN, "id": " "}, [])
    batch = prepare_traces([trace], checked=True)
    assert (batch.failed, batch.traces) == (1, {})
    assert "'id' must not be empty" in batch.errors[0][1]


def test_the_v2_query_names_its_fields_and_its_start(workspace, fake_langsmith):
    fake = fake_langsmith(traces=3)
    sync(connect(workspace, fake))
    first = queries(fake)[0]
    assert first["selects"] == SELECTS
    assert first["project_ids"] == [PROJECT_ID]
    assert first["is_root"] is True and first["page_size"] == 10
    children = [q for q in queries(fake) if q.get("is_root") is False][0]
    roots = [str(uuid.UUID(int=n)) for n in (1, 2, 3)]
    assert children["filter"] == "or(" + ", ".join(f'eq(trace_id, "{i}")' for i in roots) + ")"
    assert children["selects"] == SELECTS
    # The server reads one day back unless told; the first sync looks 30 days back.
    low = datetime.fromisoformat(first["min_start_time"].replace("Z", "+00:00"))
    assert datetime.now(UTC) - low > timedelta(days=29)


def test_a_page_of_many_traces_reads_their_runs_a_few_traces_at_a_time(
    workspace, fake_langsmith, monkeypatch
):
    monkeypatch.setattr("integrations.adapters.langsmith.adapter.TRACES_PER_RUNS_QUERY", 4)
    fake = fake_langsmith(traces=10)
    integration = connect(workspace, fake)
    run = sync(integration)
    assert (run.status, run.created_count, run.pages) == (SyncRun.Status.SUCCEEDED, 10, 1)
    children = [q for q in queries(fake) if q.get("is_root") is False]
    assert [q["filter"].count("eq(trace_id") for q in children] == [4, 4, 2]
    assert {len(t.data["steps"]) for t in synced(integration)} == {4}


def test_a_second_sync_rereads_only_the_overlap(workspace, fake_langsmith):
    fake = fake_langsmith(traces=12, spacing=timedelta(minutes=10))
    integration = connect(workspace, fake)
    sync(integration)
    fake.add_trace(datetime.now(UTC) - timedelta(minutes=5), 100)
    integration.refresh_from_db()
    run = sync(integration)
    # 15 minutes before the newest trace of the last sync: it and the one 10 minutes older.
    assert (run.created_count, run.unchanged_count) == (1, 2)
    low = [q for q in queries(fake) if q.get("is_root")][-1]["min_start_time"]
    assert low == format_time(integration.watermark - timedelta(minutes=15))


def test_a_killed_sync_resumes_from_its_cursor(workspace, fake_langsmith):
    fake = fake_langsmith(traces=25)
    integration = connect(workspace, fake)

    def die_after_first_page(run, pages):
        raise WorkerKilled

    with pytest.raises(WorkerKilled):
        sync(integration, on_page=die_after_first_page)
    integration.refresh_from_db()
    assert integration.sync_cursor and synced(integration).count() == 10
    SyncRun.objects.update(status=SyncRun.Status.FAILED)
    before = len(queries(fake))
    run = sync(integration)
    assert (run.created_count, run.unchanged_count, run.resumed) == (15, 0, True)
    assert synced(integration).count() == 25
    resumed = queries(fake)[before]
    assert resumed["cursor"] == "10"


def test_runs_still_pending_are_polled_again(workspace, fake_langsmith):
    fake = fake_langsmith(traces=5)
    finishing = fake.add_trace(datetime.now(UTC) - timedelta(minutes=30), 50, pending_reads=1)
    running = fake.add_trace(datetime.now(UTC) - timedelta(minutes=40), 51, pending_reads=99)
    integration = connect(workspace, fake)
    run = sync(integration)
    assert run.created_count == 6
    ids = set(synced(integration).values_list("external_id", flat=True))
    assert finishing in ids and running not in ids
    repoll = [q for q in queries(fake) if q.get("ids")]
    assert sorted(repoll[0]["ids"]) == sorted([finishing, running])
    # The running trace holds the watermark back: the next sync reads it again.
    integration.refresh_from_db()
    started = datetime.fromisoformat(fake.runs[running]["start_time"].replace("Z", "+00:00"))
    assert integration.watermark - timedelta(minutes=15) < started
    fake.pending[running] = 0
    run = sync(integration)
    assert run.created_count == 1 and running in set(
        synced(integration).values_list("external_id", flat=True)
    )


def test_a_429_waits_for_retry_after(workspace, fake_langsmith):
    fake = fake_langsmith(traces=3)
    fake.rate_limit_next, fake.retry_after = 2, "7"
    sleeps = Sleeps()
    run = sync(connect(workspace, fake), sleeps=sleeps)
    assert run.status == SyncRun.Status.SUCCEEDED and run.created_count == 3
    assert sleeps == [7.0, 7.0]


@pytest.mark.parametrize("header", ["soon", "nan", "inf"])
def test_a_retry_after_that_cannot_be_read_waits_the_backoff(workspace, fake_langsmith, header):
    fake = fake_langsmith(traces=3)
    fake.rate_limit_next, fake.retry_after = 2, header
    sleeps = Sleeps()
    run = sync(connect(workspace, fake), sleeps=sleeps)
    assert run.status == SyncRun.Status.SUCCEEDED and run.created_count == 3
    assert len(sleeps) == 2 and all(0 < s <= 60 for s in sleeps)


def test_rate_limits_that_never_end_fail_the_run_for_now(workspace, fake_langsmith):
    fake = fake_langsmith(traces=3)
    integration = connect(workspace, fake)
    fake.rate_limit_next = 100
    run = sync(integration)
    assert run.status == SyncRun.Status.FAILED
    assert run.error == "LangSmith rate-limited the project lookup; the next sync tries again."
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ERROR


def test_an_older_server_is_read_through_the_legacy_query(workspace, fake_langsmith):
    fake = fake_langsmith(traces=25, legacy_only=True)
    integration = connect(workspace, fake)
    run = sync(integration)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.created_count, run.pages) == (25, 3)
    assert len(queries(fake)) == 1  # tried once, then the legacy query only
    legacy = queries(fake, "/api/v1/runs/query")[0]
    assert legacy["session"] == [PROJECT_ID] and legacy["select"]
    trace = synced(integration).get(external_id=str(uuid.UUID(int=1))).data
    assert [s["type"] for s in trace["steps"]] == ["chain", "llm", "tool", "retriever"]


def test_feedback_is_written_once_whatever_the_resends(workspace, fake_langsmith):
    fake = fake_langsmith(traces=2)
    integration = connect(workspace, fake)
    scores = [
        ScoreIn(id="e7-a", trace_id=str(uuid.UUID(int=1)), name="helpful", value=True),
        ScoreIn(
            id="e7-b", trace_id=str(uuid.UUID(int=2)), name="helpful", value=False, comment="No."
        ),
    ]
    first = services.deliver_scores(integration=integration, scores=scores)
    again = services.deliver_scores(integration=integration, scores=scores)
    assert first.delivered == again.delivered == [0, 1] and not again.failed
    assert len(fake.feedback) == 2
    written = fake.feedback[feedback_id(scores[1])]
    assert written["key"] == "helpful" and written["score"] == 0 and written["comment"] == "No."
    assert written["run_id"] == str(uuid.UUID(int=2)) and written["session_id"] == PROJECT_ID
    assert feedback_id(scores[1]) == feedback_id(
        ScoreIn(id="e7-b", trace_id=str(uuid.UUID(int=2)), name="other", value=True)
    )


def test_a_wrong_key_says_so(workspace, fake_langsmith):
    fake = fake_langsmith(traces=2)
    with pytest.raises(IntegrationError) as err:
        services.check_connection(
            kind="langsmith",
            host=fake.url,
            public_key="",
            secret_key="lsv2_pt_wrong",
            options={"project": "default"},
        )
    assert err.value.code == "auth"
    assert err.value.message.startswith("LangSmith rejected the API key (401)")
    integration = connect(workspace, fake)
    Integration.objects.filter(pk=integration.pk).update(secret_key="lsv2_pt_wrong")
    integration.refresh_from_db()
    run = sync(integration)
    integration.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED
    assert integration.status == Integration.Status.AUTH_FAILED


def test_a_connection_check_finds_the_project_in_the_workspace(workspace, fake_langsmith):
    fake = fake_langsmith()
    integration = connect(workspace, fake, tenant_id=TENANT.upper())
    info = services.test_connection(integration=integration)
    assert services.connection_message(info) == "Connected to project “default”."
    assert integration.options == {"project": "default", "tenant_id": TENANT}
    headers = fake.requests[-1][3]
    assert headers["X-Tenant-Id"] == TENANT and headers["X-API-Key"] == API_KEY
    with pytest.raises(IntegrationError, match="No LangSmith project is named “nope”"):
        services.check_connection(
            kind="langsmith",
            host=fake.url,
            public_key="",
            secret_key=API_KEY,
            options={"project": "nope"},
        )


@pytest.mark.parametrize(
    ("secret_key", "options", "message"),
    [
        ("", {"project": "default"}, "Enter the API key."),
        (API_KEY, {}, "Enter the LangSmith project to read traces from."),
        (API_KEY, {"project": "p", "tenant_id": "x"}, "The workspace id is a UUID"),
    ],
)
def test_settings_are_checked_before_saving(workspace, secret_key, options, message):
    with pytest.raises(IntegrationError, match=message):
        services.create_integration(
            workspace=workspace,
            kind="langsmith",
            name="LangSmith",
            host="https://api.smith.langchain.com",
            public_key="",
            secret_key=secret_key,
            options=options,
        )


def test_the_key_is_stored_encrypted_and_never_in_a_repr(workspace, fake_langsmith):
    fake = fake_langsmith()
    integration = connect(workspace, fake)
    adapter = services.get_adapter(integration)
    assert isinstance(adapter, LangSmithAdapter)
    assert API_KEY not in repr(adapter) and API_KEY not in str(integration)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_key FROM integrations_integration WHERE id = %s", [integration.pk]
        )
        assert API_KEY not in cursor.fetchone()[0]


def test_the_servers_environment_never_picks_the_workspace(workspace, fake_langsmith, monkeypatch):
    monkeypatch.setenv("LANGSMITH_TENANT_ID", TENANT)
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_pt_from_the_environment")
    fake = fake_langsmith()
    services.test_connection(integration=connect(workspace, fake))
    headers = fake.requests[-1][3]
    assert "X-Tenant-Id" not in headers and headers["X-API-Key"] == API_KEY


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-03-01T09:30:05.123456Z", "2026-03-01T09:30:05.123Z"),
        ("2026-03-01T09:30:05.999999+00:00", "2026-03-01T09:30:05.999Z"),
        ("2026-03-01T09:30:05.123456", "2026-03-01T09:30:05.123Z"),  # naive is UTC
        ("2026-03-01T11:30:05.123456+02:00", "2026-03-01T09:30:05.123Z"),
        ("2026-03-01T09:30:05Z", "2026-03-01T09:30:05.000Z"),
        ("2026-03-01T09:30:05", "2026-03-01T09:30:05.000Z"),
        ("2026-03-01T09:30:05.120+00:00", "2026-03-01T09:30:05.120Z"),
        ("2026-03-01T09:30:05.1Z", "2026-03-01T09:30:05.100Z"),
        (None, None),
    ],
)
def test_run_times_are_stored_in_utc_to_the_millisecond(sent, stored):
    run = {"id": "r1", "run_type": "llm", "start_time": sent, "end_time": sent}
    step = normalise_run(run, known_ids={"r1"})
    assert (step["start_time"], step["end_time"]) == (stored, stored)
    assert stored == format_time(parse_time(sent))


@pytest.mark.parametrize("sent", ["2026-02-30T09:30:05.123456Z", "2026-02-30T09:30:05Z"])
def test_a_run_time_that_is_no_date_is_refused(sent):
    run = {"id": "r1", "run_type": "llm", "start_time": sent}
    with pytest.raises(ValueError, match="day is out of range"):
        normalise_run(run, known_ids={"r1"})
