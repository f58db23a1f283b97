"""Reading an iterator ahead on a thread: same items, same order, errors after the items."""

import sys
import threading

import pytest

from iofold.lib.prefetch import prefetched


class Source:
    """A generator of ``count`` numbers that records how far it was read and its clean-up."""

    def __init__(self, count: int, *, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.pulled = 0
        self.closed = threading.Event()

    def __iter__(self):
        try:
            for n in range(self.count):
                if n == self.fail_at:
                    raise ValueError(f"item {n} failed")
                self.pulled += 1
                yield n
        finally:
            self.closed.set()


def test_items_arrive_in_order_and_the_thread_ends():
    default = sys.getswitchinterval()
    source = Source(50)
    with prefetched(source, depth=2) as items:
        assert list(items) == list(range(50))
    assert source.closed.is_set()
    assert not items._thread.is_alive()
    assert sys.getswitchinterval() == default  # shortened only while the thread reads


def test_an_error_reaches_the_reader_after_every_item_before_it():
    reader = prefetched(Source(10, fail_at=6))
    received = []
    with pytest.raises(ValueError, match="item 6 failed"):
        for item in reader:
            received.append(item)
    assert received == [0, 1, 2, 3, 4, 5]
    with pytest.raises(StopIteration):
        next(reader)  # finished: the error is raised once


def test_closing_early_stops_reading_the_source_and_cleans_it_up():
    source = Source(10_000)
    items = prefetched(source, depth=1)
    assert next(items) == 0

    items.close()

    assert source.closed.is_set()  # the generator's finally ran, on its thread
    assert not items._thread.is_alive()
    assert sys.getswitchinterval() == 0.005
    assert source.pulled < 10_000
    with pytest.raises(StopIteration):
        next(items)


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        prefetched([], depth=0)
