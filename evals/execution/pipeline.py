"""Judge batches of stored traces with the database work overlapping the sandbox.

The sandbox spends most of a batch's wall time starting jails and waiting on them, with a
core to spare; reading a batch's traces from PostgreSQL and writing its verdicts cost
nearly as much again when they come before and after it. ``judge_batches`` runs the
sandbox in a thread of its own and, while it judges batch k, this thread reads the traces
of batch k + 1 and the verdicts of batch k - 1 are written: in this thread too (one
connection, its transactions as the caller writes them), or, with ``write_apart``, in a
writer thread with a connection of its own, so reading and writing overlap each other as
well (together they took longer than the sandbox: ``writes_apart`` says when to). The
sandbox thread touches no database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, connections


@dataclass
class Stages:
    """Where a pipelined run spent its time, in seconds (for logs and benchmarks)."""

    read: float = 0.0
    sandbox: float = 0.0  # the sandbox thread's own time, overlapped with the rest
    write: float = 0.0  # overlapped with the rest too when written apart
    waited: float = 0.0  # this thread waiting for the sandbox: what the overlap left
    batches: int = 0
    traces: int = 0
    started: float = field(default_factory=time.perf_counter)
    # When the sandbox first started, last ended and last wrote: what the overlap cannot
    # hide is the time before the first batch enters the sandbox (fill), the sandbox idle
    # between two batches (gaps), and the writes left after the last batch is judged (drain).
    first_judged: float | None = None
    last_judged: float | None = None
    last_written: float | None = None
    gaps: float = 0.0

    def judging(self, started: float) -> None:
        if self.first_judged is None:
            self.first_judged = started
        elif self.last_judged is not None:
            self.gaps += started - self.last_judged

    def log_fields(self) -> str:
        now = time.perf_counter()
        total = now - self.started
        fill = (self.first_judged or now) - self.started
        drain = max(0.0, (self.last_written or now) - (self.last_judged or now))
        return (
            f"traces={self.traces} batches={self.batches} total_ms={total * 1000:.0f} "
            f"read_ms={self.read * 1000:.0f} sandbox_ms={self.sandbox * 1000:.0f} "
            f"write_ms={self.write * 1000:.0f} waited_ms={self.waited * 1000:.0f} "
            f"fill_ms={fill * 1000:.0f} gaps_ms={self.gaps * 1000:.0f} "
            f"drain_ms={drain * 1000:.0f}"
        )


def writes_apart() -> bool:
    """Return whether verdicts may be written on a connection of their own (see module).

    Only on PostgreSQL, and only when the caller holds no transaction: writes on another
    connection would not see its uncommitted rows (a test's, or a caller's atomic block),
    and SQLite would make the two connections wait for each other's locks.
    """
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def judge_batches[B](
    batches: Iterable[B],
    *,
    read: Callable[[B], tuple[list[int], list[str]]],
    judge: Callable[[list[str]], list],
    write: Callable[[B, list[int], list], bool],
    stages: Stages | None = None,
    write_apart: bool = False,
    write_first: Callable[[list], bool] | None = None,
) -> bool:
    """Read, judge and write every batch in order; False once ``write`` says to stop.

    ``read(batch)`` returns the ids found and their JSON text; ``judge(texts)`` returns
    one result per text (it runs in another thread, so it must not use the database);
    ``write(batch, ids, results)`` records them and returns whether to go on. ``batches``
    may be a generator: each batch is asked for, in this thread, while the one before it
    is in the sandbox (so the generator may use the database and decide late what comes
    next). An exception from ``judge`` is raised here after the batches before it were
    written; a batch read but not judged yet is dropped. With ``write_apart``, ``write``
    runs in a writer thread of its own, one batch after the other, on that thread's own
    database connection (closed at the end); a batch judged after a write said stop is
    dropped. ``write_first(results)``, when it says yes, has that batch written (after
    those before it) before the next one enters the sandbox, which a write that says stop
    then keeps out: a batch that may stop the run (its errors may pause its eval set,
    evals.execution.breaker) stops it before more work is judged, not after.
    """
    stages = stages if stages is not None else Stages()

    def timed_judge(texts: list[str]) -> list:
        started = time.perf_counter()
        stages.judging(started)
        try:
            return judge(texts)
        finally:
            stages.last_judged = time.perf_counter()
            stages.sandbox += stages.last_judged - started

    def timed_read(batch: B) -> tuple[B, list[int], list[str]]:
        started = time.perf_counter()
        ids, texts = read(batch)
        stages.read += time.perf_counter() - started
        return batch, ids, texts

    stopped = threading.Event()  # a write said stop: no later batch is written

    def timed_write(batch: B, ids: list[int], results: list) -> bool:
        if stopped.is_set():
            return False  # queued behind a write that said stop: dropped, as in one thread
        started = time.perf_counter()
        try:
            going_on = write(batch, ids, results)
        except BaseException:
            stopped.set()  # nothing after a failed write is written: its error comes out
            raise
        finally:
            stages.last_written = time.perf_counter()
            stages.write += stages.last_written - started
            stages.batches += 1
            stages.traces += len(ids)
        if not going_on:
            stopped.set()
        return going_on

    pending = iter(batches)
    head = next(pending, _END)
    if head is _END:
        return True
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verdict-writer")
    writes: list[Future[bool]] = []

    def outcome() -> bool:
        # In order: the first write that failed raises here, the first that said stop ends it.
        return all(future.result() for future in writes)

    def record(batch: B, ids: list[int], results: list, *, wait: bool) -> bool:
        if not write_apart:
            return timed_write(batch, ids, results)
        # Queued behind the writes before it and, unless ``wait``, not waited for: the
        # sandbox never waits on the writer, which catches up on a faster batch.
        writes.append(writer.submit(timed_write, batch, ids, results))
        return outcome() if wait else True

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-batch") as pool:
            batch, ids, texts = timed_read(head)
            running: Future[Any] = pool.submit(timed_judge, texts)
            if write_apart:
                # The writer's thread starts and its connection opens while the first batch
                # is judged, not in its first write, nor before that batch's read (a thread's
                # start is 2-3 ms on a busy machine).
                writer.submit(_connect)
            while True:
                upcoming = next(pending, _END)
                following = timed_read(upcoming) if upcoming is not _END else None
                # A write that said stop ends the run before this batch's results are taken.
                if stopped.is_set():
                    return outcome()
                started = time.perf_counter()
                try:
                    results = running.result()  # the sandbox's exception, if any, comes out here
                except BaseException:
                    # Raised once the batches before it are written, unless one said stop.
                    if not outcome():
                        return False
                    raise
                finally:
                    stages.waited += time.perf_counter() - started
                # A batch that may stop the run is written before the next one is judged.
                first = following is not None and write_first is not None and write_first(results)
                if first and not record(batch, ids, results, wait=True):
                    return False  # the next batch was read, never judged
                if following is not None:
                    # The next batch starts before this one is written: the write overlaps it.
                    running = pool.submit(timed_judge, following[2])
                if not first and not record(batch, ids, results, wait=False):
                    return False  # the pool waits for a batch already in the sandbox
                if following is None:
                    return outcome()
                batch, ids, texts = following
    finally:
        if write_apart:
            writer.submit(connections.close_all)  # after the last write, in its thread
        writer.shutdown(wait=True)


_END = object()  # no batch left


def _connect() -> None:
    connection.ensure_connection()  # the calling thread's connection
