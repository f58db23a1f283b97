"""The comparison matrix's cache: keys, and how long a part is kept."""

import datetime as dt
import hashlib
import math

from django.utils import timezone

# Each cached part is exact while its stamp holds. Labels: the set's label count and
# newest label, and the workspace's newest change to a trace written again (a re-import:
# a trace's time or source moves it in or out of range; new traces do not count).
# Verdicts: each version's newest execution (they are read for every trace the version
# ran on, labelled or not). Writes that commit out of order could hide behind a newer
# timestamp already seen, so a part built while its newest change is younger than
# MATRIX_SETTLE_SECONDS (far longer than those writes' transactions) expires when that
# change has settled.
MATRIX_CACHE_SECONDS = 15 * 60
MATRIX_SETTLE_SECONDS = 30
# Part of the cache keys: bump it when a cached part changes shape, so that a deploy
# never reads a part pickled by the code before it.
MATRIX_INDEX_FORMAT = 10


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
