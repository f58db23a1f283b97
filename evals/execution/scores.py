"""Send eval verdicts back to their source (Langfuse scores, LangSmith feedback).

Each score id is derived from (eval set, trace) and its timestamp is the trace's own,
so a resend after a failure, a re-run, or another version of the set (activated, promoted,
rolled back to) overwrites the earlier score instead of adding another one: a trace has
one score per eval set, the active version's. The integrations app delivers them
(``deliver_scores``); outcomes are recorded here on each execution
(``score_pushed_at``/``score_error``), and the integration sums them up on its own rows
(``record_score_delivery``), whose page shows them.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from evals.models import Eval, EvalExecution, EvalRun
from integrations.adapters.base import ScoreIn
from integrations.models import Integration
from integrations.services import SCORE_REJECTED_PREFIX, deliver_scores, record_score_delivery
from iofold.lib import metrics
from traces.models import Conversation, EvalSet, Trace

logger = logging.getLogger(__name__)

# Fixed namespace of iofold's score ids; changing it would duplicate every score once.
# (Until December 2026 an id named the eval version, not its set: a trace scored then and
# scored again by another version has both scores, once.)
SCORE_NAMESPACE = uuid.UUID("5f0c3c1e-8d4e-4b7a-9a55-2f6b1d0e9c41")
# Scores per push_scores call; the adapter splits further by body size.
PUSH_CHUNK = 500
COMMENT_LIMIT = 2000
NAME_LIMIT = 200
# The periodic retry looks this far back; older undelivered scores are left as failed.
RETRY_WINDOW = timedelta(days=7)
# (trace source, integration kind) of traces whose ids are the platform's own, so a
# verdict can go back to them: synced from Langfuse or pushed to a Langfuse integration's
# webhook (which shares the integration's ids, so a pushed trace and its sync are one
# row), and synced from LangSmith (a trace id is its root run's id).
SCORED_PAIRS = (
    (Trace.Source.LANGFUSE, Integration.Kind.LANGFUSE),
    (Trace.Source.WEBHOOK, Integration.Kind.LANGFUSE),
    (Trace.Source.LANGSMITH, Integration.Kind.LANGSMITH),
)
SCORED_SOURCES = tuple(dict.fromkeys(source for source, _ in SCORED_PAIRS))


def _eligible(*, opted_in: bool, source: str, integration_kind: str | None) -> bool:
    """Whether a verdict on a trace of this source and integration goes back to it."""
    return bool(opted_in and (source, integration_kind) in SCORED_PAIRS)


@dataclass
class PushReport:
    """What one push did: scores delivered, failed, and the latest failure message."""

    pushed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def score_id(*, eval_set_id: int, trace: Trace) -> str:
    """Return the deterministic score id of an eval set's verdict on a trace."""
    return _score_id(eval_set_id, trace.external_id)


def _score_id(eval_set_id: int, external_id: str) -> str:
    return str(uuid.uuid5(SCORE_NAMESPACE, f"eval_set:{eval_set_id}:trace:{external_id}"))


def score_name(eval: Eval) -> str:
    """Return the score name: the eval set's name, so versions share one Langfuse metric."""
    return (eval.eval_set.name or f"iofold eval {eval.eval_set_id}")[:NAME_LIMIT]


def build_score(execution: EvalExecution) -> ScoreIn:
    """Return the Langfuse score for an execution with a verdict."""
    return _build(execution.eval, _Verdict.of(execution))


@dataclass(slots=True)
class _Verdict:
    """What a score needs of an execution and its trace, read without loading either."""

    pk: int
    passed: bool | None
    reason: str
    eval_id: int
    external_id: str
    timestamp: datetime
    integration_id: int | None
    # Whether the trace came from a Langfuse integration of an eval set that sends scores.
    eligible: bool
    trace_pk: int = 0
    conversation_unit: bool = False
    # Filled by ``_attach_conversations`` for a conversation eval set's verdicts.
    session_id: str | None = None
    last_trace_id: str | None = None

    @classmethod
    def of(cls, execution: EvalExecution) -> _Verdict:
        trace, eval = execution.trace, execution.eval
        integration = trace.integration if trace.integration_id is not None else None
        return cls(
            pk=execution.pk,
            passed=execution.passed,
            reason=execution.reason,
            eval_id=execution.eval_id,
            external_id=trace.external_id,
            timestamp=trace.timestamp,
            integration_id=trace.integration_id,
            eligible=_eligible(
                opted_in=eval.eval_set.score_to_langfuse,
                source=trace.source,
                integration_kind=integration.kind if integration is not None else None,
            ),
            trace_pk=trace.pk,
            conversation_unit=eval.eval_set.unit == EvalSet.Unit.CONVERSATION,
        )


_VERDICT_COLUMNS = (
    "pk",
    "passed",
    "reason",
    "eval_id",
    "trace__external_id",
    "trace__timestamp",
    "trace__integration_id",
    "eval__eval_set__score_to_langfuse",
    "trace__source",
    "trace__integration__kind",
    "trace_id",
    "eval__eval_set__unit",
)


def _verdicts(executions: Iterable[EvalExecution]) -> list[_Verdict]:
    verdicts = _read_verdicts(executions)
    _attach_conversations([v for v in verdicts if v.conversation_unit])
    return verdicts


def _attach_conversations(verdicts: list[_Verdict]) -> None:
    """Point conversation verdicts at their session, and at its last trace (LangSmith).

    A conversation's verdict is kept on its anchor turn; what goes back is about the
    whole session. Two queries for the batch: the conversations, then their last turns.
    """
    if not verdicts:
        return
    conversations = {
        anchor_id: (pk, external_id)
        for pk, anchor_id, external_id in Conversation.objects.filter(
            anchor_id__in=[v.trace_pk for v in verdicts]
        ).values_list("id", "anchor_id", "external_id")
    }
    last_turns = dict(
        Trace.objects.filter(conversation_id__in=[c[0] for c in conversations.values()])
        .order_by("conversation_id", "timestamp", "id")
        .values_list("conversation_id", "external_id")
    )  # the last row per conversation wins: its latest turn
    for verdict in verdicts:
        found = conversations.get(verdict.trace_pk)
        if found is None:
            continue
        pk, external_id = found
        verdict.session_id = external_id
        verdict.last_trace_id = last_turns.get(pk, verdict.external_id)
        # The timestamp stays the anchor turn's own: Langfuse updates a score only when id
        # and timestamp match, and the conversation's start moves when an earlier turn
        # arrives late (the anchor does not), which made a resend a second score.


def _read_verdicts(executions: Iterable[EvalExecution]) -> list[_Verdict]:
    if not isinstance(executions, QuerySet):
        return [_Verdict.of(e) for e in executions]
    # Only the columns a score needs: model instances would decode every trace's data and
    # decrypt the integration's keys once per row, the bulk of a push's time before.
    return [
        _Verdict(
            pk,
            passed,
            reason or "",
            eval_id,
            external_id,
            timestamp,
            integration_id,
            eligible=_eligible(opted_in=opted_in, source=source, integration_kind=kind),
            trace_pk=trace_pk,
            conversation_unit=unit == EvalSet.Unit.CONVERSATION,
        )  # fmt: skip
        for (
            pk,
            passed,
            reason,
            eval_id,
            external_id,
            timestamp,
            integration_id,
            opted_in,
            source,
            kind,
            trace_pk,
            unit,
        ) in executions.values_list(*_VERDICT_COLUMNS)  # fmt: skip
    ]


def session_score_id(*, eval_set_id: int, session_id: str) -> str:
    """Return the deterministic score id of an eval set's verdict on a conversation."""
    return str(uuid.uuid5(SCORE_NAMESPACE, f"eval_set:{eval_set_id}:session:{session_id}"))


def _build(eval: Eval, verdict: _Verdict) -> ScoreIn:
    if verdict.session_id is not None:
        # The latest verdict on the conversation replaces the earlier one (same id).
        return replace(
            _build(eval, replace(verdict, session_id=None)),
            id=session_score_id(eval_set_id=eval.eval_set_id, session_id=verdict.session_id),
            trace_id=verdict.last_trace_id or verdict.external_id,
            session_id=verdict.session_id,
        )
    return ScoreIn(
        id=_score_id(eval.eval_set_id, verdict.external_id),
        trace_id=verdict.external_id,
        name=score_name(eval),
        value=bool(verdict.passed),
        comment=verdict.reason[:COMMENT_LIMIT] or None,
        # Stable across resends: Langfuse updates a score only when id and timestamp match.
        timestamp=verdict.timestamp,
        metadata={
            "source": "iofold",
            "eval_set_id": eval.eval_set_id,
            "eval_id": eval.pk,
            "eval_version": eval.version,
        },
    )


def pushable(executions):
    """Narrow an execution queryset to verdicts that belong in Langfuse."""
    pairs = Q()
    for source, kind in SCORED_PAIRS:
        pairs |= Q(trace__source=source, trace__integration__kind=kind)
    # An archived set judges no new trace; what it judged before goes nowhere either.
    return executions.filter(
        pairs,
        passed__isnull=False,
        eval__eval_set__score_to_langfuse=True,
        eval__eval_set__archived_at__isnull=True,
    )


# A verdict the source does not have as it is: never delivered, or judged again (its
# trace changed) since it was. A verdict's upsert keeps its last delivery's time.
UNDELIVERED = Q(score_pushed_at__isnull=True) | Q(score_pushed_at__lt=F("updated_at"))


def push_run_scores(*, run: EvalRun) -> PushReport:
    """Send the verdicts of a finished run, when its eval set sends scores to Langfuse.

    Only the active version speaks for the set: a shadow's (or a draft's) verdicts stay
    here. Once a shadow is promoted, ``push_pending_scores`` sends its recent ones.
    Verdicts already delivered as they are are not sent again: the run's task carried out
    twice (a duplicate message, a worker restarted before acknowledging it) sends nothing.
    """
    executions = pushable(
        EvalExecution.objects.filter(run=run, eval_id=run.eval_id, eval__status=Eval.Status.ACTIVE)
    ).filter(UNDELIVERED)
    return push_scores(executions=executions)


def resend_replaced_scores(*, eval: Eval) -> int:
    """Mark for resending the version's delivered verdicts that another version of its set
    overwrote since (same score id); return how many. Called when the version becomes the
    active one again (a rollback): the source shows the other version's verdicts until
    the periodic resend puts this one's back."""
    overwritten = (
        EvalExecution.objects.filter(
            eval__eval_set_id=eval.eval_set_id,
            trace=OuterRef("trace"),
            score_pushed_at__gt=OuterRef("score_pushed_at"),
        )
        .exclude(eval=eval)
        .order_by()
    )
    # Only what the resend would send (its window): the version's older verdicts are not
    # read at all (exec_eval_updated_idx), however many it has.
    since = timezone.now() - RETRY_WINDOW
    return (
        EvalExecution.objects.filter(
            eval=eval, updated_at__gte=since, score_pushed_at__isnull=False
        )
        .filter(Exists(overwritten))
        .update(score_pushed_at=None)
    )


def push_pending_scores(*, limit: int = 5000) -> PushReport:
    """Retry verdicts of active evals not yet delivered (not rejected, recent enough)."""
    since = timezone.now() - RETRY_WINDOW
    executions = (
        pushable(EvalExecution.objects.all())
        .filter(UNDELIVERED, eval__status=Eval.Status.ACTIVE, updated_at__gte=since)
        .exclude(score_error__startswith=SCORE_REJECTED_PREFIX)
        .order_by("created_at", "id")
    )
    return push_scores(executions=executions[:limit])


def push_scores(*, executions: Iterable[EvalExecution]) -> PushReport:
    """Send executions' verdicts to their traces' Langfuse integrations and record outcomes.

    Executions without a verdict, of eval sets that do not send scores, or whose trace
    did not come from Langfuse are skipped.
    Never raises for a delivery failure: it is recorded per execution and on the integration.
    """
    report = PushReport()
    by_integration: dict[int, list[_Verdict]] = defaultdict(list)
    for verdict in _verdicts(executions):
        if verdict.passed is None or not verdict.eligible:
            report.skipped += 1
            continue
        by_integration[verdict.integration_id].append(verdict)
    if not by_integration:
        return report
    integrations = Integration.objects.in_bulk(list(by_integration))
    evals = Eval.objects.select_related("eval_set").in_bulk(
        list({v.eval_id for items in by_integration.values() for v in items})
    )
    for integration_id, items in by_integration.items():
        integration = integrations[integration_id]
        for start in range(0, len(items), PUSH_CHUNK):
            outage = _push_chunk(integration, evals, items[start : start + PUSH_CHUNK], report)
            if outage:
                # The source refused a whole chunk after the adapter's retries (down, rate
                # limited, keys refused): the next chunks would only wait through the same
                # retries, holding the worker. They are recorded failed with that reason
                # and the periodic resend (push_pending_scores) delivers them.
                rest = items[start + PUSH_CHUNK :]
                if rest:
                    _record(integration, [], dict.fromkeys((v.pk for v in rest), outage), report)
                break
    return report


def _push_chunk(
    integration: Integration,
    evals: dict[int, Eval],
    items: list[_Verdict],
    report: PushReport,
) -> str:
    """Push one chunk and record its outcome; return the reason when none of it arrived
    for a reason that is not about the scores themselves (an outage), else ''."""
    delivery = deliver_scores(
        integration=integration, scores=[_build(evals[v.eval_id], v) for v in items]
    )
    delivered = [items[index].pk for index in delivery.delivered]
    failed = {items[index].pk: message for index, message in delivery.failed.items()}
    _record(integration, delivered, failed, report)
    reasons = set(failed.values())
    if delivered or len(reasons) != 1:
        return ""
    [reason] = reasons
    return "" if reason.startswith(SCORE_REJECTED_PREFIX) else reason


def _record(
    integration: Integration, delivered: list[int], failed: dict[int, str], report: PushReport
) -> None:
    """Record which verdicts arrived and why the others did not, on them and the integration."""
    now = timezone.now()
    by_message: dict[str, list[int]] = defaultdict(list)
    for pk, message in failed.items():
        by_message[message].append(pk)
    latest = next(reversed(by_message)) if by_message else ""
    # One transaction: the outcomes and the integration's totals agree, in one commit.
    with transaction.atomic():
        if delivered:
            EvalExecution.objects.filter(pk__in=delivered).update(
                score_pushed_at=now, score_error=""
            )
        for message, pks in by_message.items():
            EvalExecution.objects.filter(pk__in=pks).update(
                score_pushed_at=None, score_error=message
            )
        record_score_delivery(
            integration=integration,
            delivered=len(delivered),
            failed=len(failed),
            error=latest,
            at=now,
        )
    report.pushed += len(delivered)
    report.failed += len(failed)
    metrics.SCORE_PUSHES.labels(integration.kind, "delivered").inc(len(delivered))
    metrics.SCORE_PUSHES.labels(integration.kind, "failed").inc(len(failed))
    if failed:
        report.errors.append(latest)
        logger.warning(
            "score push failed integration=%s failed=%d delivered=%d",
            integration.pk,
            len(failed),
            len(delivered),
        )
    elif delivered:
        logger.info("scores pushed integration=%s count=%d", integration.pk, len(delivered))
