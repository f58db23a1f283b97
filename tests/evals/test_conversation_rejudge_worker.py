"""Conversation judging on a real worker: turns arriving out of order, in bursts and twice
over are judged once per distinct content, each verdict kept, the latest sent back once."""

import datetime as dt

import pytest
from django.utils import timezone

from evals.execution import scores
from evals.models import ConversationJudgement, EvalRun
from iofold.pipeline import evaluate_completed_conversations, ingest_traces
from tests.evals.builders import active_conversation_eval
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401
from tests.traces.factories import trace_data
from traces.conversations import complete_idle_conversations
from traces.models import Conversation

pytestmark = pytest.mark.worker

# Turns two hours old: a backfill, or a sync catching up.
T0 = timezone.now().replace(microsecond=0) - dt.timedelta(hours=2)


def _turn(n, minutes, **extra):
    data = trace_data(n)
    data.update(
        id=f"chat-{n}",
        session_id="chat",
        timestamp=(T0 + dt.timedelta(minutes=minutes)).isoformat(),
        **extra,
    )
    return data


def _sweep(workspace, *, after_minutes):
    """The beat's sweep, as if ``after_minutes`` had passed; its completions judged."""
    later = timezone.now() + dt.timedelta(minutes=after_minutes)
    for workspace_id, ids in complete_idle_conversations(later).items():
        evaluate_completed_conversations(workspace_id, ids)


def test_out_of_order_and_repeated_turns_are_judged_once_per_content(
    celery_worker_process,
    transactional_db,
    workspace,
    fake_langfuse,  # noqa: F811
    make_integration,  # noqa: F811
):
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval = active_conversation_eval(workspace, score_to_langfuse=True)
    score_id = scores.session_score_id(eval_set_id=eval.eval_set_id, session_id="chat")

    def ingest(*turns):
        ingest_traces(
            workspace=workspace, source="langfuse", integration=integration, traces=list(turns)
        )

    def settled():
        assert celery_worker_process.wait_until_idle(timeout=60), "the worker did not settle"
        return (
            EvalRun.objects.filter(eval=eval).count(),
            ConversationJudgement.objects.filter(eval=eval).count(),
            fake.score_items.count(score_id),
        )

    # One page brings the last two turns, the last one marked as the end: complete at once,
    # and notified twice (new turns, a completed conversation). Judged once, sent once.
    ingest(_turn(3, 10), _turn(4, 11, metadata={"conversation_end": True}))
    assert settled() == (1, 1, 1)

    # The next pages bring earlier turns (a newest-first sync): the conversation's content
    # changed, and is judged again once, when no turn has arrived for the idle time.
    ingest(_turn(2, 5))
    ingest(_turn(1, 0))
    assert settled() == (1, 1, 1)
    _sweep(workspace, after_minutes=5)  # turns still arriving within the idle time
    assert settled() == (1, 1, 1)
    _sweep(workspace, after_minutes=31)
    assert settled() == (2, 2, 2)
    latest = ConversationJudgement.objects.filter(eval=eval).order_by("-completion").first()
    assert latest.turn_count == 4 and latest.passed is False  # 4 turns: too long
    assert fake.scores[score_id]["value"] == 0

    # The same pages again (a sync re-reading them, a webhook too): nothing changed, so no
    # run, no verdict, no score, however often the sweep and the notifications come.
    ingest(_turn(1, 0), _turn(2, 5))
    ingest(_turn(3, 10), _turn(4, 11, metadata={"conversation_end": True}))
    _sweep(workspace, after_minutes=31)
    conversation = Conversation.objects.for_workspace(workspace).get()
    evaluate_completed_conversations(workspace.pk, [conversation.pk])
    assert settled() == (2, 2, 2)
