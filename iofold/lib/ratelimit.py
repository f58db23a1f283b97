"""A fixed-window counter on the shared cache: "at most N units per window per key".

Kept on ``CACHE_URL`` (Redis in production) so that every web worker and process counts
against the same budget. A refused request takes nothing from the budget, so a client
that retries after ``Retry-After`` gets in.
"""

from __future__ import annotations

import math
import time

from django.core.cache import cache


def take(key: str, amount: int, *, limit: int, window: int = 60) -> int | None:
    """Take ``amount`` units from ``key``'s budget; return the seconds to wait when refused.

    ``None`` means admitted. A limit of 0 or less means unlimited.
    """
    if limit <= 0 or amount <= 0:
        return None
    now = time.time()
    slot = int(now // window)
    counter = f"ratelimit:{key}:{slot}"
    # add() is atomic and a no-op when the counter exists; the expiry outlives the window.
    cache.add(counter, 0, timeout=window + 5)
    try:
        count = cache.incr(counter, amount)
    except ValueError:  # expired between add() and incr(): start the window again
        cache.add(counter, amount, timeout=window + 5)
        count = amount
    if count <= limit:
        return None
    cache.decr(counter, amount)
    return max(1, math.ceil((slot + 1) * window - now))
