"""Continuous evaluation: active evals judge new traces as they arrive.

New or changed traces arrive through ``iofold.pipeline.ingest_traces`` (sync, upload, API,
webhook), which stores them and then calls ``queue_automatic_runs`` here; that enqueues
``run_automatic_evals_task``, which calls ``start_automatic_runs``. Each matching active
eval gets one automatic run on the ``execute`` queue; when it finishes, its verdicts go to
Langfuse (``scores``). Batch runs for CI are in ``batch``; drift from later human labels
in ``drift``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from evals.execution import breaker
from evals.execution.runs import dispatch_chunks, execute_run, pk_in, start_run
from evals.execution.scores import PushReport, push_run_scores
from evals.models import (
    ConversationJudgement,
    Eval,
    EvalExecution,
    EvalRun,
    EvalRunChunk,
    RunStatus,
)
from evals.queue import enqueue_automatic_runs, enqueue_run
from iofold.lib.runs import ACTIVE
from traces.conversations import anchored_conversations, content_fingerprint, follow_anchors
from traces.models import Conversation, EvalSet, Trace

logger = logging.getLogger(__name__)

# Versions that judge new traces; only the active one's verdicts go back to the source.
RUNS_ON_NEW_TRACES = (Eval.Status.ACTIVE, Eval.Status.SHADOW)

# --- automatic runs -----------------------------------------------------------------------


def active_evals(*, workspace_id: int) -> list[Eval]:
    """Return the workspace's active evals of eval sets that are not archived."""
    return list(
        Eval.objects.for_workspace(workspace_id)
        .filter(status=Eval.Status.ACTIVE, eval_set__archived_at__isnull=True)
        .select_related("eval_set")
        .order_by("eval_set_id")
    )


def evaluating_evals(*, workspace_id: int) -> list[Eval]:
    """Return the active and shadow evals of sets that are not archived: both judge new traces."""
    return list(
        Eval.objects.for_workspace(workspace_id)
        .filter(status__in=RUNS_ON_NEW_TRACES, eval_set__archived_at__isnull=True)
        .select_related("eval_set")
        .order_by("eval_set_id", "version")
    )


def traces_to_judge(*, eval: Eval, trace_ids: Sequence[int]) -> list[int]:
    """Return the ids among `trace_ids` in the eval's set that it has not judged as they are.

    A trace belongs to a ``filter`` set when the saved filter matches it, and to a
    ``manual`` set only when it was picked. A trace already judged by this version since
    it last changed is left out, so a repeated notification runs nothing twice.
    """
    if not trace_ids:
        return []
    if eval.eval_set.unit == EvalSet.Unit.CONVERSATION:
        return conversations_to_judge(eval=eval, trace_ids=trace_ids)
    up_to_date = EvalExecution.objects.filter(
        eval=eval, trace=OuterRef("pk"), updated_at__gte=OuterRef("updated_at")
    )
    # NOT EXISTS, not NOT IN: PostgreSQL may then anti-join the verdicts in one pass. The
    # correlated NOT IN ran one index probe per trace, and its cost estimate (10,000 new
    # traces: 128,000) crossed jit_above_cost, so each start compiled the query first:
    # 40-75 ms against 19-31 ms on 10,000 new traces (docs/sandbox.md).
    matching = (
        Trace.objects.in_eval_set(eval.eval_set)
        .filter(pk_in(Trace, trace_ids))
        .filter(~Exists(up_to_date))
        .order_by("timestamp", "id")
    )
    return list(matching.values_list("id", flat=True))


# A judgement that stands: its run has not failed (one that failed judged nothing).
STANDING = Q(run__isnull=True) | ~Q(run__status=RunStatus.FAILED)


def conversations_to_judge(*, eval: Eval, trace_ids: Sequence[int]) -> list[int]:
    """Return the anchors among `trace_ids` of complete conversations not judged as such.

    A conversation is judged once per completion: when it resumes and completes again,
    or completes again after its turns changed, its ``completion_count`` moves on and it
    may be judged again (``claim_conversations`` decides whether its content changed).
    """
    judged = ConversationJudgement.objects.filter(
        STANDING, eval=eval, conversation=OuterRef("pk"), completion=OuterRef("completion_count")
    )
    waiting = Conversation.objects.filter(
        anchor=OuterRef("pk"), completed_at__isnull=False
    ).exclude(Exists(judged))
    matching = (
        Trace.objects.in_eval_set(eval.eval_set)
        .filter(pk__in=list(trace_ids))
        .filter(Exists(waiting))
        .order_by("timestamp", "id")
    )
    return list(matching.values_list("id", flat=True))


def _cause(conversation: Conversation, previous: ConversationJudgement | None) -> str:
    """Why a conversation is judged (again), from what its previous judgement saw."""
    Cause = ConversationJudgement.Cause
    if previous is None:
        return Cause.FIRST
    if previous.last_turn_at is not None and conversation.last_activity_at > previous.last_turn_at:
        return Cause.RESUMED
    if conversation.turn_count > previous.turn_count:
        return Cause.LATE_TURNS
    if conversation.turn_count < previous.turn_count:
        return Cause.TURNS_LEFT
    return Cause.CHANGED


def claim_conversations(*, eval: Eval, anchor_ids: Sequence[int]) -> list[ConversationJudgement]:
    """Claim the judgement of these anchors' conversations at their current completion;
    return the claims, one per conversation whose content this eval has not judged last.

    A conversation whose eval receives what it received at the eval's previous judgement
    (``content_fingerprint``) is not judged again: no run, no verdict, no score. Each claim
    is a ``ConversationJudgement`` row, unique per (conversation, eval, completion): of two
    workers claiming one completion at once, the second waits for the first's commit and
    gets nothing. A claim whose run failed is taken over. Call in a transaction, with the
    run created in the same one.
    """
    contents = anchored_conversations(eval.workspace_id, anchor_ids)
    if not contents:
        return []
    ids = [conversation.pk for conversation, _ in contents]
    previous: dict[int, ConversationJudgement] = {}
    for judgement in (
        ConversationJudgement.objects.for_workspace(eval.workspace_id)
        .filter(STANDING, eval=eval, conversation_id__in=ids)
        .order_by("conversation_id", "-completion", "-id")
    ):
        previous.setdefault(judgement.conversation_id, judgement)
    claims = []
    for conversation, payload in contents:
        if not conversation.is_complete:
            continue  # reopened since it was found
        fingerprint = content_fingerprint(payload)
        last = previous.get(conversation.pk)
        if last is not None and last.fingerprint == fingerprint:
            continue  # completed again with nothing changed that the eval sees
        claims.append(
            ConversationJudgement(
                workspace_id=eval.workspace_id,
                conversation=conversation,
                eval=eval,
                completion=conversation.completion_count,
                turn_count=conversation.turn_count,
                last_turn_at=conversation.last_activity_at,
                fingerprint=fingerprint,
                cause=_cause(conversation, last),
            )
        )
    if not claims:
        return []
    # Claims of failed runs judged nothing: they make way.
    ConversationJudgement.objects.filter(
        run__status=RunStatus.FAILED,
        eval=eval,
        conversation_id__in=[claim.conversation_id for claim in claims],
    ).delete()
    taken: dict[int, int] = {}
    # In chunks: a statement's parameters are limited (65,535 on PostgreSQL).
    for start in range(0, len(claims), CLAIM_CHUNK):
        taken.update(_insert_claims(claims[start : start + CLAIM_CHUNK]))
    return [claim for claim in claims if claim.conversation_id in taken]


CLAIM_CHUNK = 1000


_CLAIM_COLUMNS = (
    "workspace_id", "conversation_id", "eval_id", "completion", "turn_count", "last_turn_at",
    "fingerprint", "cause", "reason", "error", "created_at", "updated_at",
)  # fmt: skip


def _insert_claims(claims: list[ConversationJudgement]) -> dict[int, int]:
    """Insert the claims that no other run holds, in one statement; return ``conversation
    id -> claim id`` of those inserted (and set their ids).

    ON CONFLICT DO NOTHING: a completion another transaction claimed, committed or not
    yet, is skipped (PostgreSQL waits for that transaction to end first).
    """
    now = timezone.now()
    table = connection.ops.quote_name(ConversationJudgement._meta.db_table)
    row = "(" + ", ".join(["%s"] * len(_CLAIM_COLUMNS)) + ")"
    params = []
    for claim in claims:
        params += [
            claim.workspace_id, claim.conversation_id, claim.eval_id, claim.completion,
            claim.turn_count, claim.last_turn_at, claim.fingerprint, claim.cause, "", "",
            now, now,
        ]  # fmt: skip
    sql = (
        f"INSERT INTO {table} ({', '.join(_CLAIM_COLUMNS)}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(claims))} "
        "ON CONFLICT (conversation_id, eval_id, completion) DO NOTHING "
        "RETURNING conversation_id, id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        taken = dict(cursor.fetchall())
    for claim in claims:
        claim.pk = taken.get(claim.conversation_id)
    return taken


def move_conversation_verdicts(*, workspace_id: int, moves: dict[int, int]) -> int:
    """Move conversation evals' verdicts from old anchor turns to new ones (``moves``):
    a conversation whose anchor turn moved to another keeps its latest verdict, and the
    conversation the turn joined does not show it. Called in the ingest's transaction."""
    eval_ids = list(
        Eval.objects.for_workspace(workspace_id)
        .filter(eval_set__unit=EvalSet.Unit.CONVERSATION)
        .values_list("id", flat=True)
    )
    if not eval_ids:
        return 0
    verdicts = EvalExecution.objects.for_workspace(workspace_id).filter(eval_id__in=eval_ids)
    return len(follow_anchors(verdicts, moves, ("eval_id",), timezone.now()))


def record_conversation_judgements(*, run: EvalRun) -> int:
    """Give the run's claimed conversation judgements their verdicts; return how many."""
    executions = EvalExecution.objects.filter(run=run).values_list(
        "trace_id", "passed", "reason", "error"
    )
    verdicts = {trace_id: (passed, reason, error) for trace_id, passed, reason, error in executions}
    claims = ConversationJudgement.objects.filter(run=run).select_related("conversation")
    now = timezone.now()
    judged, unjudged = [], []
    for claim in claims:
        # Judged on its anchor as the run started; a turn moving since takes the anchor's
        # verdict with it (move_conversation_verdicts), so read it where it went too.
        verdict = verdicts.get(claim.conversation.anchor_id)
        if verdict is None:
            unjudged.append(claim.pk)  # its anchor went before the run reached it
            continue
        claim.passed, claim.reason, claim.error = verdict
        claim.updated_at = now
        judged.append(claim)
    ConversationJudgement.objects.bulk_update(
        judged, ["passed", "reason", "error", "updated_at"], batch_size=CLAIM_CHUNK
    )
    if unjudged:
        # Not left pending for ever: the next notification of the completion claims it.
        ConversationJudgement.objects.filter(pk__in=unjudged).delete()
    return len(judged)


def queue_automatic_runs(*, workspace_id: int, trace_ids: Sequence[int]) -> None:
    """Queue the automatic runs of active evals on new or changed traces.

    With the broker unreachable, the runs are created here instead, queued: the message
    of the task that would have created them was the only record of these traces, and
    a queued run's lost message is sent again by the sweep (``recover_eval_runs``).
    """
    # Most ingestions happen before any eval is active: skip the broker round trip.
    running = Eval.objects.for_workspace(workspace_id).filter(status__in=RUNS_ON_NEW_TRACES)
    if not (trace_ids and running.exists()):
        return
    try:
        enqueue_automatic_runs(workspace_id, list(trace_ids))
    except (KombuOperationalError, OSError):
        logger.warning(
            "broker unreachable: automatic runs created for the sweep workspace=%s traces=%d",
            workspace_id,
            len(trace_ids),
        )
        start_automatic_runs(workspace_id=workspace_id, trace_ids=trace_ids, enqueue=False)


def start_automatic_runs(
    *, workspace_id: int, trace_ids: Sequence[int], enqueue: bool = True
) -> list[EvalRun]:
    """Start an automatic run of every matching active and shadow eval over the new traces.

    Each run is enqueued on commit on the ``execute`` queue (``run_automatic_eval_task``),
    which executes it and then pushes its scores. With ``enqueue=False`` nothing is
    queued and the caller executes the runs (``execute_automatic_run``).
    """
    ids = list(dict.fromkeys(int(pk) for pk in trace_ids))
    runs: list[EvalRun] = []
    paused = breaker.paused_set_ids(workspace_id=workspace_id)
    for eval in evaluating_evals(workspace_id=workspace_id):
        todo = traces_to_judge(eval=eval, trace_ids=ids)
        if not todo:
            continue
        # A paused set's run is held, queued, until it is resumed (breaker).
        send = enqueue and eval.eval_set_id not in paused
        if eval.eval_set.unit == EvalSet.Unit.CONVERSATION:
            run = _start_conversation_run(eval=eval, anchor_ids=todo, enqueue=send)
            if run is not None:
                runs.append(run)
            continue
        # The start of every automatic run, before any chunk can begin: one scan of the new
        # traces, not two.
        run = start_run(
            eval=eval,
            trace_ids=todo,
            trigger=EvalRun.Trigger.AUTOMATIC,
            enqueue=send,
            stored=set(todo),
        )
        runs.append(run)
    if runs:
        logger.info(
            "automatic eval runs started workspace=%s runs=%d traces=%d",
            workspace_id,
            len(runs),
            len(ids),
        )
    return runs


def _start_conversation_run(
    *, eval: Eval, anchor_ids: Sequence[int], enqueue: bool
) -> EvalRun | None:
    """Claim the conversations' judgements and start one run over those claimed, if any."""
    with transaction.atomic():
        claims = claim_conversations(eval=eval, anchor_ids=anchor_ids)
        if not claims:
            return None
        todo = [claim.conversation.anchor_id for claim in claims]
        run = start_run(
            eval=eval,
            trace_ids=todo,
            trigger=EvalRun.Trigger.AUTOMATIC,
            enqueue=enqueue,
            stored=set(todo),
        )
        ConversationJudgement.objects.filter(pk__in=[c.pk for c in claims]).update(run=run)
    return run


def execute_automatic_run(*, run_id: int) -> PushReport | None:
    """Execute an automatic run, then send its verdicts to Langfuse when its set asks to.

    A shadow version's verdicts are kept, not sent (``push_run_scores`` checks the status).

    Safe to call again: execution skips judged traces and score ids are deterministic.
    A run of a paused eval set is left queued (``breaker``): resuming sends it again.
    """
    if breaker.run_is_held(run_id=run_id):
        logger.info("automatic eval run held: its eval set is paused run=%s", run_id)
        return None
    run = execute_run(run_id=run_id)
    if run is None or run.status != RunStatus.SUCCEEDED:
        return None
    return after_automatic_run(run=run)


def after_automatic_run(*, run: EvalRun) -> PushReport:
    """Keep a finished automatic run's conversation verdicts, push its scores, and hand its
    traces to the set's new active version when its own was replaced meanwhile.

    Whoever finished the run calls it: its task, or a split run's last chunk.
    """
    eval = Eval.objects.select_related("eval_set").get(pk=run.eval_id)
    if eval.eval_set.unit == EvalSet.Unit.CONVERSATION:
        record_conversation_judgements(run=run)
    report = push_run_scores(run=run)
    if eval.status not in RUNS_ON_NEW_TRACES:
        # Activated (or archived) while this run judged a backlog: its verdicts no longer
        # go back, so without this the backlog would never be scored. The active version
        # judges what it has not judged yet (traces_to_judge), and pushes it.
        trace_ids = EvalRun.objects.filter(pk=run.pk).values_list("trace_ids", flat=True).get()
        queue_automatic_runs(workspace_id=run.workspace_id, trace_ids=trace_ids)
    return report


# --- the circuit breaker's pause (evals/execution/breaker.py) ------------------------------


def resume(*, eval_set, user=None) -> int | None:
    """Resume a paused set's continuous evaluation; return how many held runs were sent
    (None: it was not paused)."""
    if not breaker.lift(eval_set=eval_set, user=user):
        return None
    return release_held_runs(eval_set=eval_set)


def resume_on_activation(*, eval: Eval) -> int:
    """A new version was activated: it starts unpaused, with the held traces to judge."""
    if not breaker.lift_on_activation(eval=eval):
        return 0
    logger.info("continuous evaluation resumed by activation eval=%s", eval.pk)
    return release_held_runs(eval_set=eval.eval_set)


def release_held_runs(*, eval_set) -> int:
    """Send the set's queued automatic runs to the workers, after commit.

    A run of a version that no longer judges new traces is not run on its old code: it
    is closed and its traces go to the set's current versions instead.
    """
    held = list(
        EvalRun.objects.for_workspace(eval_set.workspace_id)
        .filter(
            eval__eval_set_id=eval_set.pk,
            trigger=EvalRun.Trigger.AUTOMATIC,
            status__in=ACTIVE,
        )
        .select_related("eval")
        .order_by("pk")
    )
    for run in held:
        if run.eval.status not in RUNS_ON_NEW_TRACES and run.status == RunStatus.QUEUED:
            replaced = f"Not run: v{run.eval.version} was replaced while paused; the new one runs."
            EvalRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).fail(replaced)
            transaction.on_commit(
                lambda ids=run.trace_ids: queue_automatic_runs(
                    workspace_id=eval_set.workspace_id, trace_ids=ids
                )
            )
            continue
        if EvalRunChunk.objects.filter(run=run).exists():
            # Its chunks sent before the pause again (their messages were dropped), and
            # the next ones up to its share.
            dispatch_chunks(run_id=run.pk, resend=True)
        elif run.status == RunStatus.QUEUED:
            transaction.on_commit(lambda pk=run.pk: enqueue_run(pk, automatic=True))
    return len(held)


def judgement_history(conversation: Conversation) -> list[ConversationJudgement]:
    """Every verdict kept on the conversation, newest first, labelled with its eval; each
    eval's newest (``latest``) is the one its anchor holds and the source was sent."""
    judgements = list(
        ConversationJudgement.objects.for_workspace(conversation.workspace_id)
        .filter(STANDING, conversation=conversation)
        .select_related("eval__eval_set")
        .order_by("-completion", "-created_at", "-id")
    )
    seen = set()
    for judgement in judgements:
        judgement.eval_label = f"{judgement.eval.eval_set.name} v{judgement.eval.version}"
        # One being judged is not the latest verdict yet: the anchor holds the one before.
        judgement.latest = not judgement.is_pending and judgement.eval_id not in seen
        if not judgement.is_pending:
            seen.add(judgement.eval_id)
    return judgements
