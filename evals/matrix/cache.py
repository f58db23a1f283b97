"""The comparison matrix's cache: parts kept while the stamps they were built at hold."""

import datetime as dt
import hashlib
import logging
import math

from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

# Each cached part is exact while its stamp holds. Labels: the set's label count and
# newest label, and the workspace's newest trace change (a trace's time or source moves
# it in or out of range). Verdicts: the set's label count and newest label (they are
# read for labelled traces only) and each version's newest execution. Writes that commit
# out of order could hide behind a newer timestamp already seen, so a part built while
# its newest change is younger than MATRIX_SETTLE_SECONDS (far longer than those writes'
# transactions) expires when that change has settled.
MATRIX_CACHE_SECONDS = 15 * 60
MATRIX_SETTLE_SECONDS = 30
# Part of the cache keys: bump it when a cached part changes shape, so that a deploy
# never reads a part pickled by the code before it.
MATRIX_INDEX_FORMAT = 5


def cached(what: tuple, stamp: tuple, changed_at: tuple, build):
    """Return ``build()``, cached under ``what`` (the statement and whose it is) and stamp.

    ``changed_at`` are the stamp's times: a part is kept only until its newest change
    has settled, then long.
    """
    key = cache_key(what, stamp)
    try:
        value = cache.get(key)
    except Exception:
        # The cache only saves time: with it down the page is slower, not broken.
        logger.warning("matrix cache unavailable, building without it", exc_info=True)
        return build()
    if value is None:
        value = build()
        try:
            cache.set(key, value, seconds_to_keep(changed_at))
        except Exception:
            logger.warning("matrix cache unavailable, not storing", exc_info=True)
    return value


def cache_key(what: tuple, stamp: tuple) -> str:
    digest = hashlib.sha256(repr((what, stamp)).encode()).hexdigest()
    return f"evals:matrix:{MATRIX_INDEX_FORMAT}:{digest}"


def seconds_to_keep(changed_at: tuple) -> int:
    """Long, unless the newest of ``changed_at`` is younger than the settle time."""
    changes = [as_datetime(value) for value in changed_at if value is not None]
    if not changes:
        return MATRIX_CACHE_SECONDS
    unsettled = (max(changes) - timezone.now()).total_seconds() + MATRIX_SETTLE_SECONDS
    if unsettled <= 0:
        return MATRIX_CACHE_SECONDS
    return min(MATRIX_CACHE_SECONDS, math.ceil(unsettled))


def as_datetime(value) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands a raw cursor the stored text
        value = dt.datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)
