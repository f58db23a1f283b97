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

from django.db.models import Exists, OuterRef
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from evals.execution.runs import execute_run, pk_in, start_run
from evals.execution.scores import PushReport, push_run_scores
from evals.models import ConversationJudgement, Eval, EvalExecution, EvalRun, RunStatus
from evals.queue import enqueue_automatic_runs
from traces.conversations import follow_anchors
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


def conversations_to_judge(*, eval: Eval, trace_ids: Sequence[int]) -> list[int]:
    """Return the anchors among `trace_ids` of complete conversations not judged as such.

    A conversation is judged once per completion: when it resumes and completes again,
    its ``completion_count`` moves on and it is judged again.
    """
    judged = ConversationJudgement.objects.filter(
        eval=eval, conversation=OuterRef("pk"), completion=OuterRef("completion_count")
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
    """Keep the run's verdicts on complete conversations as their judgement history."""
    executions = EvalExecution.objects.filter(run=run).values_list(
        "trace_id", "passed", "reason", "error"
    )
    verdicts = {trace_id: (passed, reason, error) for trace_id, passed, reason, error in executions}
    conversations = Conversation.objects.for_workspace(run.workspace_id).filter(
        anchor_id__in=list(verdicts), completed_at__isnull=False
    )
    rows = [
        ConversationJudgement(
            workspace_id=run.workspace_id,
            conversation=conversation,
            eval_id=run.eval_id,
            completion=conversation.completion_count,
            turn_count=conversation.turn_count,
            passed=verdicts[conversation.anchor_id][0],
            reason=verdicts[conversation.anchor_id][1],
            error=verdicts[conversation.anchor_id][2],
        )
        for conversation in conversations
    ]
    # A run executed again (worker restarted) adds nothing twice.
    ConversationJudgement.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


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
    for eval in evaluating_evals(workspace_id=workspace_id):
        todo = traces_to_judge(eval=eval, trace_ids=ids)
        if not todo:
            continue
        # The start of every automatic run, before any chunk can begin: one scan of the new
        # traces, not two.
        run = start_run(
            eval=eval,
            trace_ids=todo,
            trigger=EvalRun.Trigger.AUTOMATIC,
            enqueue=enqueue,
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


def execute_automatic_run(*, run_id: int) -> PushReport | None:
    """Execute an automatic run, then send its verdicts to Langfuse when its set asks to.

    A shadow version's verdicts are kept, not sent (``push_run_scores`` checks the status).

    Safe to call again: execution skips judged traces and score ids are deterministic.
    """
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


def judgement_history(conversation: Conversation) -> list[ConversationJudgement]:
    """Every verdict kept on the conversation, newest first, labelled with its eval."""
    judgements = list(
        ConversationJudgement.objects.for_workspace(conversation.workspace_id)
        .filter(conversation=conversation)
        .select_related("eval__eval_set")
        .order_by("-completion", "-created_at", "-id")
    )
    for judgement in judgements:
        judgement.eval_label = f"{judgement.eval.eval_set.name} v{judgement.eval.version}"
    return judgements
