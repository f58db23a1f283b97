"""The OpenAI stored-completions source: the real `openai` SDK against a fake over HTTP."""

import threading
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from integrations import services
from integrations.adapters.base import AdapterError
from integrations.adapters.openai import OpenAIAdapter, encode_cursor
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from tests.fakes.openai_store_server import API_KEY
from traces.models import Trace

pytestmark = pytest.mark.django_db

T0 = int((timezone.now() - timedelta(days=2)).timestamp())


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing in the service gets to clean up."""


def fill(store, count, *, start=0, **kwargs):
    for i in range(start, start + count):
        store.add(f"chatcmpl-{i:05d}", created=T0 + i, **kwargs)


def make(workspace, store, **kwargs):
    return services.create_integration(
        workspace=workspace,
        kind=Integration.Kind.OPENAI,
        name=kwargs.pop("name", "OpenAI prod"),
        host=store.base_url,
        public_key="",
        secret_key=kwargs.pop("secret_key", API_KEY),
        **kwargs,
    )


def sync(integration, *, page_limit=10, on_page=None):
    run = services.start_sync(integration=integration)
    adapter = services.get_adapter(integration, page_limit=page_limit)
    return services.run_sync(run_id=run.pk, adapter=adapter, on_page=on_page)


def synced(integration):
    return Trace.objects.for_workspace(integration.workspace).filter(integration=integration)


def test_the_real_sdk_reads_the_fake_store(openai_store):
    fill(openai_store, 3, metadata={"team": "a"})
    client = openai.OpenAI(api_key=API_KEY, base_url=openai_store.base_url, max_retries=0)
    page = client.chat.completions.list(limit=2, order="desc", metadata={"team": "a"})
    assert [c.id for c in page.data] == ["chatcmpl-00002", "chatcmpl-00001"]
    assert page.has_more is True
    assert [c.id for c in client.chat.completions.list(limit=2)] == [
        "chatcmpl-00000",
        "chatcmpl-00001",
        "chatcmpl-00002",
    ]  # the SDK's auto-paging follows `after`
    messages = client.chat.completions.messages.list("chatcmpl-00001")
    assert [m.content for m in messages.data] == ["Hello"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-wrong", base_url=openai_store.base_url).chat.completions.list()


def test_sync_reads_every_stored_completion_once_then_only_new_ones(openai_store, workspace):
    fill(openai_store, 25, metadata={"session_id": "conv-1"})
    integration = make(workspace, openai_store)

    first = sync(integration)

    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    assert (first.created_count, first.pages) == (25, 3)
    assert synced(integration).count() == 25
    trace = synced(integration).get(external_id="chatcmpl-00007").data
    assert trace["session_id"] == "conv-1"
    assert trace["input"][-1]["content"] == "Hello"
    assert trace["output"] == "Hi there"
    assert trace["steps"][0]["usage"] == {"input": 12, "output": 5}
    assert trace["steps"][0]["model"] == "gpt-4o-mini"
    assert Trace.objects.get(external_id="chatcmpl-00007").source == Trace.Source.OPENAI
    integration.refresh_from_db()
    assert integration.watermark.timestamp() == T0 + 24

    fill(openai_store, 5, start=25)
    before = len(openai_store.requests)
    second = sync(integration)
    assert second.status == SyncRun.Status.SUCCEEDED
    # The newest-first scan stops at the watermark: 5 new ones, the one at it re-read.
    assert (second.created_count, second.unchanged_count) == (5, 1)
    assert synced(integration).count() == 30
    message_reads = [p for p, _ in openai_store.requests[before:] if p.endswith("/messages")]
    assert len(message_reads) == 6


def test_a_killed_sync_resumes_from_its_cursor_with_exact_counts(openai_store, workspace):
    fill(openai_store, 40)
    integration = make(workspace, openai_store)

    def kill(run, pages):
        if pages == 2:
            raise WorkerKilled()

    with pytest.raises(WorkerKilled):
        sync(integration, on_page=kill)
    integration.refresh_from_db()
    assert integration.sync_cursor
    assert 0 < OpenAIAdapter.cursor_progress(integration.sync_cursor) < 0.99
    assert SyncRun.objects.get(integration=integration).progress > 0
    assert synced(integration).count() == 20
    services.reap_stale_runs(older_than=timedelta(0))

    second = sync(integration)

    assert second.status == SyncRun.Status.SUCCEEDED
    assert second.resumed
    assert second.created_count == 20
    assert synced(integration).count() == 40
    integration.refresh_from_db()
    assert integration.watermark.timestamp() == T0 + 39
    assert integration.sync_cursor == ""


def test_metadata_and_model_filters_go_to_the_api(openai_store, workspace):
    fill(openai_store, 6, metadata={"app": "support"})
    fill(openai_store, 4, start=6, metadata={"app": "sales"})
    fill(openai_store, 3, start=10, metadata={"app": "support"}, model="gpt-4.1")
    integration = make(
        workspace,
        openai_store,
        options={"metadata": "app=support", "model": "gpt-4o-mini"},
    )
    assert integration.options == {"metadata": {"app": "support"}, "model": "gpt-4o-mini"}

    run = sync(integration)

    assert run.created_count == 6
    assert set(synced(integration).values_list("external_id", flat=True)) == {
        f"chatcmpl-{i:05d}" for i in range(6)
    }
    listing = [q for p, q in openai_store.requests if p == "/v1/chat/completions"]
    assert all(q["metadata[app]"] == ["support"] and q["model"] == ["gpt-4o-mini"] for q in listing)


def test_tool_calls_become_steps_with_their_results(openai_store, workspace):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
    }
    openai_store.add(
        "chatcmpl-tools",
        created=T0,
        history=[
            {"role": "user", "content": "find x"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"found": true}'},
        ],
        user="and now?",
        tool_calls=[{**call, "id": "call_2", "function": {"name": "send", "arguments": "{}"}}],
    )
    integration = make(workspace, openai_store)
    sync(integration)
    steps = synced(integration).get().data["steps"]
    assert [(s["type"], s["name"], s["parent_id"]) for s in steps] == [
        ("llm", "gpt-4o-mini", None),
        ("tool", "lookup", "chatcmpl-tools"),
        ("tool", "send", "chatcmpl-tools"),
    ]
    assert steps[1]["input"] == {"q": "x"} and steps[1]["output"] == {"found": True}
    assert steps[2]["output"] is None


def test_a_wrong_key_is_a_clear_error_on_test_and_sync(openai_store, workspace):
    fill(openai_store, 3)
    with pytest.raises(IntegrationError) as caught:
        services.check_connection(
            kind=Integration.Kind.OPENAI,
            host=openai_store.base_url,
            public_key="",
            secret_key="sk-bad",
        )
    assert caught.value.code == "auth"
    assert "OpenAI rejected the API key (HTTP 401)" in caught.value.message

    integration = make(workspace, openai_store, secret_key="sk-bad")
    run = sync(integration)
    integration.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED
    assert "OpenAI rejected the API key" in run.error
    assert integration.status == Integration.Status.AUTH_FAILED
    assert "OpenAI rejected the API key" in integration.last_error
    assert synced(integration).count() == 0


def test_connection_check_and_defaults(openai_store, workspace):
    info = services.check_connection(
        kind=Integration.Kind.OPENAI, host=openai_store.base_url, public_key="", secret_key=API_KEY
    )
    assert "Stored completions" in info.project_name
    with pytest.raises(IntegrationError, match="Enter the API key"):
        make(workspace, openai_store, secret_key="")
    with pytest.raises(IntegrationError, match="key=value"):
        make(workspace, openai_store, options={"metadata": "nonsense"})
    integration = services.create_integration(
        workspace=workspace, kind="openai", name="Cloud", host="", public_key="", secret_key="sk-x"
    )
    assert integration.host == "https://api.openai.com/v1"


def test_openai_takes_no_scores_back(openai_store):
    adapter = OpenAIAdapter(host=openai_store.base_url, secret_key=API_KEY)
    assert adapter.capabilities.push_back is False
    assert adapter.capabilities.pull and adapter.capabilities.conversations


def test_the_api_connects_tests_and_edits_an_openai_source(
    openai_store, api_client, workspace, owner
):
    from django.urls import reverse

    from workspaces.services import issue_token

    _, raw = issue_token(workspace=workspace, name="t", created_by=owner, role="admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    created = api_client.post(
        reverse("api-integrations"),
        {
            "name": "OpenAI",
            "kind": "openai",
            "host": openai_store.base_url,
            "secret_key": API_KEY,
            "options": {"metadata": {"app": "support"}},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["kind"], body["public_key"], body["options"]) == (
        "openai",
        "",
        {"metadata": {"app": "support"}},
    )
    assert API_KEY not in created.content.decode()
    pk = body["id"]
    tested = api_client.post(reverse("api-integration-test", args=[pk]))
    assert tested.status_code == 200 and tested.json()["ok"]
    patched = api_client.patch(
        reverse("api-integration", args=[pk]), {"options": {"model": "gpt-4.1"}}, format="json"
    )
    assert patched.json()["options"] == {"model": "gpt-4.1"}
    bad = api_client.patch(
        reverse("api-integration", args=[pk]), {"options": {"metadata": [1]}}, format="json"
    )
    assert bad.status_code == 400
    no_key = api_client.post(
        reverse("api-integrations"), {"name": "x", "kind": "openai"}, format="json"
    )
    assert no_key.status_code == 400


def test_a_first_sync_reads_the_last_30_days_or_from_the_start_date(openai_store, workspace):
    now = int(timezone.now().timestamp())
    for days in (40, 31, 20, 10, 1):
        openai_store.add(f"chatcmpl-{days}d", created=now - days * 86400)
    first = sync(make(workspace, openai_store))
    assert first.created_count == 3
    dated = make(
        workspace,
        openai_store,
        name="since",
        since_date=timezone.now() - timedelta(days=15),
    )
    assert sync(dated).created_count == 2
    cursor = encode_cursor({"after": "x", "current": 50, "floor": 0, "newest": 100})
    assert OpenAIAdapter.cursor_progress(cursor) == 0.5
    assert OpenAIAdapter.cursor_progress("not a cursor") == 0.0


def test_a_list_of_something_else_fails_the_sync_with_its_reason(openai_store, workspace):
    fill(openai_store, 3)
    openai_store.malformed = 1
    integration = make(workspace, openai_store)

    run = sync(integration)

    assert run.status == SyncRun.Status.FAILED
    assert "something other than a list of objects with id, created" in run.error
    assert synced(integration).count() == 0


def test_a_body_that_is_not_json_fails_the_sync_with_its_reason(openai_store, workspace):
    fill(openai_store, 3)
    openai_store.truncated = 1
    integration = make(workspace, openai_store)

    run = sync(integration)

    assert run.status == SyncRun.Status.FAILED
    assert "something other than a list of objects with id, created" in run.error
    assert synced(integration).count() == 0


def test_a_page_failing_after_prefetched_ones_is_reported_and_resumed_from_its_cursor(
    openai_store, workspace
):
    """The sync reads the next pages while it writes one: still, every page commits with
    its own cursor, in order, and a page that fails after read-ahead ones leaves the cursor
    at the last page written."""
    fill(openai_store, 40)
    integration = make(workspace, openai_store)
    read_ahead = threading.Event()
    cursors: list[str] = []

    class FailsOnThirdPage(OpenAIAdapter):
        def fetch_traces(self, **kwargs):
            for number, page in enumerate(super().fetch_traces(**kwargs), 1):
                if number == 3:
                    read_ahead.set()
                    raise AdapterError("page 3 failed", permanent=False, code="server_error")
                cursors.append(page.cursor)
                yield page

    def on_page(run, pages):
        if pages == 1:  # page 3 was reached while page 1 was being written
            assert read_ahead.wait(30)
        assert Integration.objects.get(pk=integration.pk).sync_cursor == cursors[pages - 1]

    run = services.start_sync(integration=integration)
    adapter = FailsOnThirdPage(host=openai_store.base_url, secret_key=API_KEY, page_limit=10)
    failed = services.run_sync(run_id=run.pk, adapter=adapter, on_page=on_page)

    assert failed.status == SyncRun.Status.FAILED
    assert failed.error == "page 3 failed"
    assert (failed.pages, failed.created_count) == (2, 20)
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ERROR
    assert integration.sync_cursor == cursors[1]  # the second page, the last one written
    newest = set(synced(integration).values_list("external_id", flat=True))
    assert newest == {f"chatcmpl-{i:05d}" for i in range(20, 40)}

    resumed = sync(integration)

    assert resumed.status == SyncRun.Status.SUCCEEDED, resumed.error
    assert (resumed.resumed, resumed.created_count, resumed.unchanged_count) == (True, 20, 0)
    assert synced(integration).count() == 40


def test_a_failing_messages_request_fails_its_page_and_the_next_sync_resumes(
    openai_store, workspace
):
    fill(openai_store, 30)
    openai_store.broken_messages["chatcmpl-00015"] = 400  # on the second page (newest first)
    integration = make(workspace, openai_store)

    failed = sync(integration)

    assert failed.status == SyncRun.Status.FAILED
    assert "OpenAI answered HTTP 400: scripted messages failure" in failed.error
    assert (failed.pages, failed.created_count) == (1, 10)
    assert set(synced(integration).values_list("external_id", flat=True)) == {
        f"chatcmpl-{i:05d}" for i in range(20, 30)
    }
    del openai_store.broken_messages["chatcmpl-00015"]
    resumed = sync(integration)
    assert resumed.status == SyncRun.Status.SUCCEEDED, resumed.error
    assert (resumed.resumed, resumed.created_count) == (True, 20)
    trace = synced(integration).get(external_id="chatcmpl-00015").data
    assert trace["input"][-1]["content"] == "Hello"


def test_the_api_connects_openai_without_a_host_as_the_readme_shows(api_client, workspace, owner):
    """README's body has no host: OpenAI's default base URL; Langfuse still needs one."""
    from django.urls import reverse

    from workspaces.services import issue_token

    _, raw = issue_token(workspace=workspace, name="t", created_by=owner, role="admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    options = {"metadata": {"app": "support"}, "model": "gpt-4o-mini"}
    created = api_client.post(
        reverse("api-integrations"),
        {"kind": "openai", "name": "OpenAI", "secret_key": "sk-x", "options": options},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert (created.json()["host"], created.json()["options"]) == (
        "https://api.openai.com/v1",
        options,
    )
    langfuse = api_client.post(
        reverse("api-integrations"),
        {"kind": "langfuse", "name": "LF", "public_key": "pk-lf-1", "secret_key": "sk-lf-1"},
        format="json",
    )
    assert langfuse.status_code == 400
    assert "https://cloud.langfuse.com" in langfuse.content.decode()
    assert not Integration.objects.for_workspace(workspace).filter(name="LF").exists()


@pytest.mark.parametrize("created", [(T0 + 5) * 1000, 10**20, T0 + 5 * 86_400])
def test_a_completion_created_at_no_time_in_seconds_fails_the_sync_with_its_reason(
    openai_store, workspace, created
):
    """A ``created`` in milliseconds (as an OpenAI-compatible store may send) raised
    ValueError out of the sync; one that still fits a date (the year 5000, or days ahead)
    became the watermark, and every later sync skipped what was new."""
    fill(openai_store, 3)
    openai_store.add("chatcmpl-odd", created=created)
    integration = make(workspace, openai_store)

    run = sync(integration)

    assert run.status == SyncRun.Status.FAILED
    assert f"chatcmpl-odd was created at {created}" in run.error
    assert "not a past time in Unix seconds" in run.error
    integration.refresh_from_db()
    assert integration.watermark is None


def test_a_store_whose_clock_runs_ahead_loses_no_completion(openai_store, workspace):
    """A completion stamped an hour ahead made the watermark an hour ahead: the next sync
    began there, and what was created in between, stamped earlier, was never read."""
    now = int(timezone.now().timestamp())
    fill(openai_store, 2)
    openai_store.add("chatcmpl-ahead", created=now + 3600)
    integration = make(workspace, openai_store)
    assert sync(integration).status == SyncRun.Status.SUCCEEDED
    integration.refresh_from_db()
    assert integration.watermark <= timezone.now()

    openai_store.add("chatcmpl-meanwhile", created=now + 60)
    assert sync(integration).status == SyncRun.Status.SUCCEEDED

    ids = set(synced(integration).values_list("external_id", flat=True))
    assert {"chatcmpl-ahead", "chatcmpl-meanwhile"} <= ids and len(ids) == 4


def test_a_stored_completion_marked_as_the_conversations_end_completes_it(openai_store, workspace):
    """OpenAI's metadata holds only strings: "conversation_end": "true" on the last turn
    completes the conversation at once, as the end marker does on the other sources."""
    from traces.models import Conversation

    openai_store.add(
        "chatcmpl-1", created=T0, metadata={"conversation_id": "chat-9"}, user="Refund?"
    )
    openai_store.add(
        "chatcmpl-2",
        created=T0 + 60,
        metadata={"conversation_id": "chat-9", "conversation_end": "true"},
        user="Thanks, bye.",
    )
    openai_store.add(
        "chatcmpl-3",
        created=T0 + 120,
        metadata={"conversation_id": "chat-10", "conversation_end": "false"},
    )
    sync(make(workspace, openai_store))

    conversations = Conversation.objects.for_workspace(workspace)
    ended, other = (conversations.get(external_id=key) for key in ("chat-9", "chat-10"))
    assert (ended.external_id, ended.turn_count, ended.is_complete) == ("chat-9", 2, True)
    assert ended.ended_at is not None and ended.completion_count == 1
    assert (other.external_id, other.is_complete) == ("chat-10", False)
