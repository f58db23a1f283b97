"""Trace ids as bitsets: the matrix's verdicts read as 64-bit words hold the same ids."""

import random
import sys
from array import array

from evals.matrix.bits import TraceSet, by_key, ids_of


def _words(ids) -> bytes:
    """The ids as PostgreSQL packs them: big-endian (word, mask) pairs of int8, any order."""
    masks: dict[int, int] = {}
    for pk in ids:
        masks[pk >> 6] = masks.get(pk >> 6, 0) | 1 << (pk & 63)
    pairs = array("q")
    for word, mask in reversed(list(masks.items())):
        pairs.extend([word, mask - (1 << 64) if mask >= 1 << 63 else mask])  # int8 is signed
    if sys.byteorder == "little":
        pairs.byteswap()
    return pairs.tobytes()


def test_ids_read_from_words_or_listed_are_the_same_set():
    rng = random.Random(3)
    ids = {63, 64, 127, 128, 1_000_000_063} | {rng.randrange(1, 5000) for _ in range(700)}
    for trace_set in (TraceSet.from_words(_words(ids)), TraceSet.of(ids)):
        assert [pk for pk in range(0, 5200) if pk in trace_set] == sorted(
            i for i in ids if i < 5200
        )
        assert 1_000_000_063 in trace_set and 1_000_000_062 not in trace_set
        # Seen from any start and width: only the ids in that window.
        window = trace_set.bits(100, 1000)
        assert ids_of(window, 100) == {pk for pk in ids if 100 <= pk < 1100}


def test_empty_sets_and_grouping_by_key():
    assert 5 not in TraceSet.from_words(b"") and 5 not in TraceSet.of([])
    assert TraceSet().bits(10, 64) == 0
    grouped = by_key([(10, "positive"), (12, "negative"), (17, "positive")], 10, 8)
    assert ids_of(grouped["positive"], 10) == {10, 17}
    assert ids_of(grouped["negative"], 10) == {12}
