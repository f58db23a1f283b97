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
    """Trace ids as 64-bit words: ``masks[id >> 6]`` has bit ``id & 63`` set.

    Only the words that hold an id are kept, so a set's size follows its ids, however far
    apart (a workspace's traces are spread among other workspaces' ids).
    """

    __slots__ = ("masks",)

    def __init__(self, masks: dict[int, int] | None = None):
        self.masks = masks or {}

    @classmethod
    def of(cls, ids: Iterable[int]) -> "TraceSet":
        masks: dict[int, int] = {}
        for pk in ids:
            masks[pk >> 6] = masks.get(pk >> 6, 0) | 1 << (pk & 63)
        return cls(masks)

    @classmethod
    def from_words(cls, packed: bytes) -> "TraceSet":
        """The ids of big-endian 8-byte pairs (id >> 6, the bits of its 64 ids), in any
        order, as PostgreSQL aggregates a version's verdicts."""
        pairs = array("Q")  # unsigned: the top bit of a mask is an id, not a sign
        pairs.frombytes(packed)
        if _ORDER == "little":
            pairs.byteswap()
        return cls(dict(zip(pairs[0::2], pairs[1::2], strict=True)))

    def __contains__(self, pk: int) -> bool:
        return bool(self.masks.get(pk >> 6, 0) >> (pk & 63) & 1)


class Span:
    """The 64-id words that hold a view's labelled traces, numbered one after the other:
    bitsets over a span are as long as the traces are many, however far apart their ids
    (bit ``64 * n + i`` is the id ``64 * words[n] + i``)."""

    def __init__(self, ids: Iterable[int]):
        self.words = sorted({pk >> 6 for pk in ids})
        self.place = {word: n for n, word in enumerate(self.words)}

    def by_key(self, pairs: Iterable[tuple[int, object]]) -> dict[object, int]:
        """The ids of each key of (id, key) pairs (ids of the span), as bitsets. One pass."""
        place, size = self.place, 8 * len(self.words)
        found: dict[object, bytearray] = {}
        for pk, key in pairs:
            data = found.get(key)
            if data is None:
                data = found[key] = bytearray(size)
            i = 64 * place[pk >> 6] + (pk & 63)
            data[i >> 3] |= 1 << (i & 7)
        return {key: int.from_bytes(data, "little") for key, data in found.items()}

    def bits(self, trace_set: TraceSet) -> int:
        """The ids of ``trace_set`` that fall in the span, as a bitset."""
        window = array("Q", bytes(8 * len(self.words)))
        place = self.place
        for word, mask in trace_set.masks.items():
            n = place.get(word)
            if n is not None:
                window[n] = mask
        if _ORDER == "big":
            window.byteswap()
        return int.from_bytes(window.tobytes(), "little")

    def ids(self, bits: int) -> set[int]:
        """The ids whose bits are set in ``bits``."""
        data = bits.to_bytes((bits.bit_length() + 7) >> 3, "little")
        words = self.words
        return {
            64 * words[n >> 3] + 8 * (n & 7) + i
            for n, byte in enumerate(data)
            if byte
            for i in _SET_BITS[byte]
        }


# The set bits of each byte value.
_SET_BITS = [tuple(i for i in range(8) if value >> i & 1) for value in range(256)]
