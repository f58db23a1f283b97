"""Two ingests writing the same traces at once, each on its own connection and thread.

A sync's page and a webhook batch (or two workers) may bring the same traces in any
order. Both must be stored, whole, whichever commits first: on PostgreSQL neither may
fail with a deadlock (rows locked in opposite orders); on SQLite, the embedded default,
neither may act on what it read before the other committed.
"""

import threading

import pytest
from django.db import connection

from iofold.pipeline import ingest_traces
from tests.traces.factories import trace_data
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


def _run_together(*senders) -> list[BaseException]:
    """Run the senders on threads of their own, each round started by both at once."""
    barrier = threading.Barrier(len(senders))
    failures: list[BaseException] = []

    def run(send):
        try:
            for round_ in range(ROUNDS):
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
