"""The offline synthesiser: learn a readable rule from labelled traces, emit eval code.

    fitted = fit(examples, criteria="The assistant must not refuse safe requests")
    fitted.code           # self-contained `eval_fn(trace)` source (`eval_fn(conversation)`
                          # when the examples are conversations)
    fitted.rules          # the rules in words
    fitted.predict(trace) # the same (verdict, reason) the code returns

Refitting after more labels is simply `fit` on the larger set. Same input, same code.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace

from evals.datasets import LabelledExample
from evals.metrics.agreement import grouped_folds
from evals.synthesis import codegen, learner, runtime
from evals.synthesis.learner import DecisionList, Selection
from traces.vocabulary import unit_noun

# Trace fields that name a conversation, session or task: traces sharing one are
# near-duplicates for cross-validation, so they are kept on one side of every split.
GROUP_FIELDS = (
    "session_id",
    "metadata.session_id",
    "metadata.conversation_id",
    "metadata.thread_id",
    "metadata.task_id",
    "metadata.source_id",
)
NO_EVAL_HELP = (
    "What would help: more labels of the minority verdict, a note on what made the bad "
    "{many} bad, or an LLM judge (an OpenAI or Anthropic provider) for criteria no simple "
    "rule captures."
)


class SynthesisError(ValueError):
    """The examples cannot be synthesised into an eval."""

    permanent = True


@dataclass(frozen=True)
class FittedEval:
    code: str
    decision: DecisionList
    selection: Selection
    n_positive: int
    n_negative: int

    @property
    def reliable(self) -> bool:
        """Return whether a rule was learned (False: every item gets the majority verdict)."""
        return bool(self.decision.rules)

    @property
    def rules(self) -> list[str]:
        """Return the rule in words, one line per statement."""
        if not self.decision.rules:
            verdict = "good" if self.decision.default else "bad"
            return [f"1. No reliable rule yet: every {self.noun} is judged {verdict}"]
        (rule,) = self.decision.rules
        return [f"1. {rule.describe(self.decision.unit)}", f"2. Otherwise the {self.noun} is good"]

    @property
    def noun(self) -> str:
        return unit_noun(self.decision.unit)

    @property
    def cv_accuracy(self) -> float | None:
        """Return the held-out agreement of the chosen rule shape, the constant's included."""
        return self.selection.estimate

    @property
    def constant_reason(self) -> str | None:
        """Return why there is no reliable eval yet when no rule was learned, else None."""
        if self.decision.rules:
            return None
        verdict = "good" if self.decision.default else "bad"
        return (
            f"No reliable eval yet: no rule beat the majority verdict on held-out labels, "
            f"so this version would judge every {self.noun} {verdict}. "
            + NO_EVAL_HELP.format(many=unit_noun(self.decision.unit, None))
        )

    def predict(self, trace: dict) -> tuple[bool, str]:
        """Return the verdict and reason the emitted eval_fn gives for a trace."""
        return self.decision.predict_view(learner.make_view(trace))


def _dig(trace: dict, dotted: str) -> object:
    value: object = trace
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def split_groups(examples: Sequence[LabelledExample]) -> list[str]:
    """Return each example's cross-validation group.

    Explicit groups win when they group anything. Otherwise the first of GROUP_FIELDS
    that most traces carry and that some traces share becomes the group key; failing
    that each trace is its own group.
    """
    explicit = [e.group or str(e.trace.get("id", i)) for i, e in enumerate(examples)]
    if len(set(explicit)) < len(explicit):
        return explicit
    for dotted in GROUP_FIELDS:
        values = [_dig(e.trace, dotted) for e in examples]
        present = [v for v in values if isinstance(v, (str, int)) and not isinstance(v, bool)]
        if len(present) * 2 < len(examples) or len(set(map(str, present))) == len(present):
            continue
        return [
            f"{dotted}={value}" if isinstance(value, (str, int)) else own
            for value, own in zip(values, explicit, strict=True)
        ]
    return explicit


def _order(examples: Sequence[LabelledExample]) -> list[LabelledExample]:
    # Sort by id so that the order examples arrive in cannot change the result.
    return sorted(examples, key=lambda e: (str(e.trace.get("id", "")), e.group))


def _view(example: LabelledExample, cache: dict[int, dict]) -> dict:
    """Return the example's runtime view, computed once per trace object."""
    key = id(example.trace)
    if key not in cache:
        cache[key] = learner.make_view(example.trace)
    return cache[key]


def fit(examples: Sequence[LabelledExample], *, criteria: str = "") -> FittedEval:
    """Learn a rule from labelled examples and render it as eval code.

    Neutral examples are ignored. The criteria and the reviewers' notes steer which
    feature families are believed first. Raises SynthesisError when no example is
    labelled positive or negative.
    """
    return _fit(examples, criteria=criteria, cache={})


def _fit(
    examples: Sequence[LabelledExample], *, criteria: str, cache: dict[int, dict]
) -> FittedEval:
    usable = _order([e for e in examples if e.label in ("positive", "negative")])
    if not usable:
        raise SynthesisError("No positive or negative labels to learn from")
    views = [_view(e, cache) for e in usable]
    labels = [e.label == "positive" for e in usable]
    groups = split_groups(usable)
    decision, selection = learner.learn(
        views, labels, groups, notes=[e.note for e in usable], criteria=criteria
    )
    return fitted_eval(
        decision, selection, [e.trace for e in usable], views, labels, criteria=criteria
    )


def fitted_eval(
    decision: DecisionList,
    selection: Selection,
    traces: Sequence[dict],
    views: list[dict],
    labels: list[bool],
    *,
    criteria: str = "",
) -> FittedEval:
    """Return the eval of a learned decision: its code, with the training agreement.

    `views` and `labels` (True: good) are the training traces', in their order.
    """
    # A conversation set's examples are conversation dicts (traces.conversations).
    if all(runtime._is_conversation(t) for t in traces):
        decision = replace(decision, unit="conversation")
    plural = unit_noun(decision.unit, None)
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    trained = sum(
        decision.predict_view(v)[0] == good for v, good in zip(views, labels, strict=True)
    )
    summary = (
        f"Learned from {len(labels)} labelled {plural} ({n_pos} good, {n_neg} bad); "
        f"agrees with {trained} of {len(labels)} of them."
    )
    if selection.cv_correct:
        tried = ", ".join(
            f"{level} {count:g}/{selection.cv_total}"
            for level, count in selection.cv_correct.items()
        )
        summary += (
            f"\nRule shape chosen by {selection.folds}-fold grouped cross-validation "
            f"within these {len(labels)} {plural}, held-out agreement by shape: {tried}; "
            f"chosen: {selection.chosen}."
        )
    code = codegen.render(decision, criteria=criteria, summary=summary)
    return FittedEval(
        code=code,
        decision=decision,
        selection=selection,
        n_positive=n_pos,
        n_negative=n_neg,
    )


def _deal(
    examples: Sequence[LabelledExample], *, folds: int, seed: int
) -> tuple[list[LabelledExample], list[list[int]]]:
    ordered = _order(examples)
    labels = [e.label == "positive" for e in ordered]
    return ordered, grouped_folds(split_groups(ordered), k=folds, labels=labels, seed=seed)


def fold_count(examples: Sequence[LabelledExample], *, folds: int = 5, seed: int = 0) -> int:
    """Return how many folds cross_validate deals: fewer than asked when the examples
    fall in fewer groups (sessions, conversations) than that."""
    return len(_deal(examples, folds=folds, seed=seed)[1])


def cross_validate(
    examples: Sequence[LabelledExample], *, criteria: str = "", folds: int = 5, seed: int = 0
) -> list[tuple[str, bool | None]]:
    """Return (label, held-out verdict) per example, refitting on the other folds.

    This measures the whole procedure, rule selection included, on traces each fit
    never saw; feed the pairs to evals.metrics.agreement. Folds keep groups together
    (see split_groups). Neutral examples get a verdict too (they are simply never
    trained on); a fold whose training part has no positive or negative label yields
    None verdicts.
    """
    ordered, dealt = _deal(examples, folds=folds, seed=seed)
    verdicts: list[bool | None] = [None] * len(ordered)
    cache: dict[int, dict] = {}  # each trace's view is computed once for all folds
    for test_idx in dealt:
        held_out = set(test_idx)
        train = [e for i, e in enumerate(ordered) if i not in held_out]
        try:
            fitted = _fit(train, criteria=criteria, cache=cache)
        except SynthesisError:
            continue
        for i in test_idx:
            verdicts[i] = fitted.decision.predict_view(_view(ordered[i], cache))[0]
    return [(e.label, verdict) for e, verdict in zip(ordered, verdicts, strict=True)]


__all__ = [
    "FittedEval",
    "SynthesisError",
    "cross_validate",
    "fit",
    "fitted_eval",
    "split_groups",
]
