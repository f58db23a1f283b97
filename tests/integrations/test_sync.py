"""The Langfuse sync end to end at the service layer, against the fake Langfuse over HTTP."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import services
from integrations.models import Integration, SyncRun
from tests.conftest import wait_for
from tests.integrations.helpers import Sleeps
from traces.models import Trace

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing in the service gets to clean up."""


def sync(integration, *, sleeps=None, page_limit=50, on_page=None, **adapter_options):
    run = services.start_sync(integration=integration)
    adapter = services.get_adapter(
        integration,
        sleep=sleeps if sleeps is not None else Sleeps(),
        page_limit=page_limit,
        **adapter_options,
    )
    return services.run_sync(run_id=run.pk, adapter=adapter, on_page=on_page)


def synced(integration):
    return Trace.objects.for_workspace(integration.workspace).filter(integration=integration)


def test_sync_reads_several_pages_into_one_row_per_trace(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=60, observations=5)
    integration = make_integration(fake)

    run = sync(integration, page_limit=50)  # 300 rows: at least 6 API pages

    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.created_count == 60
    assert run.pages >= 2
    assert fake.request_count("/api/public/v2/observations") >= 6
    assert synced(integration).count() == 60
    assert set(synced(integration).values_list("external_id", flat=True)) == {
        fake.trace_id(i) for i in range(60)
    }
    trace = synced(integration).get(external_id=fake.trace_id(7))
    assert trace.step_count == 5
    assert trace.source == "langfuse"
    assert trace.source_key == f"i{integration.pk}"
    assert trace.data["steps"][0]["type"] in {"agent", "llm", "tool", "span", "retriever", "event"}
    integration.refresh_from_db()
    assert integration.status == Integration.Status.OK
    assert integration.sync_cursor == ""
    assert integration.watermark is not None
    assert run.progress == 1.0


def test_langfuse_pages_are_not_checked_against_the_schema_again(
    fake_langfuse, make_integration, monkeypatch
):
    # The normaliser builds to the schema (test_langfuse_adapter): preparing skips the check.
    def refuse(trace, **kwargs):
        raise AssertionError("a Langfuse trace went through the schema check")

    monkeypatch.setattr("traces.ingest.validate_normalised_trace", refuse)
    run = sync(make_integration(fake_langfuse(traces=12)))
    assert (run.status, run.created_count, run.failed_count) == (SyncRun.Status.SUCCEEDED, 12, 0)


def test_resync_updates_changed_traces_and_adds_new_ones_without_duplicates(
    fake_langfuse, make_integration
):
    fake = fake_langfuse(traces=30)
    integration = make_integration(fake)
    sync(integration)

    changed_id = fake.trace_id(29)  # inside the overlap window of the next incremental sync
    fake.update_trace(changed_id, root={"output": '{"answer": "changed"}'})
    new_id = fake.add_trace(start=fake.trace_start(29))
    run = sync(integration)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.created_count == 1
    assert run.updated_count == 1
    assert synced(integration).count() == 31
    assert synced(integration).get(external_id=changed_id).data["output"] == {"answer": "changed"}
    assert synced(integration).filter(external_id=new_id).exists()


def test_unchanged_traces_are_not_rewritten(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=10)
    integration = make_integration(fake)
    sync(integration)
    before = dict(synced(integration).values_list("external_id", "updated_at"))

    Integration.objects.filter(pk=integration.pk).update(watermark=None)  # re-read everything
    integration.refresh_from_db()
    run = sync(integration)

    assert (run.created_count, run.updated_count, run.unchanged_count) == (0, 0, 10)
    assert dict(synced(integration).values_list("external_id", "updated_at")) == before


def test_killed_sync_resumes_from_last_page_with_exact_count(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=120, observations=5)
    integration = make_integration(fake)

    def kill_after_some_traces(run, pages):
        if synced(integration).count() >= 30:
            raise WorkerKilled()

    with pytest.raises(WorkerKilled):
        sync(integration, page_limit=50, on_page=kill_after_some_traces)
    first = SyncRun.objects.get(integration=integration)
    assert first.status == SyncRun.Status.RUNNING  # a killed worker cannot clean up
    partial = synced(integration).count()
    assert 0 < partial < 120
    integration.refresh_from_db()
    assert integration.sync_cursor  # progress survived the kill

    # The heartbeat goes stale; the next "Sync now" fails the dead run and resumes.
    assert services.reap_stale_runs(older_than=timedelta(0)) == 1
    integration.refresh_from_db()
    second = sync(integration, page_limit=50)

    assert second.status == SyncRun.Status.SUCCEEDED
    assert second.resumed
    assert synced(integration).count() == 120
    assert synced(integration).values("external_id").distinct().count() == 120
    first.refresh_from_db()
    assert first.status == SyncRun.Status.FAILED
    assert first.created_count == partial  # counts were committed with their page
    assert first.created_count + second.created_count == 120


def test_redelivered_task_takes_over_a_run_whose_worker_died(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=40)
    integration = make_integration(fake)
    run = services.start_sync(integration=integration)
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )

    adapter = services.get_adapter(integration, sleep=Sleeps())
    finished = services.run_sync(run_id=run.pk, adapter=adapter)

    assert finished.status == SyncRun.Status.SUCCEEDED
    assert finished.resumed
    assert synced(integration).count() == 40


def test_a_live_run_is_not_claimed_twice(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=5)
    integration = make_integration(fake)
    run = services.start_sync(integration=integration)
    assert services.claim_run(run_id=run.pk) is not None

    assert services.claim_run(run_id=run.pk) is None
    assert services.start_sync(integration=integration).pk == run.pk  # one active run


def test_rate_limit_is_waited_out_using_retry_after(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=20)
    integration = make_integration(fake)
    fake.fail_next(429, count=2, retry_after="7")
    sleeps = Sleeps()

    run = sync(integration, sleeps=sleeps)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert sleeps[:2] == [7.0, 7.0]
    assert synced(integration).count() == 20


def test_server_errors_are_retried_with_backoff(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=20)
    integration = make_integration(fake)
    fake.fail_next(500, count=2)
    sleeps = Sleeps()

    run = sync(integration, sleeps=sleeps)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert sleeps == [1.0, 2.0]
    assert synced(integration).count() == 20


def test_persistent_outage_fails_the_run_and_keeps_progress(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=100)
    integration = make_integration(fake)

    def outage_after_some_traces(run, pages):
        if synced(integration).exists() and not fake._failures:
            fake.fail_next(503, count=10)

    run = sync(integration, page_limit=50, on_page=outage_after_some_traces)

    assert run.status == SyncRun.Status.FAILED
    assert "HTTP 503" in run.error
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ERROR
    assert integration.sync_cursor
    done = synced(integration).count()
    assert done > 0

    run = services.start_sync(integration=integration)
    fake._failures.clear()
    run = services.run_sync(run_id=run.pk, adapter=services.get_adapter(integration, page_limit=50))
    assert run.status == SyncRun.Status.SUCCEEDED
    assert synced(integration).count() == 100


def test_rejected_credentials_stop_the_sync_and_mark_the_integration(
    fake_langfuse, make_integration
):
    fake = fake_langfuse(traces=10)
    integration = make_integration(fake, secret_key="sk-lf-wrong-secret", sync_interval_minutes=60)

    run = sync(integration)

    assert run.status == SyncRun.Status.FAILED
    assert "rejected the API keys" in run.error
    assert "sk-lf-wrong-secret" not in run.error
    integration.refresh_from_db()
    assert integration.status == Integration.Status.AUTH_FAILED
    assert "401" in integration.last_error
    assert integration.periodic_task.enabled is False  # no point retrying every hour
    assert fake.request_count("/api/public/v2/observations") == 1  # no retries on 401
    assert not synced(integration).exists()


def test_filters_limit_what_is_synced(fake_langfuse, make_integration):
    fake = fake_langfuse(traces=30)
    integration = make_integration(fake, filter_environments=["staging"])

    sync(integration)

    envs = {t.data["metadata"].get("environment") for t in synced(integration)}
    assert envs == {"staging"}
    assert synced(integration).count() == 6  # every fifth generated trace is staging


def test_disabled_integration_cannot_sync(fake_langfuse, make_integration):
    integration = make_integration(fake_langfuse(traces=1))
    services.set_integration_enabled(integration=integration, enabled=False)

    with pytest.raises(services.IntegrationError, match="disabled"):
        services.start_sync(integration=integration)


def test_a_sync_taken_over_by_another_worker_stops_after_its_page(
    transactional_db, settings, monkeypatch, fake_langfuse, make_integration
):
    """The heartbeat thread notices the row is no longer its own; the page loop stops."""
    settings.IOFOLD_RUN_HEARTBEAT_SECONDS = 0.05
    # Twelve-hour spacing spreads the traces over several week-long windows: several pages.
    fake = fake_langfuse(traces=40, observations=2, spacing=timedelta(hours=12))
    integration = make_integration(fake)
    # Not enqueued: committed at once here, a worker left running by an earlier worker test
    # would take the run before this test runs it.
    monkeypatch.setattr(services, "enqueue", lambda *args: None)
    run = services.start_sync(integration=integration)
    pages = []

    def taken_over(run, done):
        pages.append(done)
        SyncRun.objects.filter(pk=run.pk).update(owner="another-worker")
        (heartbeat,) = [t for t in threading.enumerate() if t.name == f"heartbeat-SyncRun-{run.pk}"]
        wait_for(lambda: heartbeat.lost, timeout=10, message="the heartbeat did not notice")

    adapter = services.get_adapter(integration, sleep=Sleeps())
    result = services.run_sync(run_id=run.pk, adapter=adapter, on_page=taken_over)

    assert pages == [1]
    assert result.status == "running" and result.owner == "another-worker"


def test_a_sync_under_way_stops_at_its_next_page_once_its_integration_is_being_deleted(
    fake_langfuse, make_integration
):
    fake = fake_langfuse(traces=120, observations=2)
    integration = make_integration(fake)

    def delete_after_the_first_page(run, pages):
        if pages == 1:
            services.mark_integration_deleted(integration=integration)

    run = sync(integration, page_limit=50, on_page=delete_after_the_first_page)

    assert run.status == SyncRun.Status.FAILED and "being deleted" in run.error
    assert run.pages == 1
    assert 0 < synced(integration).count() == run.created_count < 120  # the first page only
    with pytest.raises(services.IntegrationError, match="being deleted"):
        services.start_sync(integration=integration)
