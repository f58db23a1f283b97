"""Fill received Agents SDK traces' ``response`` spans from the Responses API, afterwards.

The exporter's response spans hold only a response id; with an API key on the receiving
source, a background task reads each response (outside any transaction: network calls do
not hold row locks), then merges the content into the stored trace under its lock.

While reading is stopped (the key was rejected ``MAX_KEY_REJECTIONS`` times), the traces
that could not be read are noted (``ResponseWait``); saving a new key reads them again in
the background, ``REREAD_BATCH`` traces per task, one task after the other.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from integrations.adapters.base import AdapterError
from integrations.adapters.openai_agents import (
    NOT_STORED,
    ResponseReader,
    fill_responses,
    unread_responses,
)
from integrations.models import Integration
from iofold.lib.tasks import enqueue
from iofold.lib.transactions import run_in_transaction
from iofold.pipeline import ingest_traces, stored_traces
from traces.exceptions import ResponsesUnavailable
from traces.models import ResponseWait, Trace

logger = logging.getLogger(__name__)
SOURCE = Trace.Source.OPENAI
FILL_TASK = "traces.tasks.fill_agent_responses_task"
REREAD_TASK = "traces.tasks.reread_agent_responses_task"
# Traces read again per task after a new key: one task's reads stay short, and the tasks
# follow one another rather than asking OpenAI for a long backlog all at once.
REREAD_BATCH = 50
# Traces noted at most per source while reading is stopped: a key left broken for months
# does not grow the table without end (the newer traces then keep their empty responses).
MAX_WAITING = 10_000
# Reads OpenAI refuses (401/403) in a row before reading stops: the key is wrong, and every
# post would otherwise ask again with it. A new key (set_response_key) starts reading again.
MAX_KEY_REJECTIONS = 3


def reading_stopped(integration: Integration) -> bool:
    return integration.response_key_rejections >= MAX_KEY_REJECTIONS


def queue_response_fill(integration: Integration, traces: list[dict]) -> None:
    """Queue reading the responses of these traces, once the receive has committed."""
    ids = [t["id"] for t in traces if unread_responses(t)]
    if not ids or not integration.secret_key:
        return
    if reading_stopped(integration):
        wait_for_key(integration, ids)
    else:
        transaction.on_commit(lambda: enqueue(FILL_TASK, integration.pk, ids))


def wait_for_key(integration: Integration, external_ids: list[str]) -> None:
    """Note traces whose responses reading could not read (it is stopped): a new key reads
    them again. Noting one twice changes nothing."""
    waiting = ResponseWait.objects.for_workspace(integration.workspace_id).filter(
        integration=integration
    )
    if waiting[MAX_WAITING - 1 : MAX_WAITING].exists():
        return
    ResponseWait.objects.bulk_create(
        [
            ResponseWait(
                workspace_id=integration.workspace_id, integration=integration, external_id=eid
            )
            for eid in external_ids
        ],
        ignore_conflicts=True,
    )


def waiting_count(integration: Integration) -> int:
    """How many of the source's traces wait for their response content to be read again."""
    return (
        ResponseWait.objects.for_workspace(integration.workspace_id)
        .filter(integration=integration)
        .count()
    )


def queue_reread(integration: Integration) -> None:
    """A new key was saved: read the waiting traces again, in the background, after commit."""
    if integration.secret_key and waiting_count(integration):
        transaction.on_commit(lambda: enqueue(REREAD_TASK, integration.pk))


def reread_waiting(*, integration_id: int) -> int:
    """Read the responses of the oldest ``REREAD_BATCH`` waiting traces, then queue the next
    batch; return how many responses were read.

    A read that fails for now raises ``ResponsesUnavailable`` (the task tries again, the
    traces still waiting); a key rejected again stops reading and leaves them waiting.
    """
    integration = Integration.objects.filter(
        pk=integration_id, kind=Integration.Kind.OPENAI_AGENTS
    ).first()
    if integration is None or not integration.secret_key or reading_stopped(integration):
        return 0
    waiting = ResponseWait.objects.for_workspace(integration.workspace_id).filter(
        integration=integration
    )
    batch = dict(waiting.order_by("pk").values_list("pk", "external_id")[:REREAD_BATCH])
    if not batch:
        return 0
    read = read_responses(integration_id=integration.pk, external_ids=list(batch.values()))
    integration.refresh_from_db(fields=["response_key_rejections"])
    if reading_stopped(integration):
        return read  # rejected again: they wait for the next key
    waiting.filter(pk__in=batch).delete()
    if waiting.exists():
        enqueue(REREAD_TASK, integration.pk)
    logger.info("agents responses re-read integration=%s read=%d", integration.pk, read)
    return read


def read_responses(*, integration_id: int, external_ids: list[str]) -> int:
    """Read and store the response content of these traces; return how many were read.

    Raise ``ResponsesUnavailable`` when OpenAI refused or failed a read that may work later
    (the task tries again, waiting longer each time), after storing what was read.
    """
    integration = (
        Integration.objects.select_related("workspace")
        .present()
        .filter(pk=integration_id, kind=Integration.Kind.OPENAI_AGENTS)
        .first()
    )
    if integration is None or not integration.secret_key:
        return 0
    if reading_stopped(integration):
        # Queued before reading stopped: these wait for a new key too.
        wait_for_key(integration, external_ids)
        return 0
    workspace = integration.workspace
    with transaction.atomic():
        stored = stored_traces(
            workspace=workspace, source=SOURCE, integration=integration, external_ids=external_ids
        )
    reader = ResponseReader(host=integration.host, secret_key=integration.secret_key)
    read: dict[str, dict | None] = {}
    failure: ResponsesUnavailable | None = None
    try:
        for trace in stored.values():
            for rid in unread_responses(trace):
                read[rid] = reader.read(rid)
    except AdapterError as exc:
        failure = _record_failure(integration, exc)
        if exc.code == "auth" and failure is None:
            # This rejection stopped reading: the traces not read yet wait for a new key.
            unread = [
                eid
                for eid, trace in stored.items()
                if any(rid not in read for rid in unread_responses(trace))
            ]
            wait_for_key(integration, unread)
        if not read:
            if failure is not None:
                raise failure from exc
            return 0
    else:
        if integration.response_key_rejections:
            Integration.objects.filter(pk=integration.pk).update(response_key_rejections=0)

    def store() -> None:
        locked = stored_traces(
            workspace=workspace, source=SOURCE, integration=integration, external_ids=external_ids
        )
        traces = [fill_responses(t, read) for t in locked.values()]
        ingest_traces(
            workspace=workspace,
            source=SOURCE,
            integration=integration,
            traces=traces,
            stored=locked,
        )

    run_in_transaction(store, what=f"agents responses integration={integration.pk}")
    if failure is not None:
        raise failure  # the rest, later
    return len(read)


def _record_failure(integration: Integration, exc: AdapterError) -> ResponsesUnavailable | None:
    """Show a failed read on the source's page, as a sync's failure is; return the error to
    retry with, or None when retrying cannot help (a key rejected too often, a refused URL)."""
    now = timezone.now()
    error = f"{now:%Y-%m-%d %H:%M:%S} UTC: reading response content: {exc}"
    if exc.code == "auth":
        rows = Integration.objects.filter(pk=integration.pk)
        rows.update(response_key_rejections=F("response_key_rejections") + 1)
        rejections = rows.values_list("response_key_rejections", flat=True).first() or 0
        stopped = rejections >= MAX_KEY_REJECTIONS
        if stopped:
            error += f" Reading stopped after {rejections} rejections: save a new key to resume."
        rows.update(status=Integration.Status.AUTH_FAILED, last_error=error, updated_at=now)
        logger.info(
            "agents responses rejected integration=%s rejections=%d", integration.pk, rejections
        )
        return None if stopped else ResponsesUnavailable(exc.message)
    Integration.objects.filter(pk=integration.pk).update(
        status=Integration.Status.ERROR, last_error=error, updated_at=now
    )
    logger.info("agents responses failed integration=%s code=%s", integration.pk, exc.code)
    return None if exc.permanent else ResponsesUnavailable(exc.message)


def response_notes(trace: Trace) -> dict:
    """What the trace page says of its empty response steps: how many OpenAI does not
    store, and whether reading the others needs a key on the source."""
    if trace.source != SOURCE:
        return {}
    # Rows stored before ingest filled every step's metadata may have none.
    metadata = [s.get("metadata") or {} for s in trace.data.get("steps") or []]
    steps = [m for m in metadata if m.get("span_type") == "response"]
    if not steps:
        return {}
    not_stored = sum(m.get("response_content") == NOT_STORED for m in steps)
    unread = bool(unread_responses(trace.data))
    integration = trace.integration
    return {
        "not_stored": not_stored,
        "needs_key": unread
        and integration is not None
        and integration.kind == Integration.Kind.OPENAI_AGENTS
        and not integration.secret_key,
        "source": integration,
    }
