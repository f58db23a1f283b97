"""Conversation eval sets: the eval receives the conversation dict; continuous judging on
completion, again after a resume, with every judgement kept; verdicts back as session scores."""

# The fake-Langfuse fixtures come from the integration tests (same parameter names).
# ruff: noqa: F811

import datetime as dt

import pytest
from django.utils import timezone

import iofold.pipeline
from evals.execution import continuous
from evals.models import ConversationJudgement, Eval, EvalExecution
from iofold.pipeline import ingest_traces
from tests.evals.builders import active_conversation_eval, use_fake_openai
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401
from tests.traces.factories import EvalSetFactory, arriving_live, trace_data
from traces.conversations import complete_idle_conversations
from traces.models import Conversation, EvalSet

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _turn(n, session, minutes, **extra):
    data = trace_data(n)
    data.update(
        id=f"{session}-{n}",
        session_id=session,
        timestamp=(T0 + dt.timedelta(minutes=minutes)).isoformat(),
        **extra,
    )
    return data


def _ingest(workspace, traces):
    with arriving_live(workspace, traces):
        return ingest_traces(workspace=workspace, source="upload", traces=traces)


@pytest.fixture
def conversation_eval(workspace):
    return active_conversation_eval(workspace)


def _judge(workspace, trace_ids):
    runs = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=trace_ids, enqueue=False
    )
    for run in runs:
        continuous.execute_automatic_run(run_id=run.pk)
    return runs


def test_open_conversations_are_not_judged_per_turn(workspace, conversation_eval):
    result = _ingest(workspace, [_turn(1, "chat", 0), _turn(2, "chat", 1)])
    assert _judge(workspace, result.trace_ids) == []


def test_judged_on_completion_and_again_after_resume_both_kept(workspace, conversation_eval):
    _ingest(workspace, [_turn(1, "chat", 0), _turn(2, "chat", 1)])
    conversation = Conversation.objects.for_workspace(workspace).get()

    complete_idle_conversations(T0 + dt.timedelta(minutes=40))
    _judge(workspace, [conversation.anchor_id])
    _judge(workspace, [conversation.anchor_id])  # a repeated notification judges nothing

    first = ConversationJudgement.objects.for_workspace(workspace).get()
    assert (first.completion, first.turn_count, first.passed) == (1, 2, True)
    assert first.reason == "2 turns, complete, user said: Where is order 1?"

    # The user comes back: the conversation reopens, completes again and is judged again.
    _ingest(workspace, [_turn(3, "chat", 90)])
    conversation.refresh_from_db()
    assert not conversation.is_complete
    assert _judge(workspace, [conversation.anchor_id]) == []
    complete_idle_conversations(T0 + dt.timedelta(minutes=130))
    _judge(workspace, [conversation.anchor_id])

    history = list(
        ConversationJudgement.objects.for_workspace(workspace)
        .filter(conversation=conversation)
        .order_by("completion")
        .values_list("completion", "turn_count", "passed")
    )
    assert history == [(1, 2, True), (2, 3, False)]
    # The latest verdict is the conversation's execution, as for a trace.
    latest = EvalExecution.objects.get(eval=conversation_eval)
    assert (latest.trace_id, latest.passed) == (conversation.anchor_id, False)


def test_tool_errors_across_turns_reach_the_eval(workspace, conversation_eval):
    _ingest(
        workspace,
        [
            _turn(1, "chat", 0),
            {
                **trace_data(2, error="timeout"),
                "id": "chat-2",
                "session_id": "chat",
                "timestamp": (T0 + dt.timedelta(minutes=1)).isoformat(),
                "metadata": {"conversation_end": True},
            },
        ],
    )
    conversation = Conversation.objects.for_workspace(workspace).get()
    assert conversation.is_complete
    _judge(workspace, [conversation.anchor_id])
    judgement = ConversationJudgement.objects.get()
    assert (judgement.passed, judgement.reason) == (False, "a tool failed in the conversation")


def test_completion_queues_the_anchor_turns(
    workspace, conversation_eval, monkeypatch, django_capture_on_commit_callbacks
):
    from evals import tasks

    queued = []
    monkeypatch.setattr(
        tasks.run_automatic_evals_task, "apply_async", lambda args, **_: queued.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(workspace, [_turn(1, "a", 0), _turn(2, "b", 0)])
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(workspace, [_turn(3, "a", 1, tags=["conversation:end"])])
    a = Conversation.objects.get(external_id="a")
    assert queued[-1] == (workspace.pk, [a.anchor_id])

    queued.clear()
    completed = iofold.pipeline.complete_idle_conversations_task.run()
    b = Conversation.objects.get(external_id="b")
    assert completed == 1 and queued == [(workspace.pk, [b.anchor_id])]


# --- judged once per distinct content ---------------------------------------------------------

END = {"metadata": {"conversation_end": True}}


def _history(conversation):
    return list(
        ConversationJudgement.objects.filter(conversation=conversation)
        .order_by("completion")
        .values_list("completion", "turn_count", "cause", "passed")
    )


def _arrive(workspace, *turns):
    """Turns arriving now, whenever they began (a late page, a held-back batch)."""
    return ingest_traces(workspace=workspace, source="upload", traces=list(turns))


def _later(minutes):
    return timezone.now() + dt.timedelta(minutes=minutes)


def test_a_conversation_notified_twice_is_judged_once(workspace, conversation_eval):
    result = _ingest(workspace, [_turn(1, "chat", 0), _turn(2, "chat", 1, **END)])
    conversation = Conversation.objects.for_workspace(workspace).get()

    # The ingest notifies its new turns and the completed conversation: two tasks, both
    # starting runs before either run has judged anything.
    first = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=result.trace_ids, enqueue=False
    )
    second = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=[conversation.anchor_id], enqueue=False
    )
    assert len(first) == 1 and second == []
    continuous.execute_automatic_run(run_id=first[0].pk)
    assert _history(conversation) == [(1, 2, "first", True)]


def test_two_workers_at_once_start_one_run(workspace, conversation_eval, transactional_db):
    """Two workers find the same completed conversation unjudged at the same moment: the
    completion's claim is unique, so one of them starts a run and the other nothing."""
    import threading

    from django.db import connection, transaction

    from traces.ingest import upsert_traces

    # Stored without queueing their evaluation: this test commits, and the suite's real
    # worker, once started, would judge the conversation before the two threads do.
    turns = [_turn(1, "chat", 0), _turn(2, "chat", 1, **END)]
    with arriving_live(workspace, turns), transaction.atomic():
        upsert_traces(workspace=workspace, source="upload", traces=turns)
    anchor = Conversation.objects.for_workspace(workspace).get().anchor_id
    found = threading.Barrier(2, timeout=20)
    original = continuous.traces_to_judge
    started, errors = [], []

    def traces_to_judge(**kwargs):
        todo = original(**kwargs)
        found.wait()  # both have found it unjudged
        return todo

    def worker():
        try:
            started.extend(
                continuous.start_automatic_runs(
                    workspace_id=workspace.pk, trace_ids=[anchor], enqueue=False
                )
            )
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    continuous.traces_to_judge = traces_to_judge
    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        continuous.traces_to_judge = original
    assert errors == [] and len(started) == 1
    assert ConversationJudgement.objects.filter(run=started[0]).count() == 1


def test_late_earlier_turns_are_judged_again_once_they_settle(workspace, conversation_eval):
    _ingest(workspace, [_turn(3, "chat", 10), _turn(4, "chat", 11, **END)])
    conversation = Conversation.objects.for_workspace(workspace).get()
    _judge(workspace, [conversation.anchor_id])  # on the two turns it has

    # The next pages of a newest-first sync bring the earlier turns, one after the other.
    _arrive(workspace, _turn(2, "chat", 5))
    _arrive(workspace, _turn(1, "chat", 0))
    conversation.refresh_from_db()
    # Still complete (nobody came back), its turns changed: not judged page by page.
    assert conversation.is_complete and conversation.is_settling
    assert conversation.completion_count == 1
    assert _judge(workspace, [conversation.anchor_id]) == []
    assert complete_idle_conversations(_later(5)) == {}  # still arriving within the idle time

    # Once none has arrived for the idle time: complete again, judged again, once.
    assert complete_idle_conversations(_later(31)) == {workspace.pk: [conversation.pk]}
    _judge(workspace, [conversation.anchor_id])
    _judge(workspace, [conversation.anchor_id])
    assert complete_idle_conversations(_later(90)) == {}
    assert _history(conversation) == [(1, 2, "first", True), (2, 4, "late_turns", False)]
    latest = EvalExecution.objects.get(eval=conversation_eval)
    assert (latest.trace_id, latest.passed) == (conversation.anchor_id, False)


def test_a_backfill_is_judged_once_its_pages_have_all_arrived(workspace, conversation_eval):
    """Turns begun long ago, arriving page by page: the conversation waits for the last page
    (none arriving for the idle time) rather than being judged on the first."""
    _arrive(workspace, _turn(3, "chat", 10), _turn(4, "chat", 11))
    conversation = Conversation.objects.for_workspace(workspace).get()
    assert complete_idle_conversations(_later(5)) == {}
    _arrive(workspace, _turn(1, "chat", 0), _turn(2, "chat", 5))
    assert complete_idle_conversations(_later(20)) == {}
    assert complete_idle_conversations(_later(31)) == {workspace.pk: [conversation.pk]}
    _judge(workspace, [conversation.anchor_id])
    assert _history(conversation) == [(1, 4, "first", False)]


def test_completed_again_with_nothing_changed_is_not_judged_again(workspace, conversation_eval):
    _ingest(workspace, [_turn(1, "chat", 0), _turn(2, "chat", 1)])
    conversation = Conversation.objects.for_workspace(workspace).get()
    complete_idle_conversations(T0 + dt.timedelta(minutes=40))
    _judge(workspace, [conversation.anchor_id])

    # A turn leaves for another session and comes back (a source re-sending an older
    # version of it), another changes in place and back: the conversation is resumed and
    # completes again, with what its eval already judged.
    _arrive(workspace, {**_turn(2, "chat", 1), "session_id": "other"})
    _arrive(workspace, _turn(2, "chat", 1))
    _arrive(workspace, _turn(1, "chat", 0, output="edited"))
    _arrive(workspace, _turn(1, "chat", 0))
    assert conversation.pk in complete_idle_conversations(_later(31))[workspace.pk]
    assert _judge(workspace, [conversation.anchor_id]) == []
    conversation.refresh_from_db()
    assert conversation.completion_count == 2
    assert _history(conversation) == [(1, 2, "first", True)]


def test_a_failed_run_leaves_the_conversation_to_the_next_one(workspace, conversation_eval):
    from evals.execution.runs import fail_run

    _ingest(workspace, [_turn(1, "chat", 0), _turn(2, "chat", 1, **END)])
    conversation = Conversation.objects.for_workspace(workspace).get()
    [run] = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=[conversation.anchor_id], enqueue=False
    )
    fail_run(run_id=run.pk, error="The sandbox could not run the eval: no nsjail")

    assert len(_judge(workspace, [conversation.anchor_id])) == 1
    assert _history(conversation) == [(1, 2, "first", True)]


def test_a_claim_whose_anchor_moved_before_its_run_is_not_left_judging(
    workspace, conversation_eval
):
    _ingest(workspace, [_turn(1, "chat", 0), _turn(2, "chat", 1), _turn(3, "chat", 2, **END)])
    conversation = Conversation.objects.for_workspace(workspace).get()
    [run] = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=[conversation.anchor_id], enqueue=False
    )
    # Before the run reaches it, its first turn moves to another session.
    _arrive(workspace, {**_turn(1, "chat", 0), "session_id": "elsewhere"})
    continuous.execute_automatic_run(run_id=run.pk)
    conversation.refresh_from_db()
    assert _history(conversation) == []  # not shown as being judged for ever

    # The conversation, notified again, is judged on the turns it has.
    _judge(workspace, [conversation.anchor_id])
    assert _history(conversation) == [(1, 2, "first", True)]


def test_an_eval_failing_on_one_conversation_judges_the_others(workspace):
    active_conversation_eval(
        workspace, code='def eval_fn(c):\n    return c["turns"][1]["id"] == "b-2", c["id"]\n'
    )
    _ingest(
        workspace,
        [_turn(1, "a", 0, **END), _turn(1, "b", 0), _turn(2, "b", 1, **END)],
    )
    anchors = list(
        Conversation.objects.for_workspace(workspace)
        .order_by("external_id")
        .values_list("anchor_id", flat=True)
    )
    _judge(workspace, anchors)

    judged = {
        j.conversation.external_id: (j.status, j.error.split(" (")[0])
        for j in ConversationJudgement.objects.select_related("conversation")
    }
    assert judged == {"a": ("error", "IndexError: list index out of range"), "b": ("passed", "")}


def test_the_page_and_the_api_say_why_each_verdict_was_given(
    workspace, conversation_eval, owner, login
):
    from django.urls import reverse
    from django.utils.html import strip_tags

    _ingest(workspace, [_turn(3, "chat", 10), _turn(4, "chat", 11, **END)])
    conversation = Conversation.objects.for_workspace(workspace).get()
    _judge(workspace, [conversation.anchor_id])
    _arrive(workspace, _turn(1, "chat", 0))
    client = login(owner)
    url = reverse("traces:conversation_detail", args=[workspace.slug, conversation.pk])

    def page():
        return " ".join(strip_tags(client.get(url).content.decode()).split())

    assert "judged again once none has arrived for the idle time" in page()
    complete_idle_conversations(_later(31))
    [run] = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=[conversation.anchor_id], enqueue=False
    )
    text = page()
    assert "judging" in text and "Its run has not judged it yet" in text
    assert text.count("latest") == 1  # the verdict given, until the new one is
    continuous.execute_automatic_run(run_id=run.pk)

    text = page()
    assert "Why: earlier turns arrived after it was judged" in text
    assert "Why: first judgement" in text
    assert text.index("3 turns") < text.index("2 turns")  # newest first
    assert text.count("latest") == 1 and "judged again once none" not in text
    runs = client.get(f"/api/v1/conversations/{conversation.pk}/runs/").json()
    assert [(r["completion"], r["cause"], r["status"], r["latest"]) for r in runs] == [
        (2, "late_turns", "failed", True),
        (1, "first", "passed", False),
    ]
    assert runs[0]["fingerprint"] != runs[1]["fingerprint"]
    detail = client.get(f"/api/v1/conversations/{conversation.pk}/").json()
    assert detail["is_settling"] is False and detail["completion_count"] == 2


# --- verdicts back to the source ------------------------------------------------------------


def test_session_scores_reach_langfuse_with_a_stable_id(workspace, fake_langfuse, make_integration):
    from evals.execution import scores

    fake = fake_langfuse()
    integration = make_integration(fake)
    active = active_conversation_eval(workspace, score_to_langfuse=True, name="Whole chats")
    ingest_traces(
        workspace=workspace,
        source="langfuse",
        integration=integration,
        traces=[
            _turn(1, "lf-chat", 0),
            _turn(2, "lf-chat", 1, metadata={"conversation_end": True}),
        ],
    )
    conversation = Conversation.objects.for_workspace(workspace).get()
    _judge(workspace, [conversation.anchor_id])

    expected = scores.session_score_id(eval_set_id=active.eval_set_id, session_id="lf-chat")
    assert list(fake.scores) == [expected]
    sent = fake.scores[expected]
    assert sent["sessionId"] == "lf-chat" and "traceId" not in sent
    assert (sent["name"], sent["value"], sent["dataType"]) == ("Whole chats", 1, "BOOLEAN")
    assert sent["timestamp"].startswith("2026-11-30T12:00:00")

    # Resumed and completed again: judged again, and the same score is overwritten.
    ingest_traces(
        workspace=workspace,
        source="langfuse",
        integration=integration,
        traces=[_turn(3, "lf-chat", 60, metadata={"conversation_end": True})],
    )
    _judge(workspace, [conversation.anchor_id])
    assert list(fake.scores) == [expected]
    assert fake.scores[expected]["value"] == 0
    assert ConversationJudgement.objects.filter(conversation=conversation).count() == 2
    # Resending changes nothing either.
    scores.push_scores(executions=EvalExecution.objects.filter(eval=active))
    assert list(fake.scores) == [expected]


def test_a_resent_session_score_keeps_its_timestamp_when_an_earlier_turn_arrives(
    workspace, fake_langfuse, make_integration
):
    """Langfuse updates a score only when its id and timestamp match (CONTRACT.md 2.6): the
    session score's timestamp was the conversation's start, which an earlier turn arriving
    late moved, so the resend of the same verdict made a second score."""
    from evals.execution import scores

    fake = fake_langfuse()
    integration = make_integration(fake)
    active = active_conversation_eval(workspace, score_to_langfuse=True)
    ingest = lambda *turns: ingest_traces(  # noqa: E731
        workspace=workspace, source="langfuse", integration=integration, traces=list(turns)
    )
    ingest(_turn(2, "lf-late", 5), _turn(3, "lf-late", 6, metadata={"conversation_end": True}))
    conversation = Conversation.objects.for_workspace(workspace).get()
    _judge(workspace, [conversation.anchor_id])
    expected = scores.session_score_id(eval_set_id=active.eval_set_id, session_id="lf-late")
    first = dict(fake.scores[expected])

    ingest(_turn(1, "lf-late", 0))  # the exporter's first turn, delivered last
    conversation.refresh_from_db()
    assert conversation.started_at == T0  # the conversation starts earlier now
    scores.push_scores(executions=EvalExecution.objects.filter(eval=active))

    assert fake.scores[expected]["timestamp"] == first["timestamp"]
    assert fake.scores[expected] == first


def test_a_conversation_from_a_webhook_and_a_sync_is_judged_and_scored_once(
    workspace, fake_langfuse, make_integration
):
    """Langfuse's webhook and its sync share the integration's namespace: their turns of
    one session are one conversation, judged on all of them, one session score sent."""
    from evals.execution import scores

    fake = fake_langfuse()
    integration = make_integration(fake)
    eval_set = active_conversation_eval(workspace, score_to_langfuse=True).eval_set

    def arrive(source, *turns):
        result = ingest_traces(
            workspace=workspace, source=source, integration=integration, traces=list(turns)
        )
        _judge(workspace, [*result.trace_ids, *result.completed_conversation_ids])

    # The webhook brings the last turn as it ends; the sync brings the first two later.
    arrive("webhook", _turn(3, "both", 2, **END))
    arrive("langfuse", _turn(1, "both", 0), _turn(2, "both", 1))
    arrive("langfuse", _turn(3, "both", 2, **END))  # the sync reads the last one too
    conversation = Conversation.objects.for_workspace(workspace).get()
    assert conversation.turn_count == 3
    assert complete_idle_conversations(_later(31)) == {workspace.pk: [conversation.pk]}
    _judge(workspace, [conversation.anchor_id])

    assert _history(conversation) == [(1, 1, "first", True), (2, 3, "late_turns", False)]
    score_id = scores.session_score_id(eval_set_id=eval_set.pk, session_id="both")
    assert fake.score_items == [score_id, score_id]
    assert fake.scores[score_id]["value"] == 0


def test_fake_langfuse_refuses_a_score_with_no_or_two_subjects(fake_langfuse):
    fake = fake_langfuse()
    base = {"name": "x", "value": 1, "dataType": "BOOLEAN"}
    assert fake.post_scores(base)[0] == 400
    assert fake.post_scores({**base, "traceId": "t", "sessionId": "s"})[0] == 400
    assert fake.post_scores({**base, "sessionId": "s", "observationId": "o"})[0] == 400
    assert fake.post_scores({**base, "sessionId": "s"})[0] == 200


# --- generation at conversation level ----------------------------------------------------

TOPICS = ["refund", "invoice", "password", "delivery", "address", "discount", "warranty"]
ASKS = ["Where is my {}?", "Can you check the {} for order {}?", "I need help with my {} now."]


def _synthetic_conversation(rng, index: int, *, repeated: bool) -> dict:
    """A chat of 2-5 turns; in the bad ones the user has to ask the same thing again."""
    from traces.conversations import turn_messages

    turns = []
    count = rng.randint(2, 5)
    asked = []
    for n in range(count):
        if repeated and n == count - 1:
            question = asked[0] + " I asked this already."
        else:
            topic = TOPICS[(index + n * 3) % len(TOPICS)]
            question = rng.choice(ASKS).format(topic, 1000 + rng.randint(0, 8999))
        asked.append(question)
        data = trace_data(index * 10 + n, error="timeout" if rng.random() < 0.3 else None)
        data.update(input={"user": question}, output=rng.choice(["Done.", "Here it is.", "Sure."]))
        turns.append(data)
    return {
        "id": f"chat-{index}",
        "messages": [m for t in turns for m in turn_messages(t)],
        "turns": turns,
        "metadata": {"turn_count": count},
        "is_complete": True,
    }


def test_offline_synthesiser_recovers_a_multi_turn_rule():
    import random

    import sandbox
    from evals.datasets import LabelledExample
    from evals.sandboxing import sandbox_limits
    from evals.synthesis import fit

    rng = random.Random(16)
    chats = [_synthetic_conversation(rng, i, repeated=i % 3 == 0) for i in range(60)]
    labels = ["negative" if i % 3 == 0 else "positive" for i in range(60)]
    train = [
        LabelledExample(trace=c, label=label, group=c["id"])
        for c, label in zip(chats[:40], labels[:40], strict=True)
    ]

    fitted = fit(train, criteria="Good when the user never has to ask the same thing twice.")

    assert fitted.rules and "repeat themselves" in " ".join(fitted.rules)
    held_out = chats[40:]
    results = sandbox.run(fitted.code, held_out, sandbox_limits())
    verdicts = [r.passed for r in results]
    assert verdicts == [label == "positive" for label in labels[40:]]
    # The code speaks of what it judges, and says what .predict says.
    assert [(r.passed, r.reason) for r in results] == [fitted.predict(c) for c in held_out]
    eval_fn = fitted.code[: fitted.code.index("# Helpers")]
    assert "def eval_fn(conversation: dict)" in eval_fn and "v = view(conversation)" in eval_fn
    assert "trace" not in eval_fn.lower()
    assert "labelled conversations" in eval_fn
    assert fitted.rules[-1] == "2. Otherwise the conversation is good"


def test_offline_synthesiser_without_a_rule_names_conversations():
    import random

    import sandbox
    from evals.datasets import LabelledExample
    from evals.sandboxing import sandbox_limits
    from evals.synthesis import fit

    rng = random.Random(5)
    chats = [_synthetic_conversation(rng, i, repeated=False) for i in range(2)]
    fitted = fit(
        [
            LabelledExample(trace=c, label=label, group=c["id"])
            for c, label in zip(chats, ["positive", "negative"], strict=True)
        ]
    )

    assert not fitted.reliable
    assert "def eval_fn(conversation: dict)" in fitted.code and "trace" not in fitted.code
    assert "every conversation" in fitted.constant_reason
    assert "trace" not in fitted.constant_reason
    (result,) = sandbox.run(fitted.code, chats[:1], sandbox_limits())
    assert (result.passed, result.reason) == fitted.predict(chats[0])
    assert "labelled conversations" in result.reason


def test_llm_prompt_describes_the_conversation_contract():
    import random

    from evals.generation.prompts import PromptExample, build_generation_prompt

    rng = random.Random(3)
    chats = [_synthetic_conversation(rng, i, repeated=i == 0) for i in range(2)]
    prompt = build_generation_prompt(
        criteria="The user never repeats themselves.",
        examples=[
            PromptExample(trace=chats[0], label="negative", note="asked twice"),
            PromptExample(trace=chats[1], label="positive", note=""),
        ],
        token_budget=20_000,
    )
    assert "def eval_fn(conversation: dict) -> tuple[bool, str]:" in prompt.system
    assert '"turns": [trace, ...]' in prompt.system and "I asked this already" in prompt.user
    plain = build_generation_prompt(
        criteria="x",
        examples=[PromptExample(trace=chats[0]["turns"][0], label="negative", note="")],
        token_budget=20_000,
    )
    assert "## Conversations" not in plain.system


def test_export_of_a_conversation_set_holds_the_conversations(workspace, owner):
    from evals.versions.export import export_eval_set
    from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback

    _ingest(workspace, [_turn(1, "chat", 0), _turn(2, "chat", 1)])
    conversation = Conversation.objects.for_workspace(workspace).get()
    eval_set = create_eval_set(
        workspace=workspace, name="Chats", criteria="ok", unit="conversation"
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[conversation.anchor_id])
    record_feedback(eval_set=eval_set, trace=conversation.anchor, user=owner, rating="negative")

    exported = export_eval_set(eval_set)

    assert exported["eval_set"]["unit"] == "conversation"
    [label] = exported["labels"]
    assert label["label"] == "negative" and label["trace"]["id"] == "chat"
    assert len(label["trace"]["turns"]) == 2 and len(label["trace"]["messages"]) == 4


def test_a_judge_eval_judges_a_conversation_through_its_messages(workspace, owner, fake_llm):
    """A conversation set's judge eval asks judge() about the whole chat, turn by turn."""
    from evals.execution.runs import run_eval_now
    from evals.generation.services import examples_for
    from evals.judging.compare import judge_template
    from evals.judging.templates import judge_code
    from traces.services import record_feedback

    use_fake_openai(workspace, fake_llm, api_key="sk-conv-judge-16b")
    # The fake judge: a conversation is bad when the user had to ask twice.
    fake_llm.judge_rule = lambda request: (
        "no" if "again" in request.prompt_text.rsplit("to judge:", 1)[-1] else "yes"
    )
    chats = {
        "fine": ["Where is order 7?", "Thanks, and the invoice?"],
        "again": ["Where is order 8?", "Where is order 8? I am asking again."],
        "fine-2": ["Can I change my address?", "Great, thanks."],
        "again-2": ["Refund order 9?", "Refund order 9, again please."],
    }
    for n, (session, questions) in enumerate(chats.items()):
        _ingest(
            workspace,
            [
                {**_turn(10 * n + i, session, i), "input": {"user": q}, "output": f"Reply {i}."}
                for i, q in enumerate(questions)
            ],
        )
    eval_set = EvalSetFactory(
        workspace=workspace,
        unit=EvalSet.Unit.CONVERSATION,
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={},
        criteria="The user never has to ask twice.",
    )
    anchors = {c.external_id: c.anchor for c in Conversation.objects.for_workspace(workspace)}
    for session in ("fine-2", "again-2"):
        rating = "negative" if "again" in session else "positive"
        record_feedback(eval_set=eval_set, trace=anchors[session], user=owner, rating=rating)
    template = judge_template(eval_set)
    assert template.question == "Does this conversation meet the criteria?"
    code = judge_code(
        criteria=eval_set.criteria,
        question=template.question,
        material=template.material,
        examples=examples_for(eval_set)[0],
        shots=2,
    )
    eval = Eval.objects.create(
        workspace=workspace, eval_set=eval_set, version=1, code=code, kind="judge"
    )

    executions = run_eval_now(eval=eval, traces=[anchors["fine"], anchors["again"]])

    assert [(e.passed, e.error) for e in executions] == [(True, ""), (False, "")]
    [prompt] = [r.prompt_text for r in fake_llm.requests if "order 8" in r.prompt_text]
    judged = prompt.rsplit("The conversation to judge:", 1)[-1]
    # Every turn of the conversation, in order, as the user and assistant said it.
    assert judged.index("User: Where is order 8?") < judged.index("Assistant: Reply 0.")
    assert judged.index("Assistant: Reply 0.") < judged.index("User: Where is order 8? I am")
    assert "null" not in prompt
    # The labelled conversations are the examples, read the same way.
    assert "User: Refund order 9?" in prompt and "Answer: no" in prompt


def test_a_conversation_sets_judge_page_speaks_of_conversations(workspace, owner, login):
    from django.utils.html import strip_tags

    from tests.traces.factories import EvalSetFactory

    eval_set = EvalSetFactory(workspace=workspace, unit="conversation")
    url = f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/judge/"
    client = login(owner)

    pages = [
        client.get(url),
        client.post(url, {"criterion": "nonsense", "material": "reply", "shots": 1}),
    ]

    for response in pages:
        text = " ".join(strip_tags(response.content.decode()).split())
        assert "What of each conversation the judge reads." in text
        assert "Labelled examples most like the conversation" in text
        assert "most like each conversation" in text
        assert "each trace" not in text and "like the trace" not in text


def test_a_conversation_sets_version_and_shadow_pages_speak_of_conversations(
    workspace, owner, login
):
    from django.template.loader import render_to_string
    from django.utils.html import strip_tags

    from evals.execution.shadow import shadow_pair
    from evals.versions import services as version_services
    from evals.views.generation import result_context

    eval_set = EvalSetFactory(workspace=workspace, unit="conversation")
    found_none = {"no_reliable_eval": True}
    Eval.objects.create(
        workspace=workspace, eval_set=eval_set, version=1, code="x", provider="offline",
        status=Eval.Status.ACTIVE, activated_at=timezone.now(),
    )  # fmt: skip
    draft = Eval.objects.create(
        workspace=workspace, eval_set=eval_set, version=2, code="x", provider="offline",
        metrics=found_none,
    )  # fmt: skip
    client = login(owner)

    detail = client.get(f"/w/{workspace.slug}/evals/{draft.pk}/")
    result = render_to_string("evals/_result.html", result_context(draft))
    version_services.shadow_eval(eval=draft)
    assert shadow_pair(eval_set)[1] == draft
    shadow = client.get(f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/shadow/")

    def text(html):
        return " ".join(strip_tags(html).split())

    for notice in (text(detail.content.decode()), text(result)):
        # One notice on the eval's page and in a generation's result, in the set's words.
        assert "gives every conversation the same verdict" in notice
        assert "label more conversations of the rarer verdict" in notice
        assert "every trace" not in notice and "more traces" not in notice
    shadow_text = text(shadow.content.decode())
    assert "Both versions judge every new conversation;" in shadow_text
    assert "none of the new conversations both versions judged has a label" in shadow_text
    assert "New conversations both judged" in shadow_text
    assert "traces" not in shadow_text.split("Active vs shadow", 1)[1]


def test_activating_a_conversation_version_without_a_rule_asks_in_conversations(
    workspace, owner, login
):
    """The confirmation before activating a version that found no rule names the set's
    items, on the version's page and on the versions list, with no query per listed row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    eval_set = EvalSetFactory(workspace=workspace, unit="conversation")
    client = login(owner)
    asked = (
        "gives every conversation the same verdict, so it cannot tell good conversations from bad"
    )
    versions_url = f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/versions/"

    def versions_page():
        with CaptureQueriesContext(connection) as queries:
            html = client.get(versions_url).content.decode()
        return html, len(queries)

    draft = Eval.objects.create(
        workspace=workspace, eval_set=eval_set, version=1, code="x", provider="offline",
        metrics={"no_reliable_eval": True},
    )  # fmt: skip
    detail = client.get(draft.get_absolute_url()).content.decode()
    assert asked in detail and "every trace" not in detail
    html, one_row = versions_page()
    assert html.count(asked) == 1
    for version in (2, 3):
        Eval.objects.create(
            workspace=workspace, eval_set=eval_set, version=version, code="x",
            provider="offline", metrics={"no_reliable_eval": True},
        )  # fmt: skip
    html, three_rows = versions_page()
    assert html.count(asked) == 3
    assert three_rows == one_row


def test_generating_for_conversations_speaks_of_conversations(
    openai_workspace, owner, fake_llm, monkeypatch
):
    """What a generation says while it runs, and why a constant version is no reliable eval,
    name the set's conversations, not traces."""
    from evals.generation import services
    from tests.evals.builders import fenced, generate
    from traces.services import record_feedback

    workspace = openai_workspace
    for n in range(4):
        _ingest(workspace, [_turn(10 * n, f"chat-{n}", 0), _turn(10 * n + 1, f"chat-{n}", 1)])
    eval_set = EvalSetFactory(
        workspace=workspace,
        unit=EvalSet.Unit.CONVERSATION,
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={},
    )
    for n, conversation in enumerate(Conversation.objects.for_workspace(workspace)):
        rating = "negative" if n % 2 else "positive"
        record_feedback(eval_set=eval_set, trace=conversation.anchor, user=owner, rating=rating)
    stages = []
    set_stage = services.set_stage
    monkeypatch.setattr(
        services,
        "set_stage",
        lambda generation, text: (stages.append(text), set_stage(generation, text)),
    )
    fake_llm.push_text(fenced('def eval_fn(conversation):\n    return True, "Looks fine"\n'))

    generation = generate(eval_set)

    assert generation.status == "succeeded", generation.error
    assert "Running the eval on 4 labelled conversations in the sandbox" in stages
    assert not [stage for stage in stages if "trace" in stage]
    reason = generation.result.metrics["no_eval_reason"]
    assert "every labelled conversation good" in reason and "bad conversations" in reason
    assert "trace" not in reason
