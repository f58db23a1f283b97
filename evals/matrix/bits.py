"""Sets of trace ids as bitsets, which the matrix judges with a few integer operations.

A version's verdicts (the traces it passed, failed, erred on) and the labelled traces of a
view are crossed for every version. As Python sets, that was the cold matrix's largest
cost (a hash probe per trace, per label, per version) and building the verdicts' sets
the next; as bitsets, each crossing is one ``&`` over a few kilobytes.
"""

import sys
from array import array
from collections.abc import Iterable

_ORDER = sys.byteorder


class TraceSet:
    """Trace ids as bits: bit ``i`` of ``data`` (little-endian) is the trace ``lo + i``.

    ``data`` spans the smallest to the largest id: 2.5 kB for 20,000 consecutive ids.
    """

    __slots__ = ("lo", "data")

    def __init__(self, lo: int = 0, data: bytes = b""):
        self.lo, self.data = lo, data

    @classmethod
    def of(cls, ids: Iterable[int]) -> "TraceSet":
        ids = list(ids)
        if not ids:
            return cls()
        lo = min(ids)
        data = by_key(((pk, 0) for pk in ids), lo, max(ids) - lo + 1)[0]
        return cls(lo, data.to_bytes((data.bit_length() + 7) >> 3, "little"))

    @classmethod
    def from_words(cls, packed: bytes) -> "TraceSet":
        """The ids of big-endian 8-byte pairs (id // 64, the bits of its 64 ids), in any
        order: PostgreSQL aggregates a version's verdicts into them (see ``words_sql``)."""
        pairs = array("q")
        pairs.frombytes(packed)
        if _ORDER == "little":
            pairs.byteswap()
        words, masks = pairs[0::2], pairs[1::2]
        if not words:
            return cls()
        first = min(words)
        dense = array("q", bytes(8 * (max(words) - first + 1)))
        for word, mask in zip(words, masks, strict=True):
            dense[word - first] = mask
        if _ORDER == "big":
            dense.byteswap()
        return cls(first * 64, dense.tobytes())

    def __contains__(self, pk: int) -> bool:
        i = pk - self.lo
        return 0 <= i < 8 * len(self.data) and bool(self.data[i >> 3] >> (i & 7) & 1)

    def bits(self, lo: int, width: int) -> int:
        """The set as an integer whose bit ``i`` is the trace ``lo + i``, for the ``width``
        traces from ``lo`` (the ids of a view), whatever the set's own span."""
        bits = int.from_bytes(self.data, "little")
        shift = self.lo - lo
        bits = bits << shift if shift >= 0 else bits >> -shift
        return bits & ((1 << width) - 1)


def by_key(pairs: Iterable[tuple[int, object]], lo: int, width: int) -> dict[object, int]:
    """The ids of each key of (id, key) pairs, as integers whose bit ``i`` is the id
    ``lo + i`` (every id from ``lo`` to ``lo + width - 1``). One pass."""
    size = (width + 7) >> 3
    found: dict[object, bytearray] = {}
    for pk, key in pairs:
        data = found.get(key)
        if data is None:
            data = found[key] = bytearray(size)
        i = pk - lo
        data[i >> 3] |= 1 << (i & 7)
    return {key: int.from_bytes(data, "little") for key, data in found.items()}


def ids_of(bits: int, lo: int) -> set[int]:
    """The ids whose bits are set in ``bits`` (bit ``i``: the id ``lo + i``)."""
    data = bits.to_bytes((bits.bit_length() + 7) >> 3, "little")
    return {lo + 8 * n + i for n, byte in enumerate(data) if byte for i in _SET_BITS[byte]}


# The set bits of each byte value.
_SET_BITS = [tuple(i for i in range(8) if value >> i & 1) for value in range(256)]
