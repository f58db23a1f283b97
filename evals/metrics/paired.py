"""Paired comparison of two eval versions on the same labelled traces.

Both versions judge the same traces, so their errors are paired: McNemar's test looks only
at the discordant traces (one right, the other wrong). ``b`` counts traces the incumbent got
right and the challenger wrong, ``c`` the reverse. No scipy: the binomial tail is summed
exactly with integers, which is fine for the few thousand labels an eval set has.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from statistics import NormalDist

# Below this two-sided mid-p, and with the interval above zero, a difference is not noise.
ALPHA = 0.05


def _binomial_tail(k: int, n: int) -> Fraction:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly."""
    return Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)


def mcnemar_exact(b: int, c: int) -> tuple[float, float]:
    """Return McNemar's two-sided exact p-value and its mid-p, for discordant counts b, c.

    The mid-p subtracts half the probability of the observed count, which removes most of
    the exact test's conservatism at small counts (Fagerland et al. 2013 recommend it).
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    n = b + c
    if n == 0:
        return 1.0, 1.0
    k = min(b, c)
    tail = _binomial_tail(k, n)
    exact = min(Fraction(1), 2 * tail)
    point = Fraction(math.comb(n, k), 2**n)
    mid = min(Fraction(1), 2 * tail - point)
    return float(exact), float(mid)


def difference_interval(
    *, b: int, c: int, n: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Return (difference, low, high) of challenger minus incumbent accuracy over n pairs.

    Agresti and Min's (2005) adjusted Wald interval: half a pair added to each of the
    four cells keeps its coverage near nominal even with few discordant pairs.
    """
    if n <= 0:
        return 0.0, -1.0, 1.0
    if b + c > n:
        raise ValueError("more discordant pairs than pairs")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    diff = (c - b) / n
    b2, c2, n2 = b + 0.5, c + 0.5, n + 2
    adjusted = (c2 - b2) / n2
    se = math.sqrt(max((b2 + c2) - (c2 - b2) ** 2 / n2, 0.0)) / n2
    return diff, max(-1.0, adjusted - z * se), min(1.0, adjusted + z * se)


@dataclass(frozen=True)
class PairedComparison:
    n: int  # traces both versions judged and a human labelled
    incumbent_correct: int
    challenger_correct: int
    b: int  # incumbent right, challenger wrong
    c: int  # challenger right, incumbent wrong
    p_exact: float
    p_mid: float
    difference: float  # challenger accuracy minus incumbent accuracy
    low: float
    high: float

    @property
    def incumbent_accuracy(self) -> float | None:
        return self.incumbent_correct / self.n if self.n else None

    @property
    def challenger_accuracy(self) -> float | None:
        return self.challenger_correct / self.n if self.n else None

    @property
    def challenger_wins(self) -> bool:
        """True when the challenger is more accurate beyond noise (test and interval agree)."""
        return self.c > self.b and self.p_mid < ALPHA and self.low > 0

    @property
    def incumbent_wins(self) -> bool:
        return self.b > self.c and self.p_mid < ALPHA and self.high < 0

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(
            incumbent_accuracy=self.incumbent_accuracy,
            challenger_accuracy=self.challenger_accuracy,
            challenger_wins=self.challenger_wins,
        )
        return data


def compare_paired(pairs) -> PairedComparison:
    """Compare on (incumbent right, challenger right) booleans, one pair per labelled trace."""
    n = b = c = inc = cha = 0
    for incumbent_right, challenger_right in pairs:
        n += 1
        inc += bool(incumbent_right)
        cha += bool(challenger_right)
        if incumbent_right and not challenger_right:
            b += 1
        elif challenger_right and not incumbent_right:
            c += 1
    p_exact, p_mid = mcnemar_exact(b, c)
    diff, low, high = difference_interval(b=b, c=c, n=n)
    return PairedComparison(n, inc, cha, b, c, p_exact, p_mid, diff, low, high)
