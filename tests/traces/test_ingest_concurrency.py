"""Two ingests writing the same traces at once, each on its own connection and thread.

A sync's page and a webhook batch (or two workers) may bring the same traces in any
order. Both must be stored, whole, whichever commits first: on PostgreSQL neither may
fail with a deadlock (rows locked in opposite orders); on SQLite, the embedded default,
neither may act on what it read before the other committed.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from iofold.pipeline import ingest_traces
from tests.integrations.helpers import post_webhook, webhook_integration
from tests.traces.factories import trace_data
from traces import ingest
from traces.models import Conversation, Trace

pytestmark = pytest.mark.django_db(transaction=True)

TRACES = 120
ROUNDS = 25


def _batch(sender: str, round_: int, session=None) -> list[dict]:
    traces = []
    for n in range(TRACES):
        data = trace_data(n)
        # Each round's copy differs from what is stored, so every trace is written again.
        data.update(id=f"t{n:03d}", name=f"{sender}-{round_}", session_id=session(n, round_))
        traces.append(data)
    return traces


def _run_together(*senders, rounds: int = ROUNDS) -> list[BaseException]:
    """Run the senders on threads of their own, each round started by both at once."""
    barrier = threading.Barrier(len(senders))
    failures: list[BaseException] = []

    def run(send):
        try:
            for round_ in range(rounds):
                barrier.wait(30)
                send(round_)
        except threading.BrokenBarrierError:
            pass
        except BaseException as error:
            failures.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(send,)) for send in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    return failures


@pytest.mark.parametrize(
    "session",
    [
        lambda n, round_: None,
        # Turns move between conversations from round to round.
        lambda n, round_: f"s{(n + round_) % 7}",
    ],
    ids=["no conversations", "turns moving between conversations"],
)
def test_two_ingests_of_the_same_traces_in_opposite_orders_both_succeed(workspace, session):
    def forwards(round_):
        ingest_traces(workspace=workspace, source="api", traces=_batch("a", round_, session))

    def backwards(round_):
        traces = _batch("b", round_, session)[::-1]
        ingest_traces(workspace=workspace, source="api", traces=traces)

    failures = _run_together(forwards, backwards)

    assert not failures, failures
    stored = Trace.objects.for_workspace(workspace)
    assert stored.count() == TRACES
    # The later of the last two batches is stored whole: the two did not interleave.
    assert len(set(stored.values_list("name", flat=True))) == 1
    for conversation in Conversation.objects.for_workspace(workspace):
        turns = conversation.turns.all()
        assert conversation.turn_count == turns.count()
        assert conversation.anchor_id == (
            turns.order_by("timestamp", "id").values_list("id", flat=True).first()
        )


def test_traces_two_ingests_bring_at_once_are_counted_created_once(workspace):
    """Both ingests read the new traces as absent; the one that waits on the other's insert
    updates them. It reported them created too, so the API's counts added to twice the
    traces stored."""
    counts = {"a": [], "b": []}

    def sender(name, order):
        def send(round_):
            traces = [
                {**trace_data(n), "id": f"r{round_}-{n:03d}", "name": name} for n in range(TRACES)
            ][::order]
            counts[name].append(ingest_traces(workspace=workspace, source="api", traces=traces))

        return send

    failures = _run_together(sender("a", 1), sender("b", -1), rounds=5)

    assert not failures, failures
    results = counts["a"] + counts["b"]
    assert Trace.objects.for_workspace(workspace).count() == 5 * TRACES
    assert sum(result.created for result in results) == 5 * TRACES
    assert sum(result.updated for result in results) == 5 * TRACES


def _push(client, integration, traces):
    return post_webhook(client, integration, {"traces": traces})


def test_a_webhook_moving_a_turn_a_sync_page_just_moved_leaves_no_conversation_counting_it(
    client, workspace, monkeypatch
):
    """A sync page moves a turn from conversation a to b; a webhook request, which read the
    turn's row before the page committed, moves it on to c. On SQLite the webhook read it
    outside its write transaction, so b kept counting (and was anchored on) the turn."""
    integration = webhook_integration(workspace)

    def turn(session, name):
        return {**trace_data(1), "session_id": session, "name": name}

    def sync_page(traces):
        ingest_traces(
            workspace=workspace, source="langfuse", integration=integration, traces=traces
        )

    sync_page([turn("a", "first")])
    page_written, webhook_ingesting, webhook_read, page_may_commit = (
        threading.Event() for _ in range(4)
    )
    failures, answers = [], []

    def sync():
        try:
            with transaction.atomic():  # as a sync's page is written
                sync_page([turn("b", "synced")])
                page_written.set()
                assert page_may_commit.wait(30)
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    def push():
        try:
            answers.append(_push(client, integration, [turn("c", "pushed")]))
        except BaseException as error:
            failures.append(error)
        finally:
            webhook_read.set()
            connection.close()

    prepare, stored_keys = ingest.prepare_traces, ingest._stored_keys

    def prepare_then_signal(*args, **kwargs):
        webhook_ingesting.set()
        return prepare(*args, **kwargs)

    def read_then_signal(*args):
        rows = list(stored_keys(*args))
        webhook_read.set()
        return rows

    syncing = threading.Thread(target=sync)
    syncing.start()
    assert page_written.wait(30)
    monkeypatch.setattr(ingest, "prepare_traces", prepare_then_signal)
    monkeypatch.setattr(ingest, "_stored_keys", read_then_signal)
    pushing = threading.Thread(target=push)
    pushing.start()
    # The webhook's ingest begins: it reads the turn at once; or, where its read waits for
    # the page to commit (SQLite: its write transaction begins first), the page commits.
    assert webhook_ingesting.wait(30)
    webhook_read.wait(1)
    page_may_commit.set()
    syncing.join(30)
    pushing.join(30)
    assert not failures, failures
    assert not syncing.is_alive() and not pushing.is_alive()
    assert answers[0].status_code == 200, answers[0].content
    assert answers[0].json()["updated"] == 1

    trace = Trace.objects.get(workspace=workspace, external_id="t1")
    conversations = {c.external_id: c for c in Conversation.objects.for_workspace(workspace)}
    assert (trace.name, trace.conversation_id) == ("pushed", conversations["c"].pk)
    # What the conversation list shows: b and a are empty, c has the one turn.
    for key, anchor in (("a", None), ("b", None), ("c", trace.pk)):
        counted = conversations[key].turns.count()
        assert (conversations[key].turn_count, counted) == (counted, counted), key
        assert conversations[key].anchor_id == anchor, key


def test_two_ingests_of_many_conversations_lock_them_in_one_order(workspace):
    """Batches of more than 500 conversations (an API batch holds up to 1,000): two that
    share some must lock them in one order, whatever their keys and ids."""
    blocks, size = 7, 100
    # Conversations made block by block, the last keys first: ids do not follow the keys.
    for block in reversed(range(blocks)):
        traces = [
            {**trace_data(n), "id": f"seed{n}", "session_id": f"s{n:03d}"}
            for n in range(block * size, (block + 1) * size)
        ]
        ingest_traces(workspace=workspace, source="api", traces=traces)

    def sender(name, first):
        def send(round_):
            traces = [
                {**trace_data(n), "id": f"{name}{n}", "name": f"{name}-{round_}",
                 "session_id": f"s{first + n:03d}"}
                for n in range(6 * size)
            ]  # fmt: skip
            ingest_traces(workspace=workspace, source="api", traces=traces)

        return send

    failures = _run_together(sender("a", 0), sender("b", size), rounds=8)

    assert not failures, failures
    for conversation in Conversation.objects.for_workspace(workspace):
        assert conversation.turn_count == conversation.turns.count()


def _send_into_a_deadlock(stored, send):
    """Run ``send()`` while another transaction holds the second of the stored traces and
    then asks for the first, which the send's batch (locking in key order) has just locked
    while it waits for the second: PostgreSQL ends one of the two (a deadlock). Return the
    send's answer."""
    first, second = sorted(stored.values_list("external_id", flat=True))
    holding, may_take_first, failures, answers = threading.Event(), threading.Event(), [], []

    def other():
        try:
            with transaction.atomic():
                list(stored.filter(external_id=second).select_for_update())
                holding.set()
                assert may_take_first.wait(30)
                list(stored.filter(external_id=first).select_for_update())
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    def sender():
        try:
            answers.append(send())
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=other), threading.Thread(target=sender)]
    threads[0].start()
    assert holding.wait(30)
    threads[1].start()
    # Once the batch waits for the second (holding the first), the other asks for the first.
    with connection.cursor() as cursor:
        for _ in range(600):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.05)
    may_take_first.set()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    return answers[0]


def test_a_webhook_batch_ended_by_a_deadlock_is_written_again(client, workspace):
    """Run again once the other transaction has committed, the batch is stored, and the
    sender gets its answer."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's row locks")
    integration = webhook_integration(workspace)
    traces = [{**trace_data(n), "id": f"t{n}"} for n in (1, 2)]
    assert _push(client, integration, traces).status_code == 200
    stored = Trace.objects.for_workspace(workspace)

    answer = _send_into_a_deadlock(
        stored, lambda: _push(client, integration, [{**t, "name": "pushed"} for t in traces])
    )

    assert answer.status_code == 200, answer.content
    assert answer.json()["updated"] == 2
    assert set(stored.values_list("name", flat=True)) == {"pushed"}


def test_an_otlp_export_ended_by_a_deadlock_is_written_again(client, workspace):
    """An exporter would have been told to send again later (503); the receiver runs the
    batch again itself and the spans are stored at once."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's row locks")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from tests.integrations.otlp_helpers import (
        Recorder,
        api_token,
        older_genai_trace,
        protobuf_body,
        semconv_agent_trace,
    )

    token = api_token(workspace)
    recorder = Recorder()
    semconv_agent_trace(recorder)
    older_genai_trace(recorder)
    body = protobuf_body(recorder.take())

    def export(body):
        return client.post(
            "/v1/traces",
            body,
            content_type="application/x-protobuf",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    assert export(body).status_code == 200
    stored = Trace.objects.for_workspace(workspace)
    assert stored.count() == 2
    # The same spans renamed: every trace changes, so every row is written again.
    renamed = ExportTraceServiceRequest.FromString(body)
    for resource in renamed.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                span.name = "renamed " + span.name

    answer = _send_into_a_deadlock(stored, lambda: export(renamed.SerializeToString()))

    assert answer.status_code == 200, answer.content
    for trace in stored:
        # A tool step is named after its tool; the span's name stays beside it.
        span_names = [
            step.get("metadata", {}).get("otel", {}).get("span_name", step["name"])
            for step in trace.data["steps"]
        ]
        assert all(name.startswith("renamed ") for name in span_names), span_names
