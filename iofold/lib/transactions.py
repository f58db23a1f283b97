"""Transactions that PostgreSQL may end to break a deadlock, run again a few times.

Writers take their row locks in one order (trace ingest: conversations by id, then traces
by key), but not every mix of writers can (a third ingest, a reviewer's label moving with
a conversation's anchor). PostgreSQL then fails one transaction of the cycle with
``deadlock_detected``; run again once the other has committed, it succeeds. Only a
transaction of the caller's own, whole, can be run again: inside a caller's, the error
has already failed that one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from django.db import OperationalError, transaction

logger = logging.getLogger(__name__)

# deadlock_detected, serialization_failure: the transaction may succeed run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 3
FIRST_DELAY = 0.05  # seconds; doubled each time, with jitter so the two do not meet again


def is_retryable(error: BaseException) -> bool:
    """Tell whether the database ended the transaction only to break a lock cycle."""
    cause = error.__cause__ or error
    return getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES


def run_in_transaction[T](
    work: Callable[[], T], *, what: str, attempts: int = ATTEMPTS, sleep=time.sleep
) -> T:
    """Run ``work()`` in a transaction of its own; after a deadlock or serialization
    failure, run it again (at most ``attempts`` times in all, after a short backoff).

    Called inside a transaction, ``work()`` runs in it, once: the caller's transaction is
    the one to run again. ``work`` must be safe to run again: what it did in the failed
    transaction is rolled back, and ``on_commit`` callbacks it registered there dropped.
    """
    if transaction.get_connection().in_atomic_block:
        return work()
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as error:
            if attempt == attempts or not is_retryable(error):
                raise
            delay = FIRST_DELAY * 2 ** (attempt - 1) * (1 + random.random())
            logger.warning(
                "%s: transaction ended by the database (%s), attempt %d of %d, again in %.2fs",
                what,
                getattr(error.__cause__, "sqlstate", None),
                attempt,
                attempts,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")
