"""Integration services: credentials, connection checks, schedules and the trace sync."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from integrations.adapters import get_adapter_class
from integrations.adapters.base import (
    Adapter,
    AdapterError,
    ConnectionInfo,
    ScoreIn,
    SourceSettings,
    TraceFilters,
    TracePage,
    clean_base_url,
)
from integrations.constants import (
    MAX_SYNC_INTERVAL_MINUTES,
    MIN_SYNC_INTERVAL_MINUTES,
    SYNC_STALE_AFTER,
)
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from integrations.store import UpsertResult
from iofold.lib import outbound
from iofold.lib.heap import collect_if_grown, collector_paused
from iofold.lib.prefetch import prefetched
from iofold.lib.runs import Heartbeat, commit_asynchronously, keep_alive
from iofold.lib.tasks import enqueue
from iofold.pipeline import ingest_traces, prepare_traces, reread_agent_responses
from workspaces.models import Workspace

logger = logging.getLogger(__name__)
# Registered name of the sync task (integrations.tasks imports this module).
SYNC_TASK = "integrations.tasks.sync_integration_task"

SCHEDULED_TASK = "integrations.tasks.sync_integration_on_schedule_task"
_UNSET: Any = object()
# Pages each stage of a sync reads ahead of the next (fetching, preparing, writing). One
# overlaps the source's latency with the database's and keeps memory flat: at most five
# pages are alive at a time.
PREFETCH_PAGES = 1


# --- integrations ------------------------------------------------------------------------


def clean_host(host: str, *, kind: str = Integration.Kind.LANGFUSE) -> str:
    """Return the host as a base URL, or raise when it is not one iofold may connect to."""
    cls = get_adapter_class(kind)
    try:
        host = clean_base_url(host or cls.default_host, example=cls.example_host)
    except AdapterError as exc:
        raise IntegrationError(exc.message, code=exc.code) from None
    return _check_outbound(host)


def _check_outbound(host: str) -> str:
    try:
        outbound.check_url(host)
    except outbound.OutboundURLRefused as exc:
        raise IntegrationError(exc.message, code="unreachable") from None
    return host


def clean_settings(
    *,
    kind: str,
    host: str,
    public_key: str = "",
    secret_key: str = "",
    options: dict[str, Any] | None = None,
) -> SourceSettings:
    """Check what was entered for a source of ``kind`` with its adapter, or raise."""
    try:
        cls = get_adapter_class(kind)
    except LookupError:
        raise IntegrationError(
            f"“{kind}” is not a kind of source iofold can connect to.", code="invalid_settings"
        ) from None
    try:
        settings = cls.clean_settings(
            host=host, public_key=public_key, secret_key=secret_key, options=options
        )
    except AdapterError as exc:
        raise IntegrationError(exc.message, code=exc.code) from None
    _check_outbound(settings.host)
    return settings


def _clean_list(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    return sorted({v.strip() for v in values if v and v.strip()})


def create_integration(
    *,
    workspace,
    name: str,
    host: str,
    secret_key: str,
    public_key: str = "",
    kind: str = Integration.Kind.LANGFUSE,
    options: dict[str, Any] | None = None,
    filter_names: Sequence[str] = (),
    filter_tags: Sequence[str] = (),
    filter_environments: Sequence[str] = (),
    since_date: datetime | None = None,
    sync_interval_minutes: int | None = None,
) -> Integration:
    """Create an integration with its credentials and, with an interval, its schedule.

    The adapter of ``kind`` checks the host, keys and ``options`` (settings only that kind
    of source has).
    """
    name = (name or "").strip()
    if not name:
        raise IntegrationError("An integration needs a name.")
    settings = clean_settings(
        kind=kind, host=host, public_key=public_key, secret_key=secret_key, options=options
    )
    if Integration.objects.for_workspace(workspace).filter(name=name).exists():
        raise IntegrationError(f"An integration named “{name}” already exists here.")
    integration = Integration(
        workspace=workspace,
        kind=kind,
        name=name,
        host=settings.host,
        public_key=settings.public_key,
        secret_key=settings.secret_key,
        options=settings.options,
        filter_names=_clean_list(filter_names),
        filter_tags=_clean_list(filter_tags),
        filter_environments=_clean_list(filter_environments),
        since_date=since_date,
        sync_interval_minutes=_clean_interval(sync_interval_minutes),
    )
    with transaction.atomic():
        integration.full_clean()
        integration.save()
        schedule_sync(integration=integration)
    logger.info("integration created id=%s workspace=%s", integration.pk, workspace.pk)
    return integration


def update_integration(
    *,
    integration: Integration,
    name: str = _UNSET,
    host: str = _UNSET,
    public_key: str = _UNSET,
    secret_key: str | None = _UNSET,
    options: dict[str, Any] = _UNSET,
    filter_names: Sequence[str] = _UNSET,
    filter_tags: Sequence[str] = _UNSET,
    filter_environments: Sequence[str] = _UNSET,
    since_date: datetime | None = _UNSET,
    sync_interval_minutes: int | None = _UNSET,
) -> Integration:
    """Change an integration; an empty ``secret_key`` keeps the stored one.

    The kind never changes. A new host, key, option or filter starts the next sync from
    scratch, since the old watermark belongs to another project or selection of traces.
    """
    changed: set[str] = set()

    def put(field: str, value: Any) -> None:
        if getattr(integration, field) != value:
            setattr(integration, field, value)
            changed.add(field)

    if name is not _UNSET:
        name = (name or "").strip()
        if not name:
            raise IntegrationError("An integration needs a name.")
        clash = Integration.objects.for_workspace(integration.workspace).filter(name=name)
        if clash.exclude(pk=integration.pk).exists():
            raise IntegrationError(f"An integration named “{name}” already exists here.")
        put("name", name)
    if any(value is not _UNSET for value in (host, public_key, secret_key, options)):
        kept_secret = secret_key is _UNSET or not (secret_key or "").strip()
        settings = clean_settings(
            kind=integration.kind,
            host=integration.host if host is _UNSET else host,
            public_key=integration.public_key if public_key is _UNSET else public_key,
            secret_key=integration.secret_key if kept_secret else secret_key,
            options=integration.options if options is _UNSET else options,
        )
        put("host", settings.host)
        put("public_key", settings.public_key)
        put("secret_key", settings.secret_key)
        put("options", settings.options)
    for field, value in (
        ("filter_names", filter_names),
        ("filter_tags", filter_tags),
        ("filter_environments", filter_environments),
    ):
        if value is not _UNSET:
            put(field, _clean_list(value))
    if since_date is not _UNSET:
        put("since_date", since_date)
    if sync_interval_minutes is not _UNSET:
        put("sync_interval_minutes", _clean_interval(sync_interval_minutes))
    if not changed:
        return integration
    if changed & {"host", "public_key", "secret_key", "options"}:
        integration.status = Integration.Status.NEW
        integration.last_error = ""
        integration.project_name = ""
        changed |= {"status", "last_error", "project_name"}
    if changed & {
        "host",
        "public_key",
        "options",
        "filter_names",
        "filter_tags",
        "filter_environments",
        "since_date",
    }:
        integration.watermark = None
        integration.sync_cursor = ""
        changed |= {"watermark", "sync_cursor"}
    with transaction.atomic():
        integration.full_clean()
        integration.save(update_fields=[*sorted(changed), "updated_at"])
        schedule_sync(integration=integration)
    logger.info("integration updated id=%s fields=%s", integration.pk, ",".join(sorted(changed)))
    return integration


def _clean_interval(minutes: int | None) -> int | None:
    if minutes in (None, "", 0):
        return None
    minutes = int(minutes)
    if not MIN_SYNC_INTERVAL_MINUTES <= minutes <= MAX_SYNC_INTERVAL_MINUTES:
        raise IntegrationError(
            f"The sync interval must be between {MIN_SYNC_INTERVAL_MINUTES} minutes and "
            f"{MAX_SYNC_INTERVAL_MINUTES} minutes (a week)."
        )
    return minutes


def set_integration_enabled(*, integration: Integration, enabled: bool) -> Integration:
    """Enable or disable an integration; a disabled one neither syncs nor runs on schedule."""
    integration.enabled = enabled
    with transaction.atomic():
        integration.save(update_fields=["enabled", "updated_at"])
        schedule_sync(integration=integration)
    return integration


def mark_integration_deleted(*, integration: Integration) -> bool:
    """Hide the integration and stop its syncs and schedule; return whether this call did.

    The worker deleting its traces (traces.deletions) deletes the row last, with
    ``delete_integration``. The caller holds the row locked, so two requests mark it once.
    """
    marked = Integration.objects.filter(pk=integration.pk, deletion_requested_at__isnull=True)
    if not marked.update(deletion_requested_at=timezone.now()):
        return False
    # Gone from the beat at once, not when the row is (integrations/signals.py).
    if integration.periodic_task_id is not None:
        PeriodicTask.objects.filter(pk=integration.periodic_task_id).delete()
    logger.info("integration deletion requested id=%s", integration.pk)
    return True


def delete_integration(*, integration: Integration) -> None:
    """Delete an integration marked for deletion, with its runs and schedule.

    Only the worker calls it, once the integration's traces are gone: at 100,000 traces
    their deletion outlives a request.
    """
    # Its schedule goes with it (integrations/signals.py), whoever deletes it.
    integration.delete()
    logger.info("integration deleted id=%s", integration.pk)


def being_deleted(integration: Integration) -> bool:
    """Whether the integration's deletion was asked for, read afresh from the database."""
    return Integration.objects.filter(
        pk=integration.pk, deletion_requested_at__isnull=False
    ).exists()


def schedule_sync(*, integration: Integration) -> PeriodicTask | None:
    """Create, update or remove the integration's beat schedule to match its interval."""
    task = integration.periodic_task
    if not integration.sync_interval_minutes:
        if task is not None:
            integration.periodic_task = None
            integration.save(update_fields=["periodic_task"])
            task.delete()
        return None
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=integration.sync_interval_minutes, period=IntervalSchedule.MINUTES
    )
    if task is None:
        task = PeriodicTask(task=SCHEDULED_TASK)
    task.name = (
        f"Sync integration {integration.pk} ({integration.workspace.slug}: {integration.name})"[
            :200
        ]
    )
    task.task = SCHEDULED_TASK
    task.interval = interval
    task.args = json.dumps([integration.pk])
    task.queue = "sync"
    task.description = "Created by iofold from the integration's sync interval."
    # Rejected credentials would fail every run until someone fixes them.
    task.enabled = integration.enabled and integration.status != Integration.Status.AUTH_FAILED
    task.save()
    if integration.periodic_task_id != task.pk:
        integration.periodic_task = task
        integration.save(update_fields=["periodic_task"])
    return task


# --- connection checks ---------------------------------------------------------------------


def get_adapter(integration: Integration, **tuning: Any) -> Adapter:
    """Return the source's adapter configured with the integration's settings."""
    settings = SourceSettings(
        host=integration.host,
        public_key=integration.public_key,
        secret_key=integration.secret_key,
        options=dict(integration.options or {}),
    )
    return get_adapter_class(integration.kind).from_settings(settings, **tuning)


def check_connection(
    *,
    host: str,
    secret_key: str,
    public_key: str = "",
    kind: str = Integration.Kind.LANGFUSE,
    options: dict[str, Any] | None = None,
    timeout: float = 10.0,
    max_attempts: int = 2,
) -> ConnectionInfo:
    """Check unsaved settings: return the project they reach or raise ``IntegrationError``."""
    settings = clean_settings(
        kind=kind, host=host, public_key=public_key, secret_key=secret_key, options=options
    )
    adapter = get_adapter_class(kind).from_settings(
        settings, timeout=timeout, max_attempts=max_attempts
    )
    try:
        return adapter.test_connection()
    except AdapterError as exc:
        raise IntegrationError(exc.message, permanent=exc.permanent, code=exc.code) from None


def test_connection(*, integration: Integration, **tuning: Any) -> ConnectionInfo:
    """Check a saved integration's credentials and record the outcome on it.

    ``tuning`` (``timeout``, ``max_attempts``) bounds the check; see ``check_connection``.
    """
    if integration.receives:
        # Exporters post its traces: there is nothing to connect to or pull.
        adapter_class = get_adapter_class(integration.kind)
        raise IntegrationError(adapter_class.nothing_to_pull(integration.name))
    try:
        info = check_connection(
            host=integration.host,
            public_key=integration.public_key,
            secret_key=integration.secret_key,
            kind=integration.kind,
            options=integration.options,
            **tuning,
        )
    except IntegrationError as exc:
        if exc.code == "auth":
            _mark_integration(integration, status=Integration.Status.AUTH_FAILED, error=exc.message)
        raise
    integration.project_name = info.project_name[:200]
    fields = ["project_name", "updated_at"]
    if integration.status == Integration.Status.AUTH_FAILED:
        integration.status, integration.last_error = Integration.Status.NEW, ""
        fields += ["status", "last_error"]
    with transaction.atomic():
        integration.save(update_fields=fields)
        schedule_sync(integration=integration)
    return info


test_connection.__test__ = False  # not a pytest test, despite the name


# The check run right after a save answers within the request: one try, a short wait
# (two calls at most: Langfuse's health check, then its projects), so a hung host costs
# seconds, not the 10 s x 2 tries of the "Test connection" button.
SAVED_CHECK_TUNING = {"timeout": 3.0, "max_attempts": 1}


def connection_outcome(*, integration: Integration, **tuning: Any) -> tuple[bool, str]:
    """Test a saved integration's connection (recorded on it); return ``(ok, message)``."""
    try:
        info = test_connection(integration=integration, **tuning)
    except IntegrationError as exc:
        return False, exc.message
    return True, connection_message(info)


def saved_message(*, integration: Integration) -> tuple[bool, str]:
    """Check the connection just saved and say how it went: a wrong key shows at once,
    not at the first sync. The integration is saved either way."""
    ok, message = connection_outcome(integration=integration, **SAVED_CHECK_TUNING)
    if ok:
        return True, f"“{integration.name}” saved. {message}"
    return False, f"“{integration.name}” saved, but the connection failed: {message}"


def connection_settings(integration: Integration) -> tuple:
    """What a connection check depends on: a save that changes it checks it again."""
    return (integration.host, integration.public_key, integration.secret_key, integration.options)


def connection_message(info: ConnectionInfo) -> str:
    """Return the sentence shown after a successful connection check."""
    if info.summary:
        return info.summary
    server = " ".join(part for part in (info.platform, info.server_version) if part)
    version = f" ({server})" if info.server_version else ""
    return f"Connected to project “{info.project_name}”{version}."


def _mark_integration(integration: Integration, *, status: str, error: str) -> None:
    integration.status, integration.last_error = status, error
    with transaction.atomic():
        integration.save(update_fields=["status", "last_error", "updated_at"])
        if status == Integration.Status.AUTH_FAILED:
            schedule_sync(integration=integration)


# --- sync ----------------------------------------------------------------------------------


def start_sync(*, integration: Integration, trigger: str = SyncRun.Trigger.MANUAL) -> SyncRun:
    """Queue a sync of the integration and return its run; an active run is returned as is."""
    if integration.receives:
        # Exporters post its traces: there is nothing to connect to or pull.
        adapter_class = get_adapter_class(integration.kind)
        raise IntegrationError(adapter_class.nothing_to_pull(integration.name))
    if not integration.enabled:
        raise IntegrationError(f"“{integration.name}” is disabled; enable it to sync.")
    # Read afresh: a schedule can fire between a deletion request and the delete itself.
    if being_deleted(integration):
        raise IntegrationError(
            f"“{integration.name}” is being deleted.", code="integration_deleted"
        )
    if Workspace.objects.filter(
        pk=integration.workspace_id, deletion_requested_at__isnull=False
    ).exists():
        raise IntegrationError("This workspace is being deleted.", code="workspace_deleted")
    # A run whose worker died is enqueued again (and returned) rather than left stuck.
    recover_sync_runs(integration=integration)
    reap_stale_runs(integration=integration)
    active = SyncRun.objects.filter(integration=integration).active().first()
    if active is not None:
        return active
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(
                workspace_id=integration.workspace_id, integration=integration, trigger=trigger
            )
    except IntegrityError:
        # Another request queued one between the check and the insert.
        active = SyncRun.objects.filter(integration=integration).active().first()
        if active is None:
            raise
        return active
    transaction.on_commit(lambda: enqueue(SYNC_TASK, run.pk))
    logger.info("sync queued run=%s integration=%s trigger=%s", run.pk, integration.pk, trigger)
    return run


def claim_run(*, run_id: int) -> SyncRun | None:
    """Mark a queued run (or one whose worker died) running; return it, or None if taken."""
    claim = SyncRun.objects.claim(run_id)
    if claim is None:
        return None
    if claim.taken_over:
        SyncRun.objects.filter(pk=run_id).update(resumed=True)
    return SyncRun.objects.select_related("integration", "workspace").get(pk=run_id)


def run_sync(
    *,
    run_id: int,
    adapter: Adapter | None = None,
    on_page: Callable[[SyncRun, int], None] | None = None,
    on_ingested: Callable[[list[int]], None] | None = None,
) -> SyncRun | None:
    """Run a queued sync to the end: page by page, each page committed with its cursor.

    A run that stops half-way (a killed worker, an outage) leaves the integration's cursor
    at the last committed page, and the next run continues from there. ``on_page(run,
    pages_done)`` is called after each committed page.
    """
    run = claim_run(run_id=run_id)
    if run is None:
        logger.info("sync not claimed run=%s", run_id)
        return None
    # The sync's garbage dies by reference counting: the cyclic collector waits (heap).
    with keep_alive(run) as heartbeat, collector_paused():
        return _sync(
            run, adapter=adapter, on_page=on_page, on_ingested=on_ingested, heartbeat=heartbeat
        )


def _sync(
    run: SyncRun,
    *,
    adapter: Adapter | None,
    on_page: Callable[[SyncRun, int], None] | None,
    on_ingested: Callable[[list[int]], None] | None,
    heartbeat: Heartbeat | None,
) -> SyncRun:
    integration = run.integration
    if not integration.enabled:
        return _finish_run(run, error=f"“{integration.name}” was disabled before the sync started.")
    if integration.sync_cursor:
        SyncRun.objects.filter(pk=run.pk).update(resumed=True)
    adapter = adapter or get_adapter(integration)
    filters = TraceFilters(
        names=tuple(integration.filter_names),
        tags=tuple(integration.filter_tags),
        environments=tuple(integration.filter_environments),
        since_date=integration.since_date,
    )
    pages = 0
    # The source's next pages are fetched on one thread and prepared for storing on
    # another while this one writes: the source thread's waits for the source no longer
    # hold the preparing back. A page whose traces the adapter builds when they are first
    # read (``TracePage``) is normalised on the preparing thread, so the source answers
    # the next request meanwhile. Pages still commit one by one, in order, each with its
    # own cursor.
    pager = prefetched(
        _prepared_pages(
            prefetched(
                adapter.fetch_traces(
                    since=integration.watermark,
                    until=None,
                    filters=filters,
                    cursor=integration.sync_cursor or None,
                ),
                depth=PREFETCH_PAGES,
                name=f"sync-{run.pk}-source",
            )
        ),
        depth=PREFETCH_PAGES,
        name=f"sync-{run.pk}-fetch",
    )
    try:
        for page, prepared in pager:
            with transaction.atomic():
                # A page commits with its cursor: one a crash loses is read again.
                commit_asynchronously()
                # Locked: the worker deleting the integration takes the same lock before it
                # deletes the row, so no page lands in between to fail on a missing row.
                if _locked_for_deletion(integration):
                    logger.info("sync stopped run=%s reason=integration_deleted", run.pk)
                    return _finish_run(run, error=f"“{integration.name}” is being deleted.")
                result = ingest_traces(
                    workspace=integration.workspace,
                    source=integration.kind,
                    integration=integration,
                    traces=prepared,
                    on_ingested=on_ingested,
                )
                _record_page(
                    run, integration, result, cursor=page.cursor, max_ts=page.max_timestamp
                )
            pages += 1
            del page, prepared, result  # the page written is not kept while the next come
            collect_if_grown()
            if on_page is not None:
                on_page(run, pages)
            if heartbeat is not None and heartbeat.lost:
                # Another worker took the run over (this one was silent too long), or it
                # was failed: leave the rest to the new owner.
                logger.warning("sync given up run=%s pages=%d", run.pk, pages)
                return SyncRun.objects.get(pk=run.pk)
    except AdapterError as exc:
        status = Integration.Status.AUTH_FAILED if exc.code == "auth" else Integration.Status.ERROR
        _mark_integration(integration, status=status, error=exc.message)
        logger.warning(
            "sync failed run=%s integration=%s code=%s", run.pk, integration.pk, exc.code
        )
        return _finish_run(run, error=exc.message)
    except SoftTimeLimitExceeded:
        run = _finish_run(
            run,
            error=f"The sync reached its time limit after {pages} pages; a new run continues it.",
        )
        integration.refresh_from_db()
        start_sync(integration=integration, trigger=run.trigger)
        return run
    except Exception as exc:
        # Celery logs the crash, with the task's id: a record here would log it twice. Its
        # traceback carries the ids instead.
        exc.add_note(f"sync crashed run={run.pk} integration={integration.pk}")
        _finish_run(
            run,
            error="The sync stopped on an internal error; the next one resumes from the last page.",
        )
        raise
    finally:
        pager.close()
    Integration.objects.filter(pk=integration.pk).update(
        status=Integration.Status.OK, last_error="", last_synced_at=timezone.now()
    )
    return _finish_run(run)


def _locked_for_deletion(integration: Integration) -> bool:
    """Lock the integration's row; return whether it is gone or being deleted."""
    row = Integration.objects.select_for_update().filter(pk=integration.pk).order_by()
    state = list(row.values_list("deletion_requested_at", flat=True))
    return not state or state[0] is not None


def _prepared_pages(pages: Iterator[TracePage]) -> Iterator[tuple[TracePage, Any]]:
    """Yield each page with its traces validated and encoded (no database needed)."""
    try:
        for page in pages:
            yield page, prepare_traces(page.traces, checked=page.checked)
    finally:
        # Stopped early (the sync failed or gave up): the adapter's clean-up runs now.
        close = getattr(pages, "close", None)
        if close is not None:
            close()


def _record_page(
    run: SyncRun,
    integration: Integration,
    result: UpsertResult,
    *,
    cursor: str | None,
    max_ts: datetime | None,
) -> None:
    progress = 1.0 if cursor is None else _progress(integration.kind, cursor)
    if cursor is None:
        # The scan is complete: the next sync starts from the newest trace seen.
        integration.watermark = max_ts or integration.watermark
        integration.sync_cursor = ""
    else:
        integration.sync_cursor = cursor
    # Two plain statements, the querysets' update() as SQL: compiling their sums anew for
    # every page cost the writing thread a millisecond each.
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as statement:
        statement.execute(
            _RECORD_PAGE_SQL,
            [
                result.created,
                result.updated,
                result.unchanged + result.duplicates,
                result.failed,
                adapt(timezone.now()),
                progress,
                run.pk,
            ],
        )
        statement.execute(
            _SAVE_CURSOR_SQL,
            [integration.sync_cursor, adapt(integration.watermark), integration.pk],
        )


def _column(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


# Column names come from the models, never from input.
_RECORD_PAGE_SQL = (
    f"UPDATE {connection.ops.quote_name(SyncRun._meta.db_table)} SET "  # noqa: S608
    + ", ".join(
        f"{_column(SyncRun, name)} = {_column(SyncRun, name)} + %s"
        for name in ("created_count", "updated_count", "unchanged_count", "failed_count")
    )
    + f", {_column(SyncRun, 'pages')} = {_column(SyncRun, 'pages')} + 1"
    + f", {_column(SyncRun, 'heartbeat_at')} = %s, {_column(SyncRun, 'progress')} = %s"
    + f" WHERE {_column(SyncRun, 'id')} = %s"
)
_SAVE_CURSOR_SQL = (
    f"UPDATE {connection.ops.quote_name(Integration._meta.db_table)} SET "  # noqa: S608
    f"{_column(Integration, 'sync_cursor')} = %s, {_column(Integration, 'watermark')} = %s"
    f" WHERE {_column(Integration, 'id')} = %s"
)


def _progress(kind: str, cursor: str) -> float:
    """Return how much of the scanned time range a resume cursor has covered."""
    return get_adapter_class(kind).cursor_progress(cursor)


def _finish_run(run: SyncRun, *, error: str = "") -> SyncRun:
    SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
        status=SyncRun.Status.FAILED if error else SyncRun.Status.SUCCEEDED,
        error=error,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    run.refresh_from_db()
    logger.info(
        "sync finished run=%s integration=%s status=%s created=%d updated=%d failed=%d pages=%d",
        run.pk,
        run.integration_id,
        run.status,
        run.created_count,
        run.updated_count,
        run.failed_count,
        run.pages,
    )
    return run


def fail_run(*, run_id: int, error: str) -> None:
    """Mark an unfinished run failed (used when its task gives up)."""
    SyncRun.objects.filter(pk=run_id).fail(error)


def recover_sync_runs(
    *, integration: Integration | None = None, include_queued: bool = False
) -> int:
    """Enqueue again the runs whose worker died; they resume from their last saved page."""
    runs = SyncRun.objects.all()
    if integration is not None:
        runs = runs.filter(integration=integration)
    return runs.recover(
        enqueue=lambda run: enqueue(SYNC_TASK, run.pk),
        include_queued=include_queued,
        resumed=True,
    )


def reap_stale_runs(
    *, older_than: timedelta = SYNC_STALE_AFTER, integration: Integration | None = None
) -> int:
    """Fail active runs no worker has touched for ``older_than``; the next run resumes."""
    runs = SyncRun.objects.stale(older_than=older_than)
    if integration is not None:
        runs = runs.filter(integration=integration)
    count = runs.fail(
        "The worker stopped responding; the next sync resumes from the last saved page."
    )
    if count:
        logger.warning("stale sync runs reaped count=%d", count)
    return count


# --- score delivery ------------------------------------------------------------------------

# Starts the error of a score the platform refused: a resend gets the same answer, so the
# periodic retry leaves these alone (the next push of their run tries again).
SCORE_REJECTED_PREFIX = "The source rejected the score: "


@dataclass
class ScoreDelivery:
    """Which scores of a push arrived (their indexes) and why the others did not."""

    delivered: list[int] = dataclass_field(default_factory=list)
    failed: dict[int, str] = dataclass_field(default_factory=dict)


def deliver_scores(*, integration: Integration, scores: list[ScoreIn]) -> ScoreDelivery:
    """Push scores to the integration's source; return the outcome of each one.

    Never raises for a delivery failure: an outage fails the whole batch with its message,
    and a batch the platform partly refused is resent one score at a time (same ids, so
    the accepted ones are overwritten, not duplicated) to pin the refusals down.
    """
    if being_deleted(integration):
        message = f"“{integration.name}” is being deleted."
        return ScoreDelivery(failed=dict.fromkeys(range(len(scores)), message))
    adapter = get_adapter(integration)
    if not adapter.capabilities.push_back:
        message = f"{adapter.label or integration.kind} does not accept verdicts back."
        return ScoreDelivery(failed=dict.fromkeys(range(len(scores)), message))
    try:
        result = adapter.push_scores(scores)
    except AdapterError as exc:
        return ScoreDelivery(failed=dict.fromkeys(range(len(scores)), exc.message))
    if not result.rejected:
        return ScoreDelivery(delivered=list(range(len(scores))))
    delivery = ScoreDelivery()
    for index, score in enumerate(scores):
        try:
            single = adapter.push_scores([score])
        except AdapterError as exc:
            delivery.failed[index] = exc.message
            continue
        if single.rejected:
            message = single.errors[0] if single.errors else "no reason given"
            delivery.failed[index] = f"{SCORE_REJECTED_PREFIX}{message}"
        else:
            delivery.delivered.append(index)
    return delivery


def record_score_delivery(
    *,
    integration: Integration,
    delivered: int,
    failed: int,
    error: str = "",
    at: datetime | None = None,
) -> None:
    """Add a push's outcome to the integration's delivery state, which its page shows.

    ``error`` is the latest failure message; ``at`` the time of the push (default now).
    A clean delivery clears earlier failures: whatever failed before works again. One
    UPDATE, so it needs no transaction of its own and joins the caller's.
    """
    now = at or timezone.now()
    if failed:
        Integration.objects.filter(pk=integration.pk).update(
            score_push_failures=F("score_push_failures") + failed,
            score_push_error=error[:2000],
            score_push_failed_at=now,
            **({"scores_pushed_at": now} if delivered else {}),
            scores_pushed_count=F("scores_pushed_count") + delivered,
        )
    elif delivered:
        Integration.objects.filter(pk=integration.pk).update(
            scores_pushed_at=now,
            scores_pushed_count=F("scores_pushed_count") + delivered,
            score_push_failures=0,
            score_push_error="",
        )


def set_response_key(*, integration: Integration, host: str, secret_key: str) -> Integration:
    """Store the OpenAI key (and API base URL) an Agents SDK source reads its response
    spans' content with; an empty key removes it. The key is stored encrypted."""
    if integration.kind != Integration.Kind.OPENAI_AGENTS:
        raise IntegrationError("Only the OpenAI Agents SDK source reads response content.")
    integration.host = clean_host(host, kind=Integration.Kind.OPENAI) if secret_key else ""
    integration.secret_key = secret_key
    # Another key: reading, stopped after the old one's rejections, starts again.
    integration.response_key_rejections = 0
    fields = ["host", "secret_key", "response_key_rejections", "updated_at"]
    if integration.status == Integration.Status.AUTH_FAILED:
        # A new key is the fix of a rejected one: the next read shows whether it works.
        integration.status = Integration.Status.OK
        fields.append("status")
    integration.save(update_fields=fields)
    if secret_key:
        # What came while reading was stopped is read again with it, in the background.
        reread_agent_responses(integration)
    return integration
