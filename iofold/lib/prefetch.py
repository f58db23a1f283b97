"""Read an iterator ahead on a thread, a bounded number of items, in order.

A sync alternates between waiting on a source (its next page) and on the database (the
page it writes). ``prefetched`` overlaps the two: a thread pulls the next items while the
caller works on the current one, at most ``depth`` items ahead, so memory stays bounded.
Items arrive in the iterator's order; an exception the iterator raises reaches the caller
after every item it yielded before it, as it would without the thread.

The thread must not use the database (Django connections are per thread): it only runs
the iterator, which for a sync is an adapter talking HTTP.

While a prefetcher runs, the interpreter's thread switch interval drops from 5 ms to
0.5 ms. Both threads block often (a database round trip, an HTTP read) and compute in
between; each time one returns from a blocking call it waits for the other to give up
the GIL, by default up to 5 ms, and a sync makes thousands of such calls. With the
default interval reading ahead made a LangSmith sync slower than reading in turn
(2.0 s against 1.5 s for 1,000 traces); with 0.5 ms it is faster (1.1 s against 1.3 s).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)

# How long ``close`` waits for the thread to notice: it finishes the item it is fetching
# first (an HTTP request, bounded by the adapter's own timeouts).
JOIN_SECONDS = 60.0
_POLL_SECONDS = 0.1
SWITCH_INTERVAL = 0.0005

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved: float | None = None


def _shorten_switch_interval() -> None:
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
        _switch_users += 1


def _restore_switch_interval() -> None:
    global _switch_users
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0 and _switch_saved is not None:
            sys.setswitchinterval(_switch_saved)


class _Done:
    """The iterator ended; ``error`` is what it raised, if anything."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetched[T]:
    """An iterator over ``source`` whose items a thread fetches up to ``depth`` ahead.

    Use it as a context manager (or call ``close``) so that a caller who stops early
    also stops the thread, and the source's own clean-up (a generator's ``finally``)
    runs, on that thread, before ``close`` returns.
    """

    def __init__(self, source: Iterable[T], *, depth: int = 1, name: str = "prefetch") -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._source = source
        self._queue: queue.Queue[T | _Done] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        _shorten_switch_interval()
        self._thread.start()

    def _put(self, item: T | _Done) -> bool:
        """Hand ``item`` over, waiting for room; False when the caller stopped reading."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._read()
        finally:
            _restore_switch_interval()

    def _read(self) -> None:
        iterator = iter(self._source)
        try:
            for item in iterator:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the reading thread, raised there
            self._put(_Done(exc))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.exception("prefetched source failed to close")
        self._put(_Done())

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _Done):
            self._finished = True
            self._thread.join(JOIN_SECONDS)
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread (after the item it is fetching) and wait for it."""
        self._finished = True
        self._stop.set()
        while True:  # unblock a thread waiting for room
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(JOIN_SECONDS)
        if self._thread.is_alive():
            logger.warning("prefetch thread still running after %.0f s", JOIN_SECONDS)

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def prefetched[T](source: Iterable[T], *, depth: int = 1, name: str = "prefetch") -> Prefetched[T]:
    """Return ``source`` read ahead on a thread, ``depth`` items at most."""
    return Prefetched(source, depth=depth, name=name)
