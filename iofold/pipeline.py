"""The trace chain, in order: a source's traces are stored, then active evals judge them.

    source ─ sync / upload / API / webhook (integrations)
           → ingest_traces (here)
           → traces.ingest.upsert_traces        stores the rows
           → evals' queue_automatic_runs         continuous evaluation, after commit
           → scores pushed back to the source    evals.execution.scores
           → integrations.services.record_score_delivery

The apps sit in one line, upstream first (workspaces, integrations, traces, evals), and
never import downstream. Integrations owns the entry points a trace arrives through, yet
traces and evals are downstream of it, so the entry points hand each batch to this
module, which sits above the apps and calls each step by name. See docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction

from integrations.store import UpsertResult
from iofold.exceptions import RateLimited
from iofold.lib import ratelimit
from iofold.lib.transactions import run_in_transaction

logger = logging.getLogger(__name__)


def admit_traces(*, workspace, count: int) -> None:
    """Count ``count`` pushed traces against the workspace's budget per minute, or refuse.

    Called by the entry points clients push through (API, upload, webhook, OTLP, the
    Agents SDK receiver) before anything is written, so a refused batch stores nothing;
    syncs are not limited, iofold paces them itself. Raises ``RateLimited``.
    """
    limit = settings.IOFOLD_INGEST_TRACES_PER_MINUTE
    wait = ratelimit.take(f"ingest:{workspace.pk}", count, limit=limit, window=60)
    if wait is not None:
        too_big = count > limit
        raise RateLimited(
            f"This batch of {count} traces is larger than the workspace's limit of "
            f"{limit} traces per minute; send smaller batches."
            if too_big
            else f"The workspace receives at most {limit} traces per minute; "
            f"try again in {wait} s.",
            retry_after=wait,
        )


def prepare_traces(traces: list[dict[str, Any]], *, checked: bool = False) -> Any:
    """Validate and encode a batch for ``ingest_traces`` without the database.

    Safe on any thread: a sync prepares its next page on the thread that fetches it.
    ``checked``: an adapter built the traces to the schema (``TracePage.checked``).
    """
    from traces.ingest import prepare_traces as prepare

    return prepare(traces, checked=checked)


def ingest_traces(
    *,
    workspace,
    source: str,
    traces: Any,
    integration=None,
    on_ingested: Callable[[list[int]], None] | None = None,
    stored: dict[str, dict[str, Any]] | None = None,
) -> UpsertResult:
    """Store normalised traces, then queue continuous evaluation of the new or changed ones.

    ``traces`` is a list of normalised traces, or what ``prepare_traces`` made of one.

    The evaluation is queued after the surrounding transaction commits, so a worker never
    looks for rows that are not there yet; ``on_ingested(trace_ids)`` runs then too.
    ``stored`` is what ``stored_traces`` returned in the same transaction, if called.

    Called outside a transaction (API, upload, webhook), the batch is written in one of its
    own, run again should PostgreSQL end it to break a deadlock (``run_in_transaction``).
    """
    from traces.ingest import upsert_traces

    if isinstance(traces, list):
        traces = prepare_traces(traces)  # not in the transaction: no lock held meanwhile
    result = run_in_transaction(
        lambda: upsert_traces(
            workspace=workspace,
            source=source,
            integration=integration,
            traces=traces,
            on_ingested=on_ingested,
            stored=stored,
            on_anchors_moved=move_conversation_verdicts,
        ),
        what=f"ingest workspace={workspace.pk} source={source}",
    )
    if result.trace_ids:
        workspace_id, trace_ids = workspace.pk, list(result.trace_ids)
        transaction.on_commit(lambda: evaluate_new_traces(workspace_id, trace_ids))
    if result.completed_conversation_ids:
        workspace_id, ids = workspace.pk, list(result.completed_conversation_ids)
        transaction.on_commit(lambda: evaluate_completed_conversations(workspace_id, ids))
    return result


def stored_traces(
    *, workspace, source: str, integration=None, external_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Return the stored payloads of these traces, locked until the transaction ends.

    A source whose traces arrive in pieces (OTLP spans) merges each piece into what is
    stored, inside one transaction with the ``ingest_traces`` call that writes it back.
    """
    from traces.ingest import stored_trace_data

    return stored_trace_data(
        workspace=workspace,
        source=source,
        integration=integration,
        external_ids=external_ids,
        lock=True,
    )


def reread_agent_responses(integration) -> None:
    """An Agents SDK source got a new key: read again, in the background, the responses of
    the traces received while its old key's rejections stopped reading."""
    from traces.agents_responses import queue_reread

    queue_reread(integration)


def move_conversation_verdicts(workspace_id: int, moves: dict[int, int]) -> None:
    """A conversation's latest verdicts sit on its anchor turn: when that turn moved to
    another conversation, they go to the new anchor with the conversation's labels."""
    from evals.execution.continuous import move_conversation_verdicts as move

    move(workspace_id=workspace_id, moves=moves)


def evaluate_new_traces(workspace_id: int, trace_ids: list[int]) -> None:
    """Queue the active evals' automatic runs on new traces; log, never raise, a failure.

    The traces are already committed when this runs: a broker outage must not turn a
    stored batch into an error for the sync, upload or webhook that sent it.
    """
    from evals.execution.continuous import queue_automatic_runs

    try:
        queue_automatic_runs(workspace_id=workspace_id, trace_ids=trace_ids)
    except Exception:
        logger.exception("continuous evaluation not queued workspace=%s", workspace_id)


def evaluate_completed_conversations(workspace_id: int, conversation_ids: list[int]) -> None:
    """Queue the conversation evals' automatic runs on conversations that just completed.

    A conversation is judged through its anchor turn (traces.conversations), so this is
    the trace chain's own call with those turns; logged, never raised, like it.
    """
    from traces.models import Conversation

    anchors = list(
        Conversation.objects.for_workspace(workspace_id)
        .filter(pk__in=conversation_ids, anchor__isnull=False)
        .values_list("anchor_id", flat=True)
    )
    evaluate_new_traces(workspace_id, anchors)


@shared_task
def complete_idle_conversations_task() -> int:
    """Beat: mark conversations complete once idle for their idle time, then judge them."""
    from traces.conversations import complete_idle_conversations

    completed = complete_idle_conversations()
    for workspace_id, ids in completed.items():
        evaluate_completed_conversations(workspace_id, ids)
    return sum(len(ids) for ids in completed.values())
