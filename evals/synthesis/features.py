"""Candidate trace features for the offline synthesiser, as bit masks over examples."""

import math
from collections import Counter
from dataclasses import dataclass

from evals.synthesis import runtime

_NUMBER_LABELS = {
    "steps": ("Trace has {} steps", "Trace has fewer than {} steps"),
    "tool_calls": ("Trace made {} tool calls", "Trace made fewer than {} tool calls"),
    "step_errors": (
        "Trace has {} failed steps",
        "Trace has fewer than {} failed steps",
    ),
    "output_chars": (
        "Output is {} characters long",
        "Output is shorter than {} characters",
    ),
    "output_words": ("Output is {} words long", "Output is shorter than {} words"),
    "latency_ms": ("Latency is {} ms", "Latency is under {} ms or unknown"),
    "cost": ("Cost is {}", "Cost is under {} or unknown"),
}
_PATTERN_LABELS = {
    "url": "a URL",
    "email": "an email address",
    "code_block": "a code block",
    "numbered_list": "a numbered list",
    "bullet_list": "a bulleted list",
    "heading": "a Markdown heading",
    "digit": "a digit",
    "question": "a closing question mark",
    "empty": "nothing (empty output)",
}
_FIELD_LABELS = {
    "out": "Output",
    "opening": "Output's first 20 words",
    "start": "Output's first 5 words",
    "in": "Input",
}
_VERB = {"out": "contains", "opening": "contain", "start": "contain", "in": "contains"}
_VERB_NOT = {
    "out": "does not contain",
    "opening": "do not contain",
    "start": "do not contain",
}
_VERB_NOT["in"] = "does not contain"


@dataclass(frozen=True)
class Feature:
    """A boolean test on a trace, backed by one runtime helper call."""

    family: str
    helper: str
    args: tuple
    cost: float
    prior: float = 0.0

    @property
    def key(self) -> str:
        return self.helper + repr(self.args)

    def evaluate(self, v: dict) -> str:
        """Return the helper's match text ('' when the feature does not hold)."""
        return getattr(runtime, self.helper)(v, *self.args)

    def call_source(self) -> str:
        """Return the Python expression that evaluates the feature in emitted code."""
        return f"{self.helper}({', '.join(['v', *(repr(a) for a in self.args)])})"

    def reason_parts(self, holds: bool) -> tuple[str, str, bool]:
        """Return (prefix, suffix, uses_match) composing the human reason."""
        h, a = self.helper, self.args
        if h == "refusal":
            field = _FIELD_LABELS[a[0]]
            if holds:
                return f"{field} {_VERB[a[0]]} refusal phrase '", "'", True
            return f"{field} {_VERB_NOT[a[0]]} any refusal phrase", "", False
        if h == "has_phrase":
            field = _FIELD_LABELS[a[0]]
            if holds:
                return f"{field} {_VERB[a[0]]} '", "'", True
            return f"{field} {_VERB_NOT[a[0]]} '{a[1]}'", "", False
        if h == "starts_with":
            if holds:
                return "Output begins with '", "'", True
            return f"Output does not begin with '{a[0]}'", "", False
        if h == "pattern":
            label = _PATTERN_LABELS[a[0]]
            return (
                ("Output contains " if holds else "Output does not contain ") + label,
                "",
                False,
            )
        if h == "json_valid":
            return (
                ("Output is valid JSON" if holds else "Output is not a JSON object or array"),
                "",
                False,
            )
        if h == "json_key":
            if holds:
                return f"Output JSON has key '{a[0]}'", "", False
            return f"Output JSON lacks key '{a[0]}'", "", False
        if h == "step_error":
            return (
                ("A step failed: ", "", True) if holds else ("No step reported an error", "", False)
            )
        if h == "tool_called":
            return (
                f"Tool '{a[0]}' was called" if holds else f"Tool '{a[0]}' was not called",
                "",
                False,
            )
        if h == "at_least":
            yes, no = _NUMBER_LABELS[a[0]]
            if holds:
                prefix, suffix = yes.split("{}")
                return prefix, suffix + f" (at least {_fmt(a[1])})", True
            return no.format(_fmt(a[1])), "", False
        raise ValueError(f"unknown feature helper {h!r}")

    def describe(self, holds: bool = True) -> str:
        """Return a readable statement of the feature, e.g. "Output contains 'sorry'"."""
        prefix, suffix, uses_match = self.reason_parts(holds)
        if not uses_match:
            return prefix + suffix
        if self.helper == "refusal":
            return prefix.rstrip(" '").replace("refusal phrase", "a refusal phrase")
        if self.helper == "has_phrase":
            return prefix + self.args[1] + suffix
        if self.helper == "starts_with":
            return prefix + self.args[0] + suffix
        if self.helper == "step_error":
            return "A step reported an error"
        yes, _ = _NUMBER_LABELS[self.args[0]]
        return yes.format(f"at least {_fmt(self.args[1])}")


def _fmt(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def nice_threshold(low: float, high: float) -> float:
    """Return the roundest number x with low < x <= high."""
    if high <= low:
        return high
    span = max(abs(high), abs(low), 1e-9)
    exponent = math.floor(math.log10(span))
    for power in range(exponent, exponent - 12, -1):
        step = 10.0**power
        candidate = (math.floor(low / step) + 1) * step
        candidate = round(candidate, 9)
        if low < candidate <= high:
            return candidate
    return high


@dataclass
class Candidate:
    feature: Feature
    mask: int


def _ngrams(words: list[str], max_n: int) -> set[str]:
    grams = set(words)
    if max_n >= 2:
        grams.update(map(" ".join, zip(words, words[1:], strict=False)))
    if max_n >= 3:
        grams.update(map(" ".join, zip(words, words[1:], words[2:], strict=False)))
    return grams


def build_candidates(
    views: list[dict], *, priors: dict[str, float] | None = None
) -> list[Candidate]:
    """Return deduplicated, non-constant candidate features with their masks over views.

    Each feature carries a simplicity cost and a prior (both in examples' worth) that
    the learner trades against agreement. Lexicon and structural features are cheap
    and believed because they generalise from few labels; n-grams and tuned numeric
    thresholds are dearer because a handful of labels always contains some accidental
    phrase or length that separates them.
    """
    priors = priors or {}
    n = len(views)
    full = (1 << n) - 1
    min_df = max(2, math.ceil(0.02 * n))
    found: list[Candidate] = []

    def add(feature: Feature, mask: int) -> None:
        if mask not in (0, full):
            found.append(Candidate(feature, mask))

    def by_eval(feature: Feature) -> int:
        mask = 0
        for i, v in enumerate(views):
            if feature.evaluate(v):
                mask |= 1 << i
        return mask

    for field in ("start", "opening", "out"):
        f = Feature(
            "refusal",
            "refusal",
            (field,),
            cost=1.0,
            prior=2.0 + priors.get("refusal", 0.0),
        )
        add(f, by_eval(f))
    for phrase in runtime.REFUSAL_PHRASES:
        for field in ("start", "out"):
            f = Feature(
                "refusal_phrase",
                "has_phrase",
                (field, phrase),
                cost=1.25,
                prior=1.0 + priors.get("refusal", 0.0),
            )
            add(f, by_eval(f))

    # Word n-grams, indexed per document rather than by calling the helper, for speed;
    # the padded-space containment in has_phrase/starts_with matches exactly these.
    # Document frequencies are counted first (in C, via Counter) so that masks are
    # built only for the n-grams frequent enough to become candidates.
    per_field: dict[str, list[set[str]]] = {"out": [], "opening": [], "begin": [], "in": []}
    for v in views:
        per_field["out"].append(_ngrams(v["out"].split(), 3))
        per_field["opening"].append(_ngrams(v["opening"].split(), 2))
        start = v["start"].split()
        per_field["begin"].append({" ".join(start[:k]) for k in range(1, min(3, len(start)) + 1)})
        per_field["in"].append(_ngrams(v["in"].split(), 2))
    for field_name, docs in per_field.items():
        counts: Counter[str] = Counter()
        for doc in docs:
            counts.update(doc)
        frequent = {g for g, df in counts.items() if min_df <= df <= n - min_df}
        masks: dict[str, int] = dict.fromkeys(frequent, 0)
        for i, doc in enumerate(docs):
            bit = 1 << i
            for g in doc & frequent:
                masks[g] |= bit
        for gram in sorted(masks):
            size = gram.count(" ") + 1
            if field_name == "begin":
                f = Feature("start", "starts_with", (gram,), cost=1.5 + 0.25 * (size - 1))
            elif field_name == "in":
                f = Feature(
                    "input_phrase", "has_phrase", ("in", gram), cost=2.25 + 0.25 * (size - 1)
                )
            elif field_name == "opening":
                f = Feature(
                    "phrase", "has_phrase", ("opening", gram), cost=1.75 + 0.25 * (size - 1)
                )
            else:
                f = Feature("phrase", "has_phrase", ("out", gram), cost=1.5 + 0.25 * (size - 1))
            add(f, masks[gram])

    for name in runtime._PATTERNS:
        f = Feature("pattern", "pattern", (name,), cost=1.25)
        add(f, by_eval(f))

    json_prior = priors.get("json", 0.0)
    f = Feature("json", "json_valid", (), cost=1.0, prior=0.5 + json_prior)
    add(f, by_eval(f))
    keys = sorted({k for v in views for k in v["keys"]})
    for key in keys[:200]:
        f = Feature("json", "json_key", (key,), cost=1.0, prior=0.25 + json_prior)
        add(f, by_eval(f))

    f = Feature("error", "step_error", (), cost=1.0, prior=0.5 + priors.get("error", 0.0))
    add(f, by_eval(f))
    for name in sorted({t for v in views for t in v["tools"]})[:100]:
        f = Feature(
            "tool",
            "tool_called",
            (name,),
            cost=1.0,
            prior=0.25 + priors.get("tool", 0.0),
        )
        add(f, by_eval(f))

    for measure in _NUMBER_LABELS:
        values = sorted({v["numbers"][measure] for v in views if v["numbers"][measure] is not None})
        if len(values) < 2:
            continue
        # Cut points at up to nine quantiles, rounded so the rule reads naturally.
        picks = sorted(
            {values[min(len(values) - 1, round(q * len(values) / 10))] for q in range(1, 10)}
        )
        for upper in picks:
            position = values.index(upper)
            if position == 0:
                continue
            threshold = nice_threshold(values[position - 1], upper)
            prior = priors.get(measure, 0.0)
            f = Feature("number", "at_least", (measure, threshold), cost=2.0, prior=prior)
            add(f, by_eval(f))

    # Keep one feature per distinct mask: the cheapest, then the most believable.
    best: dict[int, Candidate] = {}
    for c in found:
        current = best.get(c.mask)
        rank = (c.feature.cost - c.feature.prior, c.feature.key)
        if current is None or rank < (
            current.feature.cost - current.feature.prior,
            current.feature.key,
        ):
            best[c.mask] = c
    return sorted(best.values(), key=lambda c: (c.feature.cost - c.feature.prior, c.feature.key))


_CRITERIA_HINTS = {
    "refusal": ("refus", "declin", "comply", "complian", "sorry", "apolog"),
    "json": ("json", "schema", "field", "key"),
    "error": ("error", "fail", "exception", "crash"),
    "tool": ("tool", "function call", "api call"),
    "output_chars": ("long", "short", "length", "concise", "verbose", "brief"),
    "output_words": ("long", "short", "length", "concise", "verbose", "brief", "words"),
    "latency_ms": ("latency", "slow", "fast", "time"),
    "cost": ("cost", "expensive", "cheap", "price"),
}


def priors_from_criteria(criteria: str) -> dict[str, float]:
    """Return prior bonuses for feature families the written criteria mention."""
    text = criteria.lower()
    return {
        family: 1.0 for family, words in _CRITERIA_HINTS.items() if any(w in text for w in words)
    }
