"""The offline synthesiser: learn a readable rule from labelled traces, emit eval code.

    fitted = fit(examples, criteria="The assistant must not refuse safe requests")
    fitted.code           # self-contained `eval_fn(trace)` source
    fitted.rules          # the rules in words
    fitted.predict(trace) # the same (verdict, reason) the code returns

Refitting after more labels is simply `fit` on the larger set. Same input, same code.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from evals.datasets import LabelledExample
from evals.metrics import grouped_folds
from evals.synthesis import codegen, learner
from evals.synthesis.learner import DecisionList, Selection


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
    def rules(self) -> list[str]:
        """Return the decision list in words, one line per rule plus the default."""
        lines = [f"{n}. {rule.describe()}" for n, rule in enumerate(self.decision.rules, start=1)]
        verdict = "good" if self.decision.default else "bad"
        lines.append(f"{len(lines) + 1}. Otherwise the trace is {verdict}")
        return lines

    @property
    def cv_accuracy(self) -> float | None:
        """Return the cross-validated agreement of the chosen list length (optimistic)."""
        total = self.selection.cv_total
        if not total or not self.selection.cv_correct:
            return None
        return self.selection.cv_correct[self.selection.chosen_length] / total

    @property
    def constant_reason(self) -> str | None:
        """Return why the eval ignores its input when no rule was learned, else None."""
        if self.decision.rules:
            return None
        verdict = "good" if self.decision.default else "bad"
        return (
            f"No rule beat the majority verdict on held-out labels; the eval judges every "
            f"trace {verdict}"
        )

    def predict(self, trace: dict) -> tuple[bool, str]:
        """Return the verdict and reason the emitted eval_fn gives for a trace."""
        return self.decision.predict_view(learner.make_view(trace))


def fit(examples: Sequence[LabelledExample], *, criteria: str = "") -> FittedEval:
    """Learn a decision list from labelled examples and render it as eval code.

    Neutral examples are ignored. Raises SynthesisError when no example is labelled
    positive or negative.
    """
    usable = [e for e in examples if e.label in ("positive", "negative")]
    if not usable:
        raise SynthesisError("No positive or negative labels to learn from")
    # Sort by id so that the order examples arrive in cannot change the result.
    usable.sort(key=lambda e: (str(e.trace.get("id", "")), e.group))
    views = [learner.make_view(e.trace) for e in usable]
    labels = [e.label == "positive" for e in usable]
    groups = [e.group or str(e.trace.get("id", i)) for i, e in enumerate(usable)]
    decision, selection = learner.learn(views, labels, groups, criteria=criteria)
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    trained = sum(
        decision.predict_view(v)[0] == good for v, good in zip(views, labels, strict=True)
    )
    summary = (
        f"Learned from {len(labels)} labelled traces ({n_pos} good, {n_neg} bad); "
        f"agrees with {trained} of {len(labels)} of them."
    )
    if selection.cv_total and len(selection.cv_correct) > selection.chosen_length:
        summary += (
            f"\nCross-validated agreement of this rule shape: "
            f"{selection.cv_correct[selection.chosen_length]} of {selection.cv_total}."
        )
    code = codegen.render(decision, criteria=criteria, summary=summary)
    return FittedEval(
        code=code,
        decision=decision,
        selection=selection,
        n_positive=n_pos,
        n_negative=n_neg,
    )


def cross_validate(
    examples: Sequence[LabelledExample], *, criteria: str = "", folds: int = 5, seed: int = 0
) -> list[tuple[str, bool | None]]:
    """Return (label, held-out verdict) per example, refitting on the other folds.

    This measures the whole procedure, rule selection included, on traces each fit
    never saw; feed the pairs to evals.metrics.agreement. Neutral examples get a
    verdict too (they are simply never trained on); a fold whose training part has no
    positive or negative label yields None verdicts.
    """
    ordered = sorted(examples, key=lambda e: (str(e.trace.get("id", "")), e.group))
    groups = [e.group or str(e.trace.get("id", i)) for i, e in enumerate(ordered)]
    labels = [e.label == "positive" for e in ordered]
    verdicts: list[bool | None] = [None] * len(ordered)
    for test_idx in grouped_folds(groups, k=folds, labels=labels, seed=seed):
        held_out = set(test_idx)
        train = [e for i, e in enumerate(ordered) if i not in held_out]
        try:
            fitted = fit(train, criteria=criteria)
        except SynthesisError:
            continue
        for i in test_idx:
            verdicts[i] = fitted.predict(ordered[i].trace)[0]
    return [(e.label, verdict) for e, verdict in zip(ordered, verdicts, strict=True)]


__all__ = ["FittedEval", "SynthesisError", "cross_validate", "fit"]
