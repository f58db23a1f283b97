"""Trace ids as bitsets: the matrix's verdicts read as 64-bit words hold the same ids."""

import random
import sys
from array import array

from evals.matrix.bits import Span, TraceSet


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


def test_a_span_keeps_the_ids_of_its_words_however_far_apart():
    labelled = [(63, "a"), (64, "b"), (5_000_000_000, "a"), (5_000_000_063, "b")]
    span = Span(pk for pk, _ in labelled)
    # Four ids in three words, billions apart: three words of bits.
    assert len(span.words) == 3
    by_key = span.by_key(labelled)
    assert span.ids(by_key["a"]) == {63, 5_000_000_000}
    assert span.ids(by_key["b"]) == {64, 5_000_000_063}
    # A set seen through the span: only its ids in the span's words.
    verdicts = TraceSet.from_words(_words([1, 63, 64, 65, 200, 5_000_000_001, 5_000_000_063]))
    assert span.ids(span.bits(verdicts)) == {1, 63, 64, 65, 5_000_000_001, 5_000_000_063}
    assert span.ids(span.bits(verdicts) & by_key["b"]) == {64, 5_000_000_063}


def test_empty_sets():
    assert 5 not in TraceSet.from_words(b"") and 5 not in TraceSet.of([])
    assert Span([10]).bits(TraceSet()) == 0
