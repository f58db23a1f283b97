"""Large eval runs split into chunks that workers share, with exact counts at the end."""

import pytest
from django.db import connection

from evals.execution import chunks as chunk_module
from evals.execution import runs as runs_module
from evals.execution.chunks import execute_chunk, reap_split_runs, recover_chunks
from evals.execution.runs import execute_run, start_run
from evals.models import EvalExecution, EvalRun, EvalRunChunk
from tests.conftest import dead_owner
from tests.evals.builders import labelled_set, make_eval, sandbox_unavailable_at_call

pytestmark = pytest.mark.django_db


def _split_run(workspace, settings, django_capture_on_commit_callbacks, *, good=6, bad=4):
    settings.IOFOLD_EVAL_CHUNK_TRACES = 3
    eval_set, traces = labelled_set(workspace, good=good, bad=bad)
    eval = make_eval(eval_set, version=1)
    with django_capture_on_commit_callbacks() as callbacks:
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual")
    return run, callbacks


def test_a_large_run_is_split_into_chunks_queued_one_task_each(
    workspace, settings, django_capture_on_commit_callbacks
):
    run, callbacks = _split_run(workspace, settings, django_capture_on_commit_callbacks)

    chunks = list(run.chunks.order_by("index"))
    assert [len(c.trace_ids) for c in chunks] == [3, 3, 3, 1]
    assert sum((c.trace_ids for c in chunks), []) == run.trace_ids
    assert len(callbacks) == 1  # one on-commit hook enqueues every chunk
    # A stray message for the whole run does not judge it outside its chunks.
    assert execute_run(run_id=run.pk).status == "queued"
    assert not EvalExecution.objects.filter(run=run).exists()


def test_the_last_chunk_finishes_the_run_with_exact_counts(
    workspace, settings, django_capture_on_commit_callbacks
):
    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    chunks = list(run.chunks.order_by("index"))

    for chunk in chunks[:-1]:
        execute_chunk(chunk_id=chunk.pk)
        run.refresh_from_db()
        assert run.status == "running"
    execute_chunk(chunk_id=chunks[-1].pk)

    run.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 10, 6, 4, 0)
    assert EvalExecution.objects.filter(run=run).count() == 10
    # A chunk delivered twice judges nothing again.
    assert execute_chunk(chunk_id=chunks[0].pk) is None
    assert sum(c.judged for c in EvalRunChunk.objects.filter(run=run)) == 10


def test_a_chunk_whose_worker_died_is_taken_over_and_judges_only_what_is_missing(
    workspace, settings, django_capture_on_commit_callbacks
):
    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    first, *rest = run.chunks.order_by("index")
    for chunk in rest:
        execute_chunk(chunk_id=chunk.pk)
    # The first chunk's worker was killed after claiming it.
    EvalRunChunk.objects.filter(pk=first.pk).update(status="running", owner=dead_owner())
    assert EvalRun.objects.get(pk=run.pk).status == "running"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert recover_chunks() == 1
    assert len(callbacks) == 1
    execute_chunk(chunk_id=first.pk)

    run.refresh_from_db()
    first.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed) == ("succeeded", 10, 6, 4)
    assert (first.status, first.takeovers, first.judged) == ("succeeded", 1, 3)


def test_a_chunk_given_up_on_fails_the_run_with_the_counts_of_what_was_judged(
    workspace, settings, django_capture_on_commit_callbacks
):
    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    first, *rest = run.chunks.order_by("index")
    for chunk in rest:
        execute_chunk(chunk_id=chunk.pk)
    # Its worker died on it every time: the recovery fails it instead of a fourth try.
    EvalRunChunk.objects.filter(pk=first.pk).update(
        status="running", owner=dead_owner(), takeovers=3
    )
    assert recover_chunks() == 0
    assert EvalRun.objects.get(pk=run.pk).status == "running"

    assert reap_split_runs() == 1

    run.refresh_from_db()
    assert run.status == "failed" and "stopped 4 times" in run.error
    assert run.done == 7  # the three traces of the failed chunk were never judged


def test_a_chunk_judges_in_batches_and_a_sandbox_outage_keeps_the_batches_already_written(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    import sandbox
    from evals.execution import chunks as chunk_module

    settings.IOFOLD_EVAL_CHUNK_TRACES = 6
    eval_set, traces = labelled_set(workspace, good=4, bad=3)
    eval = make_eval(eval_set, version=1)
    with django_capture_on_commit_callbacks():
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual")
    first, second = run.chunks.order_by("index")
    monkeypatch.setattr(chunk_module, "EXECUTE_CHUNK", 2)  # batches of 2, 2 and 2
    real_run_json = sandbox_unavailable_at_call(monkeypatch, 3)
    with pytest.raises(sandbox.SandboxUnavailable):
        execute_chunk(chunk_id=first.pk)

    # The two batches judged before the outage were written with the chunk's progress;
    # the chunk waits in the queue for its retry.
    first.refresh_from_db()
    assert (first.status, first.owner, first.judged) == ("queued", "", 4)
    assert EvalExecution.objects.filter(run=run).count() == 4
    assert EvalRun.objects.get(pk=run.pk).done == 4

    monkeypatch.setattr(sandbox, "run_json", real_run_json)
    execute_chunk(chunk_id=first.pk)
    execute_chunk(chunk_id=second.pk)
    run.refresh_from_db()
    first.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 7, 4, 3, 0)
    assert first.judged == 6  # the retry judged only the two traces left
    assert EvalExecution.objects.filter(run=run).count() == 7


def test_a_run_too_small_to_split_is_judged_in_batches_with_exact_counts(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    from evals.execution import runs as run_module

    eval_set, traces = labelled_set(workspace, good=3, bad=2)
    eval = make_eval(eval_set, version=1)
    with django_capture_on_commit_callbacks():
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual")
    assert not run.chunks.exists()
    monkeypatch.setattr(run_module, "EXECUTE_CHUNK", 2)  # batches of 2, 2 and 1

    run = execute_run(run_id=run.pk)

    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 5, 3, 2, 0)
    verdicts = dict(EvalExecution.objects.filter(run=run).values_list("trace_id", "passed"))
    assert sorted(verdicts) == sorted(t.pk for t in traces)


def test_a_worker_carries_on_with_the_chunks_still_queued_in_one_go_with_exact_counts(
    workspace, settings, django_capture_on_commit_callbacks
):
    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    first, second, *rest = run.chunks.order_by("index")
    # Another worker holds the second chunk: it is not taken from it.
    EvalRunChunk.objects.claim(second.pk)

    execute_chunk(chunk_id=first.pk, carry_on=True)

    chunks = {c.pk: c for c in EvalRunChunk.objects.filter(run=run)}
    assert [chunks[c.pk].status for c in (first, *rest)] == ["succeeded"] * 3
    assert [chunks[c.pk].judged for c in (first, *rest)] == [3, 3, 1]
    assert chunks[second.pk].status == "running" and chunks[second.pk].judged == 0
    # The chunks' own messages, delivered afterwards, judge nothing again.
    assert all(execute_chunk(chunk_id=c.pk, carry_on=True) is None for c in rest)
    assert EvalExecution.objects.filter(run=run).count() == 7
    assert EvalRun.objects.get(pk=run.pk).status == "running"  # the second chunk is not done


def test_a_worker_carries_on_only_for_a_part_of_its_task_time_limit(
    workspace, settings, django_capture_on_commit_callbacks
):
    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    first, *rest = run.chunks.order_by("index")
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0.001  # no time left to take another chunk

    execute_chunk(chunk_id=first.pk, carry_on=True)

    assert [c.status for c in EvalRunChunk.objects.filter(run=run).order_by("index")] == [
        "succeeded",
        *["queued"] * len(rest),
    ]


def test_a_sandbox_outage_in_a_chunk_carried_on_puts_it_back_in_the_queue_with_its_message(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    import sandbox
    from evals.execution import chunks as chunk_module

    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    first, second, third, _ = run.chunks.order_by("index")
    enqueued = []
    monkeypatch.setattr(chunk_module, "enqueue_chunk", lambda pk, **_: enqueued.append(pk))
    real_run_json = sandbox_unavailable_at_call(monkeypatch, 2)
    with pytest.raises(sandbox.SandboxUnavailable):
        execute_chunk(chunk_id=first.pk, carry_on=True)

    first.refresh_from_db()
    assert (first.status, first.judged) == ("succeeded", 3)
    # The second chunk, and the third claimed while the second was in the sandbox, go back
    # with a message each (their first may have been taken while they were held here).
    for chunk in (second, third):
        chunk.refresh_from_db()
        assert (chunk.status, chunk.owner, chunk.judged) == ("queued", "", 0)
    assert enqueued == [second.pk, third.pk]
    assert EvalRun.objects.get(pk=run.pk).done == 3

    monkeypatch.setattr(sandbox, "run_json", real_run_json)
    execute_chunk(chunk_id=second.pk, carry_on=True)
    run.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 10, 6, 4, 0)


@pytest.mark.django_db(transaction=True)
def test_a_chunk_commits_its_verdicts_without_waiting_for_the_disk_and_counts_stay_exact(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    # Verdicts can be judged again: a chunk's transaction (its verdicts with its progress)
    # does not wait for the WAL flush on PostgreSQL; a crash loses whole batches, which the
    # chunk's next owner judges again. The connection's other transactions still wait.
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    # Committed for real (the writing thread reads on its own connection): the chunks' tasks
    # are kept from the broker, where a worker of another test would take them first.
    monkeypatch.setattr(runs_module, "enqueue_chunk", lambda pk, **_: None)
    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    real_upsert, seen = chunk_module._upsert, []

    def upsert(**kwargs):
        with connection.cursor() as cursor:  # the writing thread's own connection
            cursor.execute("SHOW synchronous_commit")
            seen.append((cursor.fetchone()[0], connection.in_atomic_block))
        real_upsert(**kwargs)

    monkeypatch.setattr(chunk_module, "_upsert", upsert)
    first, *rest = run.chunks.order_by("index")

    execute_chunk(chunk_id=first.pk, carry_on=True)

    assert seen == [("off", True)] * 4  # one transaction per batch of every chunk
    run.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 10, 6, 4, 0)
    assert [c.judged for c in run.chunks.order_by("index")] == [3, 3, 3, 1]
    assert EvalExecution.objects.filter(run=run).count() == 10
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_a_chunks_first_batch_is_read_while_its_jail_starts(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    # A claimed chunk starts its first batch's jail before reading that batch's traces, so
    # the jail's start-up overlaps the read; the jail is used, and ended with the chunk.
    from sandbox import runner

    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    real_read, waiting = chunk_module.trace_json, []

    def read(**kwargs):
        waiting.append(runner._spare is not None)
        return real_read(**kwargs)

    monkeypatch.setattr(chunk_module, "trace_json", read)
    first = run.chunks.order_by("index").first()

    execute_chunk(chunk_id=first.pk)

    assert waiting == [True]
    assert runner._spare is None
    run.refresh_from_db()
    assert (run.done, run.passed, run.failed) == (3, 3, 0)


@pytest.mark.django_db(transaction=True)
def test_a_chunks_claim_commits_with_the_runs_start_in_one_transaction(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    # The first chunk's claim and its run's start wait for the disk once, not twice; the
    # claims of the chunks a worker carries on with commit on their own, as before.
    if connection.vendor != "postgresql":
        pytest.skip("the transaction ids are PostgreSQL's")
    monkeypatch.setattr(runs_module, "enqueue_chunk", lambda pk, **_: None)  # see the test above
    run, _ = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    transactions = []

    def record(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        claim = sql.startswith('UPDATE "evals_evalrunchunk" SET "status"')
        if claim or sql.startswith('UPDATE "evals_evalrun" SET "status"'):
            with connection.cursor() as cursor:
                cursor.execute("SELECT txid_current_if_assigned()")
                transactions.append(("claim" if claim else "run", cursor.fetchone()[0]))
        return result

    first = run.chunks.order_by("index").first()
    with connection.execute_wrapper(record):
        execute_chunk(chunk_id=first.pk, carry_on=True)

    (_, claimed), (_, started) = transactions[:2]
    assert [what for what, _ in transactions[:2]] == ["claim", "run"]
    assert claimed is not None and claimed == started
    assert [what for what, _ in transactions[2:]].count("claim") == 3
    run.refresh_from_db()
    assert run.started_at is not None
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 10, 6, 4, 0)
    assert [c.judged for c in run.chunks.order_by("index")] == [3, 3, 3, 1]


def test_a_chunks_heartbeat_starts_once_its_first_batch_is_in_the_sandbox(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    # The heartbeat's thread starts after the first batch is handed to the sandbox, not
    # before its read: every chunk claimed still gets one, and the counts stay exact.
    import sandbox

    settings.IOFOLD_EVAL_CHUNK_TRACES = 4
    monkeypatch.setattr(chunk_module, "EXECUTE_CHUNK", 2)  # two batches a chunk
    eval_set, traces = labelled_set(workspace, good=6, bad=4)
    eval = make_eval(eval_set, version=1)
    with django_capture_on_commit_callbacks():
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="manual")
    events = []
    real_run_json, real_keep_alive = sandbox.run_json, chunk_module.keep_alive

    def run_json(*args, **kwargs):
        events.append("batch")
        return real_run_json(*args, **kwargs)

    def keep_alive(claimed):
        events.append(f"heartbeat {claimed.index}")
        return real_keep_alive(claimed)

    monkeypatch.setattr(sandbox, "run_json", run_json)
    monkeypatch.setattr(chunk_module, "keep_alive", keep_alive)
    first = run.chunks.order_by("index").first()

    execute_chunk(chunk_id=first.pk, carry_on=True)

    # Chunks of 4, 4 and 2 traces: each chunk's heartbeat once its first batch is judging.
    assert events.index("batch") < events.index("heartbeat 0")
    assert [e for e in events if e.startswith("heartbeat")] == [
        "heartbeat 0",
        "heartbeat 1",
        "heartbeat 2",
    ]
    assert events.count("batch") == 5
    run.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 10, 6, 4, 0)
    assert [c.judged for c in run.chunks.order_by("index")] == [4, 4, 2]


def test_a_run_keeps_its_share_of_chunks_in_the_queue_and_sends_the_next_as_they_end(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.IOFOLD_EVAL_CHUNKS_IN_FLIGHT = 2
    sent = []
    monkeypatch.setattr(runs_module, "enqueue_chunk", lambda pk, **kw: sent.append((pk, kw)))
    run, callbacks = _split_run(workspace, settings, django_capture_on_commit_callbacks)
    first, second, third, fourth = run.chunks.order_by("index")
    for callback in callbacks:
        callback()
    # Two sent; a manual run is sent ahead of background work (evals.queue.BACKGROUND).
    assert sent == [(first.pk, {"background": False}), (second.pk, {"background": False})]

    # The first chunk's task carries on with the second, already sent, not the third: that
    # one goes to the queue's tail, behind what other workspaces queued meanwhile.
    with django_capture_on_commit_callbacks(execute=True):
        execute_chunk(chunk_id=first.pk, carry_on=True)
    statuses = dict(EvalRunChunk.objects.filter(run=run).values_list("pk", "status"))
    assert [statuses[c.pk] for c in (first, second, third, fourth)] == [
        "succeeded",
        "succeeded",
        "queued",
        "queued",
    ]
    assert [pk for pk, _ in sent[2:]] == [third.pk, fourth.pk]

    with django_capture_on_commit_callbacks(execute=True):
        assert execute_chunk(chunk_id=second.pk, carry_on=True) is None  # its stale message
        execute_chunk(chunk_id=third.pk, carry_on=True)
    run.refresh_from_db()
    assert (run.status, run.done, run.passed, run.failed, run.errors) == ("succeeded", 10, 6, 4, 0)
    assert len(sent) == 4  # one message per chunk, none lost, none twice
    assert sum(c.judged for c in EvalRunChunk.objects.filter(run=run)) == 10


def test_the_sweep_sends_the_next_chunk_of_a_run_whose_worker_died_before_sending_it(
    workspace, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.IOFOLD_EVAL_CHUNKS_IN_FLIGHT = 1
    sent = []
    for module in (runs_module, chunk_module):
        monkeypatch.setattr(module, "enqueue_chunk", lambda pk, **kw: sent.append((pk, kw)))
    settings.IOFOLD_EVAL_CHUNK_TRACES = 3
    eval_set, traces = labelled_set(workspace, good=6, bad=4)
    eval = make_eval(eval_set, version=1)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(eval=eval, trace_ids=[t.pk for t in traces], trigger="api")
    first, second, *_ = run.chunks.order_by("index")
    assert sent == [(first.pk, {"background": True})]
    # Its worker recorded the first chunk and died before sending the next one.
    EvalRunChunk.objects.filter(pk=first.pk).update(status="succeeded")

    # A worker's start-up: the chunks waiting for their turn are not all sent at once,
    # the run's next one is.
    with django_capture_on_commit_callbacks(execute=True):
        recover_chunks(include_queued=True)
    assert sent[1:] == [(second.pk, {"background": True})]
    with django_capture_on_commit_callbacks(execute=True):
        recover_chunks()  # the minute's sweep: the second is in the queue, nothing to send
    assert len(sent) == 2
