"""Batches judged with the database work of one overlapping the sandbox's on the next."""

import threading
import time

import pytest

from evals.execution.pipeline import Stages, judge_batches


def _texts(batch):
    return list(batch), [f"t{pk}" for pk in batch]


def test_every_batch_is_read_judged_and_written_in_order_and_judged_off_this_thread():
    caller = threading.current_thread()
    threads, written = [], []

    def judge(texts):
        threads.append(threading.current_thread())
        return [text.upper() for text in texts]

    def write(_batch, ids, results):
        assert threading.current_thread() is caller  # the database stays in this thread
        written.append((ids, results))
        return True

    stages = Stages()
    assert judge_batches(
        [[1, 2], [3], [4, 5]], read=_texts, judge=judge, write=write, stages=stages
    )
    assert written == [([1, 2], ["T1", "T2"]), ([3], ["T3"]), ([4, 5], ["T4", "T5"])]
    assert caller not in threads
    assert (stages.batches, stages.traces) == (3, 5)


def test_a_write_that_says_stop_ends_the_run_and_later_batches_are_not_written():
    written = []

    def write(_batch, ids, results):
        written.append(ids)
        return False

    assert not judge_batches([[1], [2], [3]], read=_texts, judge=list, write=write)
    assert written == [[1]]


def test_the_sandbox_error_comes_out_after_the_batches_before_it_were_written():
    written = []

    def judge(texts):
        if texts == ["t2"]:
            raise RuntimeError("the sandbox is down")
        return texts

    with pytest.raises(RuntimeError, match="down"):
        judge_batches(
            [[1], [2], [3]],
            read=_texts,
            judge=judge,
            write=lambda b, i, r: written.append(i) or True,
        )
    assert written == [[1]]


def test_written_apart_a_batch_is_written_in_another_thread_while_the_next_ones_are_read():
    """The writer thread writes batch 1 while batch 3 is read: reading and writing, which
    together took longer than the sandbox, overlap each other too."""
    caller = threading.current_thread()
    third_read = threading.Event()
    writers, written, overlapped = set(), [], []

    def read(batch):
        if batch == [3]:
            third_read.set()
        return _texts(batch)

    def write(_batch, ids, results):
        writers.add(threading.current_thread())
        if ids == [1]:
            overlapped.append(third_read.wait(timeout=10))
        written.append((ids, results))
        return True

    stages = Stages()
    assert judge_batches(
        [[1], [2], [3], [4]], read=read, judge=list, write=write, stages=stages, write_apart=True
    )
    assert overlapped == [True]
    assert written == [([1], ["t1"]), ([2], ["t2"]), ([3], ["t3"]), ([4], ["t4"])]
    assert len(writers) == 1 and caller not in writers
    assert (stages.batches, stages.traces) == (4, 4)


def test_written_apart_a_stop_or_a_sandbox_error_leaves_exactly_the_batches_before_it():
    written = []

    def stop_after_first(_batch, ids, results):
        written.append(ids)
        return False

    assert not judge_batches(
        [[1], [2], [3]], read=_texts, judge=list, write=stop_after_first, write_apart=True
    )
    assert written == [[1]]

    written.clear()

    def judge(texts):
        if texts == ["t3"]:
            raise RuntimeError("the sandbox is down")
        return texts

    with pytest.raises(RuntimeError, match="down"):
        judge_batches(
            [[1], [2], [3], [4]],
            read=_texts,
            judge=judge,
            write=lambda batch, ids, results: written.append(ids) or True,
            write_apart=True,
        )
    assert written == [[1], [2]]


def test_written_apart_the_sandbox_goes_on_while_the_writer_is_behind():
    """Batch 1's write waits until batch 3 is judged: the sandbox never waits on the writer."""
    third_judged = threading.Event()
    written, overtaken = [], []

    def judge(texts):
        if texts == ["t3"]:
            third_judged.set()
        return texts

    def write(_batch, ids, results):
        if ids == [1]:
            overtaken.append(third_judged.wait(timeout=10))
        written.append(ids)
        return True

    assert judge_batches([[1], [2], [3]], read=_texts, judge=judge, write=write, write_apart=True)
    assert overtaken == [True]
    assert written == [[1], [2], [3]]


def test_written_apart_a_failed_write_raises_and_nothing_queued_after_it_is_written():
    written = []

    def write(_batch, ids, results):
        if ids == [2]:
            raise RuntimeError("the database went away")
        written.append(ids)
        return True

    with pytest.raises(RuntimeError, match="went away"):
        judge_batches([[1], [2], [3], [4]], read=_texts, judge=list, write=write, write_apart=True)
    assert written == [[1]]


def test_stages_say_what_no_overlap_hid_before_between_and_after_the_sandbox():
    """Fill: the first read before the sandbox starts; gaps: the sandbox waiting for a slow
    read; drain: the last write after the last batch is judged."""

    def read(batch):
        if batch in ([1], [3]):
            time.sleep(0.05)  # the first read, and one the sandbox (instant here) waits for
        return _texts(batch)

    def write(_batch, ids, results):
        if ids == [3]:
            time.sleep(0.05)
        return True

    for write_apart in (False, True):
        stages = Stages()
        assert judge_batches(
            [[1], [2], [3]],
            read=read,
            judge=list,
            write=write,
            stages=stages,
            write_apart=write_apart,
        )
        fields = dict(pair.split("=") for pair in stages.log_fields().split())
        assert int(fields["fill_ms"]) >= 45
        assert int(fields["gaps_ms"]) >= 45
        assert int(fields["drain_ms"]) >= 45
