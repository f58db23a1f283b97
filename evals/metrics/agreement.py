"""Agreement between an eval's verdicts and human labels, plus deterministic splits.

Thumbs-up ("positive") is the positive class. Neutral labels are excluded. A verdict of
None means the eval raised or timed out on that trace: it is counted in `errors` and
`coverage`, not in the confusion matrix, so accuracy describes the verdicts the eval
actually gave and coverage says how often it gave one.
"""

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

AGREEMENT_BAR = 0.80
# Cohen's kappa under which agreement is too close to chance to trust, whatever the raw
# accuracy: a constant verdict scores 0 (and can still "agree" 91 % on skewed labels).
# 0.40 is where Landis & Koch's "moderate" agreement starts, and about two standard
# errors above chance at 25 labels (kappa's standard error there is near 0.2), so a
# version that clears it on held-out labels is unlikely to be a lucky guess.
KAPPA_BAR = 0.40

_POSITIVE = {"positive", True}
_NEGATIVE = {"negative", False}
_NEUTRAL = {"neutral", None}


@dataclass(frozen=True)
class Agreement:
    labelled: int  # non-neutral labelled traces
    errors: int  # of those, traces where the eval gave no verdict
    tp: int
    fp: int
    fn: int
    tn: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    kappa: float | None
    coverage: float | None
    # Mean of the shares of good and of bad traces judged right; 0.5 for any constant.
    balanced_accuracy: float | None = None

    @property
    def scored(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def agreeing(self) -> int:
        return self.tp + self.tn

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _human(label: object) -> bool | None:
    if label in _NEUTRAL:
        return None
    if label in _POSITIVE:
        return True
    if label in _NEGATIVE:
        return False
    raise ValueError(f"unknown human label {label!r}; expected positive, negative or neutral")


def agreement(pairs: Iterable[tuple[object, bool | None]]) -> Agreement:
    """Return agreement metrics for (human label, verdict) pairs."""
    tp = fp = fn = tn = errors = labelled = 0
    for label, verdict in pairs:
        human = _human(label)
        if human is None:
            continue
        labelled += 1
        if verdict is None:
            errors += 1
        elif verdict and human:
            tp += 1
        elif verdict:
            fp += 1
        elif human:
            fn += 1
        else:
            tn += 1
    scored = tp + fp + fn + tn
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    specificity = _ratio(tn, tn + fp)
    balanced = None
    if recall is not None and specificity is not None:
        balanced = (recall + specificity) / 2
    return Agreement(
        labelled=labelled,
        errors=errors,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        accuracy=_ratio(tp + tn, scored),
        precision=precision,
        recall=recall,
        f1=f1,
        kappa=cohen_kappa(tp=tp, fp=fp, fn=fn, tn=tn),
        coverage=_ratio(scored, labelled),
        balanced_accuracy=balanced,
    )


def cohen_kappa(*, tp: int, fp: int, fn: int, tn: int) -> float | None:
    """Return Cohen's kappa, or None when chance agreement is total (or no data)."""
    n = tp + fp + fn + tn
    if n == 0:
        return None
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    if expected >= 1:
        return None
    return (observed - expected) / (1 - expected)


def low_confidence_reason(
    result: Agreement,
    *,
    scope: str = "held-out traces",
    bar: float = AGREEMENT_BAR,
    kappa_bar: float = KAPPA_BAR,
) -> str | None:
    """Return why the agreement is too low to trust, or None when it clears the bars.

    Raw agreement must reach `bar` and Cohen's kappa `kappa_bar`: on skewed labels a
    constant verdict agrees often while being no better than chance.
    """
    if result.labelled == 0:
        return f"No labelled {scope} to measure agreement on"
    if result.accuracy is None:
        return f"Gave no verdict on any of the {result.labelled} labelled {scope}"
    if result.accuracy < bar:
        return (
            f"Agrees with {result.agreeing} of {result.scored} labels "
            f"({result.accuracy:.0%}) on {scope}; below the {bar:.0%} bar"
        )
    if result.coverage is not None and result.coverage < bar:
        return (
            f"Gave a verdict on only {result.scored} of {result.labelled} labelled {scope} "
            f"({result.coverage:.0%}); below the {bar:.0%} bar"
        )
    if result.kappa is not None and result.kappa < kappa_bar:
        return (
            f"Cohen's κ is {result.kappa:.2f} on {scope} (agrees with {result.agreeing} of "
            f"{result.scored}); below the {kappa_bar:.2f} bar, too close to chance"
        )
    return None


def _order(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def _group_index(groups: Sequence[str]) -> dict[str, list[int]]:
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(str(group), []).append(i)
    return members


def grouped_folds(
    groups: Sequence[str],
    *,
    k: int = 5,
    labels: Sequence[bool] | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """Return up to k test folds of indices; a group never spans two folds.

    Groups are ordered by a seeded hash (so the result depends only on the inputs),
    stratified by the group's majority label when labels are given, then dealt round
    robin. Fewer groups than k gives one fold per group.
    """
    members = _group_index(groups)
    k = max(1, min(k, len(members)))

    def group_key(item: tuple[str, list[int]]) -> tuple:
        name, idx = item
        label_rank = 0
        if labels is not None:
            good = sum(1 for i in idx if labels[i])
            label_rank = 0 if good * 2 >= len(idx) else 1
        return (label_rank, _order(seed, name))

    folds: list[list[int]] = [[] for _ in range(k)]
    for position, (_, idx) in enumerate(sorted(members.items(), key=group_key)):
        folds[position % k].extend(idx)
    return [sorted(fold) for fold in folds if fold]


# How a figure measured by cross-validating the whole procedure is named in a version's
# metrics ("method"): one place writes it and reads it back, so re-scoring keeps it.
_CROSS_VALIDATED = "-fold cross-validation"


def cross_validated_method(folds: int) -> str:
    """Return the method of a held-out figure from ``folds``-fold cross-validation."""
    return f"{folds}{_CROSS_VALIDATED}, the rule learned again without each fold"


def is_cross_validated(method: str) -> bool:
    """Tell whether a stored method names a cross-validated held-out figure (versions made
    before December 2026 say only "5-fold cross-validation")."""
    return _CROSS_VALIDATED in (method or "")


def holdout_split(
    groups: Sequence[str],
    *,
    labels: Sequence[bool] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Return (train, test) indices with whole groups on one side, test about test_fraction.

    With labels, each verdict gets its share of the test side (by the group's majority
    label), and one of each as soon as it has two groups: a held-out side of one verdict
    has no κ, whatever the eval does, which a hash of the ids alone gave now and then.
    """
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1")
    members = _group_index(groups)
    ordered = sorted(members, key=lambda name: _order(seed, name))
    target = round(len(groups) * test_fraction)

    def verdict(name: str) -> bool | None:
        if labels is None:
            return None
        idx = members[name]
        return sum(1 for i in idx if labels[i]) * 2 >= len(idx)

    quotas = _test_quotas({name: verdict(name) for name in ordered}, members, target)
    taken: dict[bool | None, int] = dict.fromkeys(quotas, 0)
    test: list[int] = []
    train: list[int] = []
    for name in ordered:
        side = verdict(name)
        if taken[side] < quotas[side]:
            taken[side] += len(members[name])
            test.extend(members[name])
        else:
            train.extend(members[name])
    return sorted(train), sorted(test)


def _test_quotas(
    verdicts: dict[str, bool | None], members: dict[str, list[int]], target: int
) -> dict[bool | None, int]:
    """Split ``target`` test items among the verdicts in proportion to their sizes."""
    sizes: dict[bool | None, int] = {}
    group_counts: dict[bool | None, int] = {}
    for name, side in verdicts.items():
        sizes[side] = sizes.get(side, 0) + len(members[name])
        group_counts[side] = group_counts.get(side, 0) + 1
    total = sum(sizes.values()) or 1
    exact = {side: size * target / total for side, size in sizes.items()}
    quotas = {side: int(share) for side, share in exact.items()}
    # Largest remainders first (ties in a fixed order), until the target is reached.
    by_remainder = sorted(exact, key=lambda side: (quotas[side] - exact[side], str(side)))
    for side in by_remainder[: target - sum(quotas.values())]:
        quotas[side] += 1
    for side, count in group_counts.items():
        if target and count >= 2 and quotas[side] == 0:
            quotas[side] = 1
    return quotas


def cell_state(label: str, passed: bool | None, *, ran: bool = True) -> str:
    """Classify an eval verdict against the human label."""
    if not ran:
        return "missing"
    if passed is None:
        return "error"
    if label == "neutral":
        return "neutral"
    return "agree" if passed == (label == "positive") else "contradict"
