"""Learn a short decision list over trace features, chosen by cross-validated agreement."""

import math
from dataclasses import dataclass, field

from evals.metrics import grouped_folds
from evals.synthesis import runtime
from evals.synthesis.features import (
    Candidate,
    Feature,
    build_candidates,
    priors_from_criteria,
)

MAX_RULES = 4
# Agreement (in examples) a rule must add on its training data before it is kept;
# below this, the learner falls back to the majority verdict rather than memorise.
MIN_GAIN = 2
# Penalty per rule, in cross-validated examples, when choosing the list length.
LENGTH_PENALTY = 0.5
FIRST_RULE_PENALTY = 1.0
# Prior at or above which a clean first rule may win a tie with the majority verdict.
TRUSTED_PRIOR = 2.0
# Weight of a feature's simplicity cost against its gain, in examples.
COST_WEIGHT = 0.25


@dataclass(frozen=True)
class Rule:
    """If the literal holds, return the verdict."""

    feature: Feature
    holds: bool
    verdict: bool
    matched: int
    agreeing: int

    def fires(self, v: dict) -> str | bool:
        hit = self.feature.evaluate(v)
        if self.holds:
            return hit
        return not hit

    def reason(self, hit: str | bool) -> str:
        prefix, suffix, uses_match = self.feature.reason_parts(self.holds)
        return prefix + hit + suffix if uses_match else prefix + suffix

    def describe(self) -> str:
        verdict = "good" if self.verdict else "bad"
        return (
            f"If {_lower_first(self.feature.describe(self.holds))}, the trace is {verdict} "
            f"({self.agreeing} of {self.matched} matching training traces agree)"
        )


@dataclass(frozen=True)
class DecisionList:
    rules: tuple[Rule, ...]
    default: bool
    default_matched: int = 0
    default_agreeing: int = 0

    def predict_view(self, v: dict) -> tuple[bool, str]:
        for rule in self.rules:
            hit = rule.fires(v)
            if hit:
                return rule.verdict, rule.reason(hit)
        return self.default, self.default_reason()

    def default_reason(self) -> str:
        verdict = "good" if self.default else "bad"
        if not self.rules:
            return f"No rule applies; most labelled traces are {verdict}"
        checked = "; ".join(_lower_first(r.feature.describe(not r.holds)) for r in self.rules)
        return f"Judged {verdict}: {checked}"


@dataclass
class Selection:
    """How the list length was chosen: cross-validated correct counts per length."""

    cv_correct: list[int] = field(default_factory=list)
    cv_total: int = 0
    chosen_length: int = 0


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _grow(
    candidates: list[Candidate],
    pos: int,
    neg: int,
    rows: int,
    max_rules: int,
) -> list[tuple[Rule, bool]]:
    """Greedily grow a decision list on the rows mask; return [(rule, default_after)]."""
    remaining = rows
    grown: list[tuple[Rule, bool]] = []
    for _ in range(max_rules):
        r_pos = (remaining & pos).bit_count()
        r_neg = (remaining & neg).bit_count()
        base = max(r_pos, r_neg)
        if r_pos == 0 or r_neg == 0:
            break
        best_score = -1e18
        best = None
        # Hot loop (features x rules x folds): plain arithmetic, no helper calls.
        for c in candidates:
            inside = c.mask & remaining
            c_pos = (inside & pos).bit_count()
            c_neg = inside.bit_count() - c_pos
            prior = c.feature.prior
            for holds in (True, False):
                if holds:
                    m_pos, m_neg = c_pos, c_neg
                else:
                    m_pos, m_neg = r_pos - c_pos, r_neg - c_neg
                if m_pos == m_neg:
                    continue
                if m_pos > m_neg:
                    right, errors = m_pos, m_neg
                else:
                    right, errors = m_neg, m_pos
                rest_pos, rest_neg = r_pos - m_pos, r_neg - m_neg
                # A rule whose verdict the rest would get anyway changes nothing.
                if (rest_pos > rest_neg) == (m_pos > m_neg) and rest_pos != rest_neg:
                    continue
                if rest_pos + rest_neg == 0:
                    continue
                # On a tie the rest takes the other verdict, which is worth the same count.
                gain = right + (rest_pos if rest_pos > rest_neg else rest_neg) - base
                # A rule must be a clean signal that earns its place: training gain plus the
                # family's prior must reach MIN_GAIN, and at most a quarter of matches disagree.
                if gain < 0 or gain + prior < MIN_GAIN or errors * 4 > right + errors:
                    continue
                cost = c.feature.cost if holds else c.feature.cost + 0.25
                score = gain - 0.5 * errors + prior - COST_WEIGHT * cost
                if score > best_score:
                    best_score = score
                    best = (c, holds, m_pos > m_neg, right + errors, right)
        if best is None:
            break
        c, holds, verdict, matched, agreeing = best
        rule = Rule(c.feature, holds, verdict, matched, agreeing)
        covered = c.mask if holds else ~c.mask
        remaining &= ~covered
        rest_pos = (remaining & pos).bit_count()
        rest_neg = (remaining & neg).bit_count()
        default = (not verdict) if rest_pos == rest_neg else rest_pos > rest_neg
        grown.append((rule, default))
    return grown


def _majority(pos_count: int, neg_count: int) -> bool:
    # Ties go to "good": flagging a trace as bad needs evidence.
    return pos_count >= neg_count


def _predict_rows(candidates_by_key, rules_defaults, length, default0, index) -> bool:
    for rule, _ in rules_defaults[:length]:
        inside = (candidates_by_key[rule.feature.key] >> index) & 1
        if bool(inside) == rule.holds:
            return rule.verdict
    return rules_defaults[length - 1][1] if length else default0


def learn(
    views: list[dict],
    labels: list[bool],
    groups: list[str],
    *,
    criteria: str = "",
    max_rules: int = MAX_RULES,
    folds: int = 5,
) -> tuple[DecisionList, Selection]:
    """Return the decision list whose length agrees best under grouped cross-validation."""
    n = len(views)
    if n == 0:
        return DecisionList((), True), Selection()
    candidates = build_candidates(views, priors=priors_from_criteria(criteria))
    masks = {c.feature.key: c.mask for c in candidates}
    pos = sum(1 << i for i, good in enumerate(labels) if good)
    neg = ((1 << n) - 1) & ~pos
    all_rows = (1 << n) - 1

    selection = Selection(cv_correct=[0] * (max_rules + 1), cv_total=n)
    fold_list = grouped_folds(groups, k=folds, labels=labels)
    if len(fold_list) >= 2:
        for test_idx in fold_list:
            test_mask = sum(1 << i for i in test_idx)
            train = all_rows & ~test_mask
            default0 = _majority((train & pos).bit_count(), (train & neg).bit_count())
            grown = _grow(candidates, pos, neg, train, max_rules)
            for length in range(max_rules + 1):
                usable = min(length, len(grown))
                for i in test_idx:
                    verdict = _predict_rows(masks, grown, usable, default0, i)
                    selection.cv_correct[length] += verdict == labels[i]
    # Each rule must pay for itself in held-out agreement; the first pays extra, since
    # a fitted rule that merely ties the majority verdict is worse (it can only overfit).
    per_rule = max(LENGTH_PENALTY, 0.004 * n)
    # Chance differences in held-out counts grow like sqrt(n); demand more than that.
    first_rule = max(FIRST_RULE_PENALTY, 0.35 * math.sqrt(n))
    scores = [
        correct - per_rule * length - (first_rule if length else 0.0)
        for length, correct in enumerate(selection.cv_correct)
    ]
    chosen = max(range(max_rules + 1), key=lambda length: (scores[length], -length))
    if len(fold_list) < 2:
        chosen = 0

    default0 = _majority(pos.bit_count(), neg.bit_count())
    if chosen == 0 and len(fold_list) >= 2:
        # Few labels leave held-out counts too coarse to show a rule's worth. A rule
        # from a strongly believed family (the refusal lexicon, or what the criteria
        # name) that is spotless on every training label and no worse than the
        # majority verdict under cross-validation is the better bet.
        (first, _), *_ = _grow(candidates, pos, neg, all_rows, 1) or [(None, None)]
        if (
            first is not None
            and first.feature.prior >= TRUSTED_PRIOR
            and first.agreeing == first.matched
            and selection.cv_correct[1] >= selection.cv_correct[0]
        ):
            chosen = 1
    grown = _grow(candidates, pos, neg, all_rows, chosen)
    rules = tuple(rule for rule, _ in grown)
    default = grown[-1][1] if grown else default0
    selection.chosen_length = len(rules)

    # Count how the default branch fares on the training data, for the code comments.
    matched = agreeing = 0
    for i, v in enumerate(views):
        if not any(rule.fires(v) for rule in rules):
            matched += 1
            agreeing += labels[i] == default
    return DecisionList(rules, default, matched, agreeing), selection


def make_view(trace: dict) -> dict:
    """Return the runtime view of a trace (the same the emitted code computes)."""
    return runtime.view(trace)
