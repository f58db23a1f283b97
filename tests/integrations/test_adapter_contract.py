"""The adapter contract: the sync service works for any source registered by kind."""

import threading
from datetime import UTC, datetime

import pytest

from integrations import adapters, services
from integrations.adapters.base import (
    Adapter,
    Capabilities,
    ConnectionInfo,
    ScoreIn,
    ScorePushResult,
    SourceSettings,
    TracePage,
    invalid_settings,
)
from integrations.adapters.langfuse import LangfuseAdapter
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from traces.models import Trace

pytestmark = pytest.mark.django_db


def _trace(number: int) -> dict:
    return {
        "id": f"t-{number}",
        "name": "chat",
        "timestamp": f"2026-01-01T00:00:{number:02d}.000Z",
        "steps": [],
    }


class MemoryAdapter(Adapter):
    """A source with two pages and a cursor of its own making ("page-1")."""

    kind = "langsmith"
    label = "Memory"
    capabilities = Capabilities(pull=True)
    example_host = "http://memory.example"
    seen: list = []

    @classmethod
    def clean_settings(cls, *, host, public_key="", secret_key="", options=None):
        options = dict(options or {})
        if not options.get("project"):
            raise invalid_settings("Enter the project to read.")
        settings = super().clean_settings(
            host=host, public_key=public_key, secret_key=secret_key, options=options
        )
        return SourceSettings(
            host=settings.host,
            secret_key=settings.secret_key,
            options={"project": options["project"].strip()},
        )

    def __init__(self, *, settings: SourceSettings, **tuning):
        self.settings = settings

    @classmethod
    def from_settings(cls, settings, **tuning):
        return cls(settings=settings, **tuning)

    @staticmethod
    def cursor_progress(cursor: str) -> float:
        return 0.5 if cursor == "page-1" else 0.0

    def test_connection(self):
        return ConnectionInfo(
            project_id="p", project_name=self.settings.options["project"], platform=self.label
        )

    def fetch_traces(self, *, since, until, filters, cursor):
        type(self).seen.append(cursor)
        if cursor is None:
            yield TracePage([_trace(1), _trace(2)], "page-1", None)
        yield TracePage([_trace(3)], None, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def memory_kind(monkeypatch):
    monkeypatch.setitem(adapters.ADAPTERS, "langsmith", f"{__name__}.MemoryAdapter")
    MemoryAdapter.seen = []
    return MemoryAdapter


def make(workspace, **kwargs):
    values = {
        "name": "Memory",
        "kind": "langsmith",
        "host": "http://memory.example/",
        "public_key": "",
        "secret_key": "s3cret",
        "options": {"project": " default "},
        **kwargs,
    }
    return services.create_integration(workspace=workspace, **values)


def test_langfuse_says_what_it_supports():
    assert LangfuseAdapter.capabilities == Capabilities(
        pull=True, push_back=True, conversations=True, receive=False, read_scores=True
    )


def test_the_adapter_of_the_kind_checks_and_tidies_the_settings(workspace, memory_kind):
    integration = make(workspace)
    assert integration.host == "http://memory.example"
    assert integration.options == {"project": "default"}
    with pytest.raises(IntegrationError, match="Enter the project to read."):
        make(workspace, name="Other", options={})


def test_a_mistyped_host_names_the_kinds_example(workspace, memory_kind):
    with pytest.raises(IntegrationError) as err:
        make(workspace, host="memory")
    assert err.value.message == "“memory” is not a URL; use http://memory.example."
    assert err.value.code == "invalid_settings"


def test_an_unknown_kind_is_refused(workspace):
    with pytest.raises(IntegrationError, match="not a kind of source"):
        make(workspace, kind="carrier-pigeon")


def test_the_sync_stores_traces_under_the_integrations_kind(workspace, memory_kind):
    integration = make(workspace)
    run = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert run.status == SyncRun.Status.SUCCEEDED
    assert (run.created_count, run.pages, run.progress) == (3, 2, 1.0)
    sources = set(Trace.objects.filter(integration=integration).values_list("source", flat=True))
    assert sources == {Trace.Source.LANGSMITH}
    integration.refresh_from_db()
    assert integration.watermark == datetime(2026, 1, 1, tzinfo=UTC)
    assert integration.sync_cursor == ""


def test_the_sync_resumes_from_the_adapters_own_cursor(workspace, memory_kind):
    integration = make(workspace)
    Integration.objects.filter(pk=integration.pk).update(sync_cursor="page-1")
    integration.refresh_from_db()
    run = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert memory_kind.seen == ["page-1"]
    assert (run.created_count, run.resumed) == (1, True)


def test_an_option_change_starts_the_next_sync_from_scratch(workspace, memory_kind):
    integration = make(workspace)
    Integration.objects.filter(pk=integration.pk).update(sync_cursor="page-1")
    integration.refresh_from_db()
    services.update_integration(integration=integration, options={"project": "other"})
    integration.refresh_from_db()
    assert (integration.options, integration.sync_cursor) == ({"project": "other"}, "")
    assert integration.secret_key == "s3cret"  # kept: no new one was entered


def test_the_connection_message_names_the_platform(workspace, memory_kind):
    info = services.test_connection(integration=make(workspace))
    assert services.connection_message(info) == "Connected to project “default”."
    versioned = ConnectionInfo("p", "default", server_version="1.2", platform="Memory")
    assert services.connection_message(versioned) == "Connected to project “default” (Memory 1.2)."


def test_a_source_without_push_back_fails_the_delivery_with_a_reason(workspace, memory_kind):
    integration = make(workspace)
    score = ScoreIn(id="s", trace_id="t-1", name="quality", value=True)
    delivery = services.deliver_scores(integration=integration, scores=[score])
    assert delivery.delivered == []
    assert delivery.failed == {0: "Memory does not accept verdicts back."}


def test_a_push_result_counts_nothing_by_default():
    assert ScorePushResult() == ScorePushResult(accepted=0, rejected=0, errors=[])


class DeferredAdapter(MemoryAdapter):
    """Pages whose traces are built from what was fetched only when first read."""

    built_on: list = []

    def fetch_traces(self, *, since, until, filters, cursor):
        fetching = threading.current_thread()

        def build(numbers):
            def traces():
                assert threading.current_thread() is not fetching
                type(self).built_on.append(numbers)
                if numbers == (9,):
                    raise ValueError("a run's time is no date")
                return [_trace(n) for n in numbers]

            return traces

        yield TracePage(build((1, 2)), "page-1", None)
        yield TracePage(build((3,) if cursor else (9,)), None, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def deferred_kind(monkeypatch):
    monkeypatch.setitem(adapters.ADAPTERS, "langsmith", f"{__name__}.DeferredAdapter")
    DeferredAdapter.built_on = []
    return DeferredAdapter


def test_a_page_built_when_read_is_built_once_off_the_thread_that_fetches(workspace, deferred_kind):
    integration = make(workspace)
    integration.sync_cursor = "resume"
    integration.save()
    run = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert (run.status, run.created_count, run.pages) == (SyncRun.Status.SUCCEEDED, 3, 2)
    assert deferred_kind.built_on == [(1, 2), (3,)]


def test_a_page_that_fails_to_build_stops_the_sync_after_the_pages_before_it(
    workspace, deferred_kind
):
    integration = make(workspace)
    with pytest.raises(ValueError, match="no date"):
        services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert Trace.objects.filter(integration=integration).count() == 2
    integration.refresh_from_db()
    assert integration.sync_cursor == "page-1"
