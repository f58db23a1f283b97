"""Keep the cyclic garbage collector off the objects a worker process starts with.

A worker imports Django, every app and the sources' SDKs: hundreds of thousands of
objects that live as long as the process. A sync makes many containers per trace (the
source's JSON, the normalised and encoded traces), enough for the collector to run a
full collection every few thousand traces, and each full collection walks every object
in the process, the start-up heap included: about 0.1 s of CPU each, over a quarter of
the CPU of a 1,000-trace LangSmith sync in a fresh process (0.34-0.38 s, 0.24-0.28 s
frozen). Frozen, those objects are skipped by every later collection; garbage made
after the freeze is still collected.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections."""
    gc.collect()
    gc.freeze()


_pause_lock = threading.Lock()
_pausers = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic collector from running by itself inside the block.

    A sync allocates containers by the million (the source's JSON, the normalised and
    encoded traces) that die by reference counting, never in cycles: after a 10,000-trace
    LangSmith sync with the collector off, a full collection finds 240 unreachable
    objects, as after 1,000. Yet they set the collector off every 700 allocations, and
    the pages still alive are walked again and again: a fifth of that sync's CPU. The
    caller calls ``collect_if_grown`` now and then (a sync after each page), so that
    cycles some library makes are still freed. Nested and concurrent pauses share one;
    the collector is on again when the last ends (if it was on).
    """
    global _pausers, _was_enabled
    with _pause_lock:
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pausers -= 1
            if _pausers == 0 and _was_enabled:
                gc.enable()


# Containers allocated and not freed since the last collection, past which a paused
# collector's caller collects: a LangSmith sync keeps 20,000 to 40,000 alive between pages.
GROWTH_LIMIT = 200_000


def collect_if_grown() -> None:
    """Collect the young generation if it grew by ``GROWTH_LIMIT`` containers since the last.

    With the collector paused, its count only grows by objects still alive (garbage freed
    by reference counting counts down again): cycles, or a live set that grew. Collecting
    every page instead cost a sync 6 ms a page walking the pages still in flight.
    """
    if gc.get_count()[0] > GROWTH_LIMIT:
        gc.collect(0)
