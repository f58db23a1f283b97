"""Learn one readable rule ("the trace is bad when ...") chosen by grouped cross-validation.

The rule language grows in steps, each a little more complex than the last:

- ``constant``: every trace gets the training majority verdict (no eval);
- ``one``: one structural condition;
- ``two``: up to two structural conditions joined by AND or OR;
- ``words``: one condition that may also be a word n-gram.

Each step is fitted on the training part of every fold and scored on the held-out part
(the folds dealt several times and averaged below REPEAT_BELOW labels). Standard errors
are McNemar's: the square root of the (mean) number of held-out traces on which two
steps disagree. Two conditions are kept only when they beat one by more than
a standard error (the one-standard-error rule); a rule must beat the constant by
BEAT_MAJORITY_SE standard errors (NAMED_FAMILY_SE when the criteria or notes name its
families and few others). Words are admitted last, only when they beat the structural
choice by a standard error plus a margin that grows with the number of n-grams tried:
from a few dozen labels some chance word always separates the training set.
"""

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from evals.metrics.agreement import grouped_folds
from evals.synthesis import runtime
from evals.synthesis.features import (
    Candidate,
    Feature,
    build_noted,
    build_structural,
    build_words,
    dedupe,
    family_pointers,
)
from traces.vocabulary import unit_noun

LEVELS = ("constant", "one", "two", "words")
# Weight of a feature's simplicity cost against agreement, in examples.
COST_WEIGHT = 0.25
# Extra training agreement (in examples) a second condition must add to be kept.
PAIR_PENALTY = 1.0
# Single conditions carried into the search for pairs, best first.
BEAM = 12
# The bars below are calibrated by bench/synth_power.py on real traces with planted
# rules and with pure-noise labels (docs/synthesiser.md has the figures): the target is
# at most 10 % false alarms (a non-constant eval from random labels) at 10, 25 and 50
# labels, and as much power as that allows.
# Held-out agreement a word rule must add beyond one standard error, per sqrt(n log m).
WORD_MARGIN = 0.2
# Standard errors by which a rule must beat the majority verdict on held-out labels.
# With five dealings (below) 1.1 kept false alarms at 4-9 %; a single dealing needed 1.4
# for the same, and turned away more real rules. Ten dealings, and two conditions tried
# when one fails (TWO_WHEN_ONE_FAILS), keep false alarms at 7-9.4 % at 1.05 on two
# independent runs of 540 pure-noise fits per size (docs/synthesiser.md, ninth pass).
BEAT_MAJORITY_SE = 1.05
# The same bar for a rule made only of feature families that the criteria or the
# reviewers' notes name: their words are evidence the labels do not carry, so a rule
# they point to needs less held-out proof. With notes that point nowhere (pure noise),
# 0.84 still kept false alarms at 10 % or less; 0.5 did not. The bar rises towards
# BEAT_MAJORITY_SE with the share of candidates named: wording that named the step, tool
# and error families at once (half of an agent trace's candidates) let 4 of 20
# pure-noise fits through at 50 labels at 0.84 (docs/synthesiser.md).
NAMED_FAMILY_SE = 0.84
# Standard errors by which two conditions must beat one (the one-standard-error rule).
TWO_OVER_ONE_SE = 1.0
# Below REPEAT_BELOW labels the grouped folds are dealt CV_REPEATS times with different
# seeds and the held-out counts averaged: one dealing of 10 or 25 labels into five folds
# is a coin toss of its own, and averaging removes that part of the noise. Above it one
# dealing is steady enough and the fit stays fast.
CV_REPEATS = 10
# When the one-standard-error rule picks one condition and it does not beat the majority
# verdict, two conditions that do are kept (`choose`).
TWO_WHEN_ONE_FAILS = True
REPEAT_BELOW = 100
BALANCED = False
BALANCED_FIT = False
# A label-permutation test can replace the fixed bar for structural rules below
# PERMUTE_BELOW labels: the labels are shuffled PERMUTATIONS times (whole groups' labels
# moving together), the same selection is run on each, and a rule ships only when its
# gain over the constant, in standard errors, is beaten by at most a share
# PERMUTATION_ALPHA of them (a Monte Carlo p-value). Measured on the calibration bench it
# lands on the fixed bar's trade-off between power and false alarms, not above it, at 10
# to 20 times the fit's cost (docs/synthesiser.md, eighth pass), so it stays off (0).
PERMUTATIONS = 0
PERMUTE_BELOW = 100
PERMUTATION_ALPHA = 0.1


def judged_good(why: str) -> str:
    """Return the reason for a good verdict: what the rule found missing."""
    return "Judged good: " + _lower_first(why)


def negation_cost(feature: Feature, holds: bool) -> float:
    """Return the extra cost of reading a feature negated ("no X" is a little harder).

    "Shorter than" reads as plainly as "at least", so thresholds pay nothing.
    """
    return 0.0 if holds or feature.helper == "at_least" else 0.25


@dataclass(frozen=True)
class Literal:
    """A feature that holds (or, negated, does not)."""

    feature: Feature
    holds: bool

    @property
    def cost(self) -> float:
        return self.feature.cost + negation_cost(self.feature, self.holds)

    def test(self, v: dict) -> str:
        """Return truthy text when the literal holds: the match, or 'yes' when negated."""
        hit = self.feature.evaluate(v)
        if self.holds:
            return hit
        return "" if hit else "yes"

    def source(self) -> str:
        call = self.feature.call_source()
        return call if self.holds else f"not {call}"

    def reason_parts(self, *, lower: bool = False) -> tuple[str, str, bool]:
        """Return (prefix, suffix, uses_match); `lower` for a clause after the first."""
        prefix, suffix, uses_match = self.feature.reason_parts(self.holds)
        return (_lower_first(prefix) if lower else prefix), suffix, uses_match

    def reason(self, hit: str, *, lower: bool = False) -> str:
        prefix, suffix, uses_match = self.reason_parts(lower=lower)
        return prefix + hit + suffix if uses_match else prefix + suffix

    def describe(self) -> str:
        return self.feature.describe(self.holds)

    def negated(self) -> "Literal":
        return Literal(self.feature, not self.holds)

    def absent(self) -> str:
        """Return the statement that the literal does not hold, as a verdict's reason."""
        return self.feature.describe(not self.holds, said=False)


@dataclass(frozen=True)
class Rule:
    """The trace is bad when the condition holds, good otherwise."""

    literals: tuple[Literal, ...]
    op: str  # "and" or "or"; "" for one literal
    matched: int = 0  # training traces the condition holds for
    agreeing: int = 0  # of those, labelled bad
    rest: int = 0  # training traces it does not hold for
    rest_agreeing: int = 0  # of those, labelled good

    verdict = False

    @property
    def feature(self) -> Feature:
        return self.literals[0].feature

    def condition(self) -> str:
        parts = [self.literals[0].describe()]
        parts += [_lower_first(lit.describe()) for lit in self.literals[1:]]
        return f" {self.op} ".join(parts)

    def describe(self, unit: str = "trace") -> str:
        return (
            f"The {unit_noun(unit)} is bad when {_lower_first(self.condition())} "
            f"({self.agreeing} of {self.matched} matching training {unit_noun(unit, None)} "
            "are bad)"
        )

    def judge(self, v: dict) -> tuple[bool, str]:
        """Return (verdict, reason) exactly as the emitted eval_fn computes them."""
        hits = [lit.test(v) for lit in self.literals]
        if self.op == "or":
            for lit, hit in zip(self.literals, hits, strict=True):
                if hit:
                    return False, lit.reason(hit)
            first, second = (lit.absent() for lit in self.literals)
            return True, judged_good(f"{first}, and {_lower_first(second)}")
        if all(hits):
            reasons = [
                lit.reason(hit, lower=i > 0)
                for i, (lit, hit) in enumerate(zip(self.literals, hits, strict=True))
            ]
            return False, " and ".join(reasons)
        for lit, hit in zip(self.literals, hits, strict=True):
            if not hit:
                return True, judged_good(lit.absent())
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class DecisionList:
    """At most one rule, then the default verdict (the majority one when no rule)."""

    rules: tuple[Rule, ...]
    default: bool
    default_matched: int = 0
    default_agreeing: int = 0
    # What the eval judges (``EvalSet.unit``): names the emitted code's argument and words.
    unit: str = "trace"

    def predict_view(self, v: dict) -> tuple[bool, str]:
        for rule in self.rules:
            return rule.judge(v)
        return self.default, self.default_reason()

    def default_reason(self) -> str:
        verdict = "good" if self.default else "bad"
        return f"No reliable rule yet; most labelled {unit_noun(self.unit, None)} are {verdict}"


@dataclass
class Selection:
    """How the rule's complexity was chosen: held-out correct counts per level."""

    cv_correct: dict[str, float] = field(default_factory=dict)
    cv_standard_error: dict[str, float] = field(default_factory=dict)
    cv_total: int = 0
    folds: int = 0
    chosen: str = "constant"
    word_candidates: int = 0
    word_margin: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def chosen_length(self) -> int:
        return 0 if self.chosen == "constant" else 1

    @property
    def estimate(self) -> float | None:
        """Return the held-out agreement of the chosen level, the constant's included.

        Every level is scored on the same held-out folds, the majority verdict by each
        fold's training majority: the whole set's (in-sample) agreement would flatter it.
        """
        if not self.cv_total or self.chosen not in self.cv_correct:
            return None
        return self.cv_correct[self.chosen] / self.cv_total


def _lower_first(text: str) -> str:
    """Return text with its first letter lower-cased, unless it starts an acronym."""
    return text[:1].lower() + text[1:] if text[1:2] == text[1:2].lower() else text


@dataclass
class _Fit:
    literals: tuple[tuple[Candidate, bool], ...]
    op: str
    cond: int  # mask over all rows where the condition holds
    score: float


class _Search:
    """Fit rules of a level on a subset of rows, with masks over all rows."""

    def __init__(self, structural, words, pos, neg, full, *, balanced=False):
        self.structural = structural
        self.words = words
        self.pos, self.neg, self.full = pos, neg, full
        self.balanced = balanced

    def _literals(self, cands):
        for c in cands:
            yield c, True, c.mask
            yield c, False, self.full & ~c.mask

    def fit(self, level: str, rows: int) -> _Fit | None:
        if level == "constant":
            return None
        pos_r = self.pos & rows
        n_pos = pos_r.bit_count()
        n_rows = rows.bit_count()
        if n_pos in (0, n_rows):
            return None
        # Balanced: each verdict class weighs half of the rows, so flagging the rarer
        # verdict is not penalised for its rarity (weights average one example).
        w_pos, w_neg = _weights(n_pos, n_rows - n_pos) if self.balanced else (1.0, 1.0)
        pool = self.structural + (self.words if level == "words" else [])
        singles = []
        for c, holds, lit in self._literals(pool):
            # Only what the criteria or the notes on these rows point to is believed: a
            # held-out trace's note must not steer the rule it is scored on.
            prior = c.prior_in(rows)
            if prior is None:
                continue
            inside = lit & rows
            if inside in (0, rows):
                continue
            cp = (inside & pos_r).bit_count()
            cn = inside.bit_count() - cp
            cost = c.feature.cost + negation_cost(c.feature, holds)
            score = w_neg * cn + w_pos * (n_pos - cp) - COST_WEIGHT * cost + prior
            singles.append((score, c, holds, lit, prior))
        if not singles:
            return None
        singles.sort(key=lambda s: (-s[0], s[1].feature.key, not s[2]))
        # One literal per split: a feature kept for the folds that cannot know a more
        # believed one of the same mask (features.dedupe) yields to it where both count.
        first: dict[tuple[int, bool], tuple] = {}
        for s in singles:
            first.setdefault((s[1].mask, s[2]), s)
        singles = list(first.values())
        score, c, holds, lit, _ = singles[0]
        best = _Fit(((c, holds),), "", lit, score)
        if level != "two":
            return best
        beam = singles[:BEAM]
        # Favoured families (named in criteria or notes) are tried first whatever they score.
        beam += [s for s in singles[BEAM:] if s[4] > 0][:4]
        # Each literal's costs looked up once (the sums below keep their order).
        partners = [
            (cb, hb, lb, prior_b, cb.feature.cost, negation_cost(cb.feature, hb))
            for _, cb, hb, lb, prior_b in singles
            if not cb.feature.is_words
        ]
        most_prior = max((p[3] for p in partners), default=0.0)
        n_neg = n_rows - n_pos
        for _, ca, ha, la, prior_a in beam:
            cost_a, negated_a = ca.feature.cost, negation_cost(ca.feature, ha)
            # The most a pair with this literal can score: an AND judges bad no more than
            # it does (at best its good rows and every bad one right), an OR no less.
            # Pairs that cannot beat the best so far are skipped (the best only grows).
            la_pos = (la & pos_r).bit_count()
            la_neg = (la & rows).bit_count() - la_pos
            reach = prior_a + most_prior - COST_WEIGHT * (cost_a + negated_a) - PAIR_PENALTY
            skip = {
                "and": w_neg * la_neg + w_pos * n_pos + reach < best.score - 1e-9,
                "or": w_neg * n_neg + w_pos * (n_pos - la_pos) + reach < best.score - 1e-9,
            }
            if skip["and"] and skip["or"]:
                continue
            for cb, hb, lb, prior_b, cost_b, negated_b in partners:
                if cb is ca:
                    continue
                for op in ("and", "or"):
                    if skip[op]:
                        continue
                    cond = la & lb if op == "and" else la | lb
                    inside = cond & rows
                    if inside in (0, rows) or cond in (la, lb):
                        continue
                    cp = (inside & pos_r).bit_count()
                    cn = inside.bit_count() - cp
                    cost = cost_a + cost_b + negated_a + negated_b
                    score = (
                        w_neg * cn
                        + w_pos * (n_pos - cp)
                        - COST_WEIGHT * cost
                        - PAIR_PENALTY
                        + prior_a
                        + prior_b
                    )
                    if score > best.score:
                        best = _Fit(((ca, ha), (cb, hb)), op, cond, score)
        return best


def _predicted_bad(fit: _Fit | None, default: bool, rows: int) -> int:
    """Return the mask of rows the fitted rule (or the constant) judges bad."""
    if fit is None:
        return 0 if default else rows
    return fit.cond & rows


def _correct(bad: int, rows: int, pos: int, neg: int) -> int:
    """Return how many of the rows a mask of bad verdicts judges right."""
    return (bad & rows & neg).bit_count() + (rows & ~bad & pos).bit_count()


def _weights(n_pos: int, n_neg: int) -> tuple[float, float]:
    """Return (good, bad) weights giving each verdict class half of the examples' worth."""
    n = n_pos + n_neg
    return n / (2 * n_pos) if n_pos else 0.0, n / (2 * n_neg) if n_neg else 0.0


def _majority(pos_count: int, neg_count: int) -> bool:
    # Ties go to "good": flagging a trace as bad needs evidence.
    return pos_count >= neg_count


def _se(a: int, b: int) -> float:
    """Return the standard error of the difference in correct counts of two verdict masks.

    Only the traces the two disagree on can make a difference; if neither were better
    each would win about half of them, so the difference has a standard deviation of
    the square root of their number (McNemar's test).
    """
    return math.sqrt((a ^ b).bit_count())


@dataclass(frozen=True)
class Bars:
    """How held-out evidence is gathered and how much of it a richer rule needs.

    The defaults are calibrated by bench/synth_power.py (see docs/synthesiser.md).
    """

    beat_majority_se: float = BEAT_MAJORITY_SE
    named_family_se: float = NAMED_FAMILY_SE
    two_over_one_se: float = TWO_OVER_ONE_SE
    word_margin: float = WORD_MARGIN
    folds: int = 5
    repeats: int = CV_REPEATS
    repeat_below: int = REPEAT_BELOW
    # Judge held-out agreement with each verdict class weighing half (balanced accuracy,
    # in examples' worth) rather than raw agreement.
    balanced: bool = BALANCED
    # The permutation test for structural rules (0: off) and its level; `stop_early`
    # gives up on the permutations once the rule cannot pass any more.
    permutations: int = PERMUTATIONS
    permute_below: int = PERMUTE_BELOW
    alpha: float = PERMUTATION_ALPHA
    stop_early: bool = True
    # Standard errors a rule must beat the constant by even when the permutation test
    # passes it.
    permutation_floor_se: float = 0.0
    # The standard error the bar is counted in (`gain_z`), and how much the bar rises
    # per natural log of the structural splits tried beyond `splits_ref`.
    statistic: str = "mcnemar"
    # When the shape the one-standard-error rule picks (one condition) does not beat the
    # majority verdict, try two conditions against the same bar.
    two_when_one_fails: bool = TWO_WHEN_ONE_FAILS
    splits_slope: float = 0.0
    splits_ref: float = 100.0


@dataclass
class Evidence:
    """Held-out agreement of every level, averaged over repeated grouped folds."""

    n: int
    folds: int
    correct: dict[str, float]
    # Mean number of held-out traces on which two levels' verdicts differ.
    disagree: dict[tuple[str, str], float]
    word_candidates: int
    named: dict[str, bool]  # level -> its full-data rule uses only named families
    # Share of the structural candidates that the criteria or notes name: a prior naming
    # most of them singles nothing out, so it earns (almost) no lower bar.
    named_share: float = 0.0
    # The constant's plain held-out agreement (each fold's training majority), which is
    # what it reports; `correct["constant"]` is the stricter reference rules must beat.
    constant_heldout: float | None = None
    # The same, each trace weighted so that each verdict class weighs half of n: the
    # weighted agreement and the summed squared weights of the traces two levels
    # disagree on (McNemar's variance for weighted counts).
    balanced_correct: dict[str, float] | None = None
    balanced_disagree: dict[tuple[str, str], float] | None = None
    # The permutation null: the statistic (`structural_z`) on each shuffled labelling run,
    # and how many were planned (fewer are run when stopped early). None: not computed.
    null: list[float] | None = None
    null_planned: int = 0
    # Per dealing, each level's mask of traces judged bad (the constant's is the
    # reference rules must beat) and the dealing's held-out fold masks; with `good`, the
    # mask of traces labelled good, they let other estimates of a gain's error be
    # computed from the same fits (`gain_z`).
    dealt: list[dict[str, int]] = field(default_factory=list)
    dealt_folds: list[list[int]] = field(default_factory=list)
    good: int = 0
    # Distinct structural splits tried (the candidate space a chance winner comes from).
    splits: int = 0


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if LEVELS.index(a) < LEVELS.index(b) else (b, a)


def gather(
    search: "_Search",
    labels: list[bool],
    groups: list[str],
    *,
    word_candidates: int,
    bars: Bars,
    levels: tuple[str, ...] = LEVELS,
    permute: bool = True,
) -> Evidence | None:
    """Return each level's held-out agreement, or None when there are too few groups.

    Below `bars.repeat_below` labels the grouped folds are dealt `bars.repeats` times
    with different seeds and the counts averaged: one dealing of ten labels into five
    folds is a coin toss of its own, and averaging removes that part of the noise.
    `levels`: the shapes to score (the permutation null needs only the structural ones);
    `permute`: also compute the permutation null when the bars ask for one.
    """
    n = len(labels)
    full, pos, neg = search.full, search.pos, search.neg
    repeats = bars.repeats if n < bars.repeat_below else 1
    correct = dict.fromkeys(levels, 0.0)
    constant_heldout = 0.0
    disagree = {_pair(a, b): 0.0 for i, a in enumerate(levels) for b in levels[i + 1 :]}
    b_correct = dict.fromkeys(levels, 0.0)
    b_disagree = dict.fromkeys(disagree, 0.0)
    used = 0
    folds_seen = 0
    n_pos = pos.bit_count()
    w_pos, w_neg = _weights(n_pos, n - n_pos)
    dealt: list[dict[str, int]] = []
    dealt_folds: list[list[int]] = []
    for seed in range(repeats):
        fold_list = grouped_folds(groups, k=bars.folds, labels=labels, seed=seed)
        if len(fold_list) < 2:
            return None
        folds_seen = len(fold_list)
        bad = dict.fromkeys(levels, 0)
        dealt_folds.append([sum(1 << i for i in test_idx) for test_idx in fold_list])
        for test in dealt_folds[-1]:
            train = full & ~test
            default = _majority((train & pos).bit_count(), (train & neg).bit_count())
            for level in levels:
                bad[level] |= _predicted_bad(search.fit(level, train), default, test)
        constant_heldout += _correct(bad["constant"], full, pos, neg)
        # With balanced labels a fold's training majority is often the opposite of its
        # test majority, which makes the constant look worse than it is: compare rules
        # with the better of that and the whole set's majority verdict. This is only the
        # bar rules must clear; the constant reports its held-out agreement above.
        if _correct(bad["constant"], full, pos, neg) < max(n_pos, n - n_pos):
            bad["constant"] = 0 if n_pos * 2 >= n else full
        dealt.append(dict(bad))
        for level in levels:
            correct[level] += _correct(bad[level], full, pos, neg)
            b_correct[level] += (
                w_neg * (bad[level] & neg).bit_count() + w_pos * (~bad[level] & pos).bit_count()
            )
        for a, b in disagree:
            differ = bad[a] ^ bad[b]
            disagree[(a, b)] += differ.bit_count()
            b_disagree[(a, b)] += (
                w_pos**2 * (differ & pos).bit_count() + w_neg**2 * (differ & neg).bit_count()
            )
        used += 1
    if not permute:
        return Evidence(
            n=n,
            folds=folds_seen,
            correct={k: v / used for k, v in correct.items()},
            disagree={k: v / used for k, v in disagree.items()},
            word_candidates=0,
            named={},
        )
    named = {}
    structural = search.structural
    # Counted in distinct splits: a feature kept for the folds that cannot know a named
    # one of the same mask (features.dedupe) is the same split.
    splits = {c.mask for c in structural}
    named_share = len({c.mask for c in structural if c.feature.prior > 0}) / max(1, len(splits))
    for level in ("one", "two", "words"):
        fitted = search.fit(level, full)
        named[level] = fitted is not None and all(c.feature.prior > 0 for c, _ in fitted.literals)
    ev = Evidence(
        n=n,
        folds=folds_seen,
        correct={k: v / used for k, v in correct.items()},
        disagree={k: v / used for k, v in disagree.items()},
        word_candidates=word_candidates,
        named=named,
        named_share=named_share,
        constant_heldout=constant_heldout / used,
        balanced_correct={k: v / used for k, v in b_correct.items()},
        balanced_disagree={k: v / used for k, v in b_disagree.items()},
        dealt=dealt,
        dealt_folds=dealt_folds,
        good=pos,
        splits=len(splits),
    )
    best, _, stat = structural_z(ev, bars)
    if bars.permutations and n < bars.permute_below and not bars.balanced and not named[best]:
        ev.null_planned = bars.permutations
        ev.null = permutation_null(search, labels, groups, bars, stat=stat)
    return ev


def structural_z(ev: Evidence, bars: Bars) -> tuple[str, float, float]:
    """Return (best structural level, its held-out gain over the constant, the gain in
    standard errors), the level chosen by the one-standard-error rule.

    The gain in standard errors is the statistic the permutation test ranks; it is minus
    infinity when the gain is at most one held-out trace, which no bar ever accepts.
    """
    cv, disagree = ev.correct, ev.disagree
    best = "two" if cv["two"] > cv["one"] else "one"
    se_two = math.sqrt(disagree[_pair("one", "two")])
    if best == "two" and cv["two"] - cv["one"] <= bars.two_over_one_se * se_two:
        best = "one"
    gain = cv[best] - cv["constant"]
    se = math.sqrt(disagree[_pair(best, "constant")])
    return best, gain, (gain / se if gain > 1.0 and se > 0 else -math.inf)


def gain_z(ev: Evidence, level: str, statistic: str = "mcnemar") -> float:
    """Return the held-out gain of `level` over the constant in standard errors.

    `statistic` names the standard error: "mcnemar", the square root of the mean number
    of held-out traces the two disagree on; "trace", the per-trace differences averaged
    over the dealings (a trace the rule gets right in some dealings and wrong in others
    counts less than one it always gets wrong); "trace_emp", their empirical spread; "nb",
    Nadeau and Bengio's corrected resampled t of the per-fold differences (the folds'
    training sets overlap, so their variance is inflated by n_test / n_train).
    """
    gain = ev.correct[level] - ev.correct["constant"]
    if statistic == "mcnemar":
        var = ev.disagree[_pair(level, "constant")]
        return gain / math.sqrt(var) if var > 0 else math.inf
    full, good = (1 << ev.n) - 1, ev.good
    if statistic in ("trace", "trace_emp"):
        diffs = [0.0] * ev.n
        for bad in ev.dealt:
            right = (bad[level] & ~good) | (full & ~bad[level] & good)
            ref = (bad["constant"] & ~good) | (full & ~bad["constant"] & good)
            for i in range(ev.n):
                diffs[i] += ((right >> i) & 1) - ((ref >> i) & 1)
        diffs = [d / len(ev.dealt) for d in diffs]
        if statistic == "trace":
            var = sum(d * d for d in diffs)
        else:
            mean = sum(diffs) / ev.n
            var = sum((d - mean) ** 2 for d in diffs) * ev.n / max(1, ev.n - 1)
        return gain / math.sqrt(var) if var > 0 else (math.inf if gain > 0 else 0.0)
    if statistic == "nb":
        per_fold, sizes = [], []
        for bad, tests in zip(ev.dealt, ev.dealt_folds, strict=True):
            for test in tests:
                size = test.bit_count()
                a = _correct(bad[level], test, good, full & ~good)
                b = _correct(bad["constant"], test, good, full & ~good)
                per_fold.append((a - b) / size)
                sizes.append(size)
        j = len(per_fold)
        mean = sum(per_fold) / j
        var = sum((d - mean) ** 2 for d in per_fold) / max(1, j - 1)
        n_test = sum(sizes) / j
        scale = (1 / j + n_test / max(1.0, ev.n - n_test)) * var
        return mean / math.sqrt(scale) if scale > 0 else (math.inf if mean > 0 else 0.0)
    raise ValueError(f"unknown statistic {statistic!r}")


def permuted(labels: list[bool], groups: list[str], rng: random.Random) -> list[bool]:
    """Return the labels shuffled whole groups at a time.

    A group's labels move together to another group of the same size, so the labels'
    dependence within groups (and the number of bad traces) is that of the real data.
    """
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    by_size: dict[int, list[list[int]]] = {}
    for idx in members.values():
        by_size.setdefault(len(idx), []).append(idx)
    out = list(labels)
    for size in sorted(by_size):
        blocks = by_size[size]
        moved = [[labels[i] for i in idx] for idx in blocks]
        rng.shuffle(moved)
        for idx, values in zip(blocks, moved, strict=True):
            for i, value in zip(idx, values, strict=True):
                out[i] = value
    return out


def permutation_null(
    search: "_Search", labels: list[bool], groups: list[str], bars: Bars, *, stat: float
) -> list[float]:
    """Return the statistic of the same structural selection on shuffled labels.

    The candidates do not depend on the labels, so only the labels change. With
    `bars.stop_early` it stops once more shuffles beat `stat` than the test allows (the
    rule cannot pass any more), and runs none when `stat` could never pass.
    """
    allowed = _allowed_exceedances(bars)
    if bars.stop_early and (stat == -math.inf or allowed < 0):
        return []
    null: list[float] = []
    full = search.full
    rng = random.Random(len(labels))
    for _ in range(bars.permutations):
        shuffled = permuted(labels, groups, rng)
        if len(set(shuffled)) < 2:
            continue
        pos = sum(1 << i for i, good in enumerate(shuffled) if good)
        null_search = _Search(search.structural, [], pos, full & ~pos, full)
        ev = gather(
            null_search,
            shuffled,
            groups,
            word_candidates=0,
            bars=bars,
            levels=("constant", "one", "two"),
            permute=False,
        )
        null.append(-math.inf if ev is None else structural_z(ev, bars)[2])
        if bars.stop_early and sum(z >= stat for z in null) > allowed:
            break
    return null


def _allowed_exceedances(bars: Bars, alpha: float | None = None) -> int:
    """Return how many shuffles may beat the rule for p = (1 + beaten) / (1 + K) <= alpha."""
    alpha = bars.alpha if alpha is None else alpha
    return math.floor(alpha * (bars.permutations + 1) + 1e-9) - 1


def permutation_passes(ev: Evidence, bars: Bars, stat: float, alpha: float | None = None) -> bool:
    """Return whether `stat` beats the permutation null at level alpha (Monte Carlo p-value)."""
    planned = ev.null_planned
    beaten = sum(z >= stat for z in ev.null or [])
    alpha = bars.alpha if alpha is None else alpha
    return stat > -math.inf and (1 + beaten) / (1 + planned) <= alpha + 1e-9


def choose(ev: Evidence, bars: Bars) -> tuple[str, float, list[str]]:
    """Return (chosen level, word margin, notes) from held-out evidence and the bars."""
    cv, disagree = ev.correct, ev.disagree
    if bars.balanced and ev.balanced_correct is not None:
        cv, disagree = ev.balanced_correct, ev.balanced_disagree

    def se(a: str, b: str) -> float:
        return math.sqrt(disagree[_pair(a, b)]) if a != b else 0.0

    notes = []
    chosen = "constant"
    best = "two" if cv["two"] > cv["one"] else "one"
    # One standard error: the simpler shape unless the richer one is clearly better.
    if best == "two" and cv["two"] - cv["one"] <= bars.two_over_one_se * se("two", "one"):
        best = "one"

    def clears(level: str) -> bool:
        """Return whether the level beats the majority verdict by the bar."""
        z = bars.beat_majority_se
        if bars.splits_slope and ev.splits:
            z += bars.splits_slope * math.log(ev.splits / bars.splits_ref)
        if ev.named.get(level):
            z = bars.named_family_se + (z - bars.named_family_se) * ev.named_share
        if (
            bars.permutations
            and ev.null is not None
            and not ev.named.get(level)
            and cv is ev.correct
        ):
            # The permutation test replaces the fixed bar: it knows how many and how alike
            # this data's candidates are, which one constant for every data set cannot.
            stat = structural_z(ev, bars)[2]
            return stat >= bars.permutation_floor_se and permutation_passes(ev, bars, stat)
        if bars.statistic != "mcnemar" and cv is ev.correct and ev.dealt:
            gain = cv[level] - cv["constant"]
            return gain > 1.0 and gain_z(ev, level, bars.statistic) > z
        return cv[level] - cv["constant"] > max(1.0, z * se(level, "constant"))

    if clears(best):
        chosen = best
    elif best == "one" and bars.two_when_one_fails and cv["two"] > cv["one"] and clears("two"):
        # The one-standard-error rule prefers the simpler of two acceptable shapes; when
        # the simpler one does not beat the majority verdict it is no choice, and two
        # conditions that clear the bar on their own (an AND of an input and an output
        # condition, say) are the simplest rule the evidence supports.
        chosen = "two"
    else:
        notes.append("no structural rule beat the majority verdict")
    word_margin = 0.0
    if ev.word_candidates:
        word_margin = se("words", chosen) + bars.word_margin * math.sqrt(
            ev.n * math.log(ev.word_candidates + 1)
        )
        if chosen == "constant":
            word_margin = max(word_margin, bars.beat_majority_se * se("words", chosen))
        if cv["words"] - cv[chosen] > max(1.0, word_margin):
            chosen = "words"
    return chosen, round(word_margin, 2), notes


def prepare(
    views: list[dict],
    labels: list[bool],
    *,
    notes: list[str] | None = None,
    criteria: str = "",
    named: Iterable[str] = (),
    balanced: bool = BALANCED_FIT,
) -> "_Search":
    """Return the candidate search over the labelled views (`balanced`: weighted fits).

    The families and phrases that the reviewers' `notes` (one per view, '' for none) or
    the criteria point to carry a prior; a fold believes a note's only when the note is
    on one of its training views. `named` families are believed by every fold, as the
    criteria's are.
    """
    n = len(views)
    notes = notes or [""] * n
    pointed = family_pointers(notes, criteria) | dict.fromkeys(named, -1)
    structural = build_structural(views, pointed=pointed)
    words = build_words(views, exclude={c.mask for c in structural})
    structural = dedupe(structural + build_noted(views, notes, criteria))
    full = (1 << n) - 1
    pos = sum(1 << i for i, good in enumerate(labels) if good)
    return _Search(structural, words, pos, full & ~pos, full, balanced=balanced)


def learn(
    views: list[dict],
    labels: list[bool],
    groups: list[str],
    *,
    notes: list[str] | None = None,
    criteria: str = "",
    folds: int = 5,
    bars: Bars | None = None,
) -> tuple[DecisionList, Selection]:
    """Return the rule chosen by grouped cross-validation, and how it was chosen.

    `notes` (one per view) and `criteria` steer it with the families and phrases they
    point to (`prepare`).
    """
    n = len(views)
    if n == 0:
        return DecisionList((), True), Selection()
    bars = bars or Bars(folds=folds)
    search = prepare(views, labels, notes=notes, criteria=criteria)
    selection = Selection(cv_total=n, word_candidates=len(search.words))
    ev = gather(search, labels, groups, word_candidates=len(search.words), bars=bars)
    chosen = "constant"
    if ev is not None:
        selection.folds = ev.folds
        # Averaged over dealings; whole counts stay whole so they read "7 of 10". Every
        # shape reports its held-out agreement, the constant too (not the stricter
        # reference in ev.correct that rules are judged against).
        reported = {**ev.correct, "constant": ev.constant_heldout}
        selection.cv_correct = {
            k: int(v) if v == int(v) else round(v, 1) for k, v in reported.items()
        }
        selection.cv_standard_error = {
            level: round(math.sqrt(ev.disagree.get(_pair(level, "constant"), 0.0)), 3)
            for level in LEVELS
        }
        chosen, selection.word_margin, selection.notes = choose(ev, bars)
    return finish(search, chosen, selection)


def _beats_constant(search: "_Search", bad: int) -> bool:
    """Return whether verdicts (a mask of bad) beat the constant on the training labels."""
    full, pos, neg = search.full, search.pos, search.neg
    n_pos, n_neg = pos.bit_count(), neg.bit_count()
    if search.balanced:
        w_pos, w_neg = _weights(n_pos, n_neg)
        return w_neg * (bad & neg).bit_count() + w_pos * (full & ~bad & pos).bit_count() > (
            (n_pos + n_neg) / 2 + 1e-9
        )
    return _correct(bad, full, pos, neg) > max(n_pos, n_neg)


def finish(search: "_Search", chosen: str, selection: Selection) -> tuple[DecisionList, Selection]:
    """Return the decision list of the chosen level fitted on every label."""
    return decide(search, search.fit(chosen, search.full), chosen, selection)


def decide(
    search: "_Search", fitted: "_Fit | None", chosen: str, selection: Selection
) -> tuple[DecisionList, Selection]:
    """Return the decision list of a rule fitted on every label: the majority verdict when
    there is none or it does not beat that."""
    full, pos, neg = search.full, search.pos, search.neg
    n = full.bit_count()
    n_pos = pos.bit_count()
    majority = _majority(n_pos, n - n_pos)
    if fitted is not None and not _beats_constant(search, fitted.cond):
        fitted = None
    if fitted is None:
        chosen = "constant"
    selection.chosen = chosen
    if fitted is None:
        agreeing = n_pos if majority else n - n_pos
        return DecisionList((), majority, n, agreeing), selection
    literals = tuple(Literal(c.feature, holds) for c, holds in fitted.literals)
    bad = fitted.cond
    rule = Rule(
        literals,
        fitted.op,
        matched=bad.bit_count(),
        agreeing=(bad & neg).bit_count(),
        rest=(full & ~bad).bit_count(),
        rest_agreeing=(full & ~bad & pos).bit_count(),
    )
    return DecisionList((rule,), True, rule.rest, rule.rest_agreeing), selection


def make_view(trace: dict) -> dict:
    """Return the runtime view of a trace (the same the emitted code computes)."""
    return runtime.view(trace)
