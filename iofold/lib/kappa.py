"""Cohen's kappa for two raters over any set of categories (good/bad/neutral labels)."""

from collections import Counter
from collections.abc import Sequence


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Return κ for ``(rater A's category, rater B's category)`` pairs of the same items.

    None when there is nothing to compare, or when chance agreement is total (both raters
    only ever used one and the same category), where κ is undefined.
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    if expected >= 1:
        return None
    return (observed - expected) / (1 - expected)
