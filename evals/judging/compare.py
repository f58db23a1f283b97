"""Generation by evidence: the code eval, a judge and a hybrid, measured on the same labels.

After a generation has written and stored its code eval, and when the workspace has an
LLM provider, a judge eval (from the set's template, its few-shot examples taken from the
training labels only) and a hybrid (the code's verdicts the training labels back, the
judge for the rest) are stored as versions too, each run on every labelled trace. The
three are compared on the code eval's held-out labels (when it has some) by Cohen's κ,
dollars per 1,000 traces and mean latency; the recommendation is the cheapest whose κ is
within noise (1.96 standard errors) of the best.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Max

import sandbox
from evals.datasets import LabelledExample
from evals.exceptions import EvalError
from evals.execution.runs import record_completed_run
from evals.generation.candidates import hold_out, split_for_llm
from evals.generation.pricing import find_price, price_table
from evals.generation.provider_settings import resolve_provider
from evals.generation.providers import ProviderError
from evals.generation.services import examples_for
from evals.judging.runs import add_run_spend, run_sandbox, uses_judge
from evals.judging.session import JudgeSession, Usage
from evals.judging.spend import capped_session, nothing_left
from evals.judging.templates import (
    CRITERIA,
    DEFAULT_CRITERION,
    HYBRID_MARKER,
    MATERIALS,
    MAX_QUESTION_CHARS,
    hybrid_code,
    judge_code,
    trusted_verdicts,
)
from evals.metrics.agreement import agreement
from evals.metrics.measure import apply_measurement, measure
from evals.models import Eval, EvalKind, EvalRun, Generation, JudgeTemplate, Provider
from evals.sandboxing import sandbox_limits
from traces.models import EvalSet
from traces.vocabulary import unit_noun

logger = logging.getLogger(__name__)
Z = 1.96


def judge_template(eval_set: EvalSet) -> JudgeTemplate:
    """Return the set's judge template, unsaved from the default criterion if it has none."""
    template = (
        JudgeTemplate.objects.for_workspace(eval_set.workspace_id).filter(eval_set=eval_set).first()
    )
    if template is not None:
        return template
    criterion = CRITERIA[DEFAULT_CRITERION]
    return JudgeTemplate(
        workspace_id=eval_set.workspace_id,
        eval_set=eval_set,
        criterion=criterion.key,
        # The default question names what the set judges: this trace, this conversation.
        question=criterion.question.replace("this trace", f"this {unit_noun(eval_set.unit)}"),
        material=criterion.material,
    )


def kappa_noise(pairs: Sequence[tuple[str, bool | None]]) -> float | None:
    """Return 1.96 large-sample standard errors of Cohen's κ on these pairs."""
    scored = [(label == "positive", v) for label, v in pairs if label in ("positive", "negative")]
    scored = [(h, v) for h, v in scored if v is not None]
    n = len(scored)
    if not n:
        return None
    observed = sum(h == v for h, v in scored) / n
    human = sum(h for h, _ in scored) / n
    verdict = sum(v for _, v in scored) / n
    chance = human * verdict + (1 - human) * (1 - verdict)
    if chance >= 1:
        return None
    return Z * math.sqrt(observed * (1 - observed) / n) / (1 - chance)


@dataclass
class Row:
    eval: Eval
    kappa: float | None
    noise: float | None
    # None: the model has no price, so what its calls cost is unknown (not nothing).
    cost_per_1k: Decimal | None
    latency_ms: float
    errors: int = 0  # measured traces the eval gave no verdict on (counted as wrong)

    def as_dict(self, recommended: bool) -> dict:
        cost = self.cost_per_1k
        return {
            "eval_id": self.eval.pk,
            "version": self.eval.version,
            "kind": self.eval.kind,
            # The model its judge calls went to, named when their cost is unknown.
            "model": self.eval.model,
            "kappa": self.kappa,
            "noise": self.noise,
            "cost_per_1k": None if cost is None else str(cost.quantize(Decimal("0.000001"))),
            "latency_ms": round(self.latency_ms, 2),
            "errors": self.errors,
            "recommended": recommended,
        }


def recommend(rows: Sequence[Row]) -> Row | None:
    """Return the cheapest row whose κ is within noise of the best (then the fastest).

    An unknown cost is never the cheapest: it ranks after every known one."""
    measured = [r for r in rows if r.kappa is not None]
    if not measured:
        return None
    best = max(measured, key=lambda r: r.kappa)
    margin = best.noise or 0.0
    close = [r for r in measured if r.kappa >= best.kappa - margin]
    return min(
        close,
        key=lambda r: (r.cost_per_1k is None, r.cost_per_1k or 0, r.latency_ms, -r.kappa),
    )


def errors_as_wrong(pairs: Sequence[tuple[str, bool | None]]) -> list[tuple[str, bool]]:
    """Return (label, verdict) pairs with each error as the verdict the label does not back:
    an eval is compared on every trace, not only on those it could answer."""
    return [(label, label != "positive") if v is None else (label, v) for label, v in pairs]


def _split(
    code_eval: Eval, examples: list[LabelledExample]
) -> tuple[list[LabelledExample], list[LabelledExample]]:
    """Return (training, held-out) as the code eval was measured, else a fresh split."""
    heldout_ids = {str(i) for i in (code_eval.metrics or {}).get("heldout_trace_ids") or []}
    if heldout_ids:
        return hold_out(examples, heldout_ids)
    return split_for_llm(examples)


def _pairs(examples, results) -> dict[str, tuple[str, bool | None]]:
    return {
        e.group: (e.label, r.passed if r.error is None else None)
        for e, r in zip(examples, results, strict=True)
    }


def kind_row(
    eval: Eval, results, usage: Usage, count: int, heldout_pairs, all_pairs, *, priced: bool = True
) -> Row:
    """Return one kind's row: κ on the held-out labels (else all), errors counted as wrong."""
    pairs = errors_as_wrong(heldout_pairs or all_pairs)
    unknown = not priced and (usage.calls or usage.cache_hits)
    return Row(
        eval=eval,
        kappa=agreement(pairs).kappa,
        noise=kappa_noise(pairs),
        cost_per_1k=None
        if unknown
        else (usage.list_cost_usd * 1000 / count if count else Decimal(0)),
        latency_ms=sum(r.duration_ms for r in results) / len(results) if results else 0.0,
        errors=sum(v is None for _, v in heldout_pairs or all_pairs),
    )


def _store(
    eval_set: EvalSet, *, code: str, kind: str, choice, measurement, user, parent=None
) -> Eval:
    with transaction.atomic():
        EvalSet.objects.select_for_update().filter(pk=eval_set.pk).first()
        latest = Eval.objects.for_eval_set(eval_set).aggregate(v=Max("version"))["v"]
        eval = Eval(
            workspace_id=eval_set.workspace_id,
            eval_set=eval_set,
            version=(latest or 0) + 1,
            parent=parent,
            status=Eval.Status.DRAFT,
            kind=kind,
            code=code,
            provider=choice.provider,
            model=choice.model,
            origin="refined" if parent else "generated",
            cost_usd=Decimal(0),
            description=f"{EvalKind(kind).label}, made from the set's judge template"
            + (f", refined from v{parent.version}" if parent else ""),
            created_by=user,
        )
        apply_measurement(eval, measurement)
        eval.save()
    return eval


def _measuring_session(eval_set: EvalSet) -> JudgeSession:
    """Return a judge channel within the monthly budget; EvalError when none is left."""
    session = capped_session(workspace=eval_set.workspace)
    monthly = nothing_left(session.budget)
    if monthly:
        raise EvalError(f"Not measured: {monthly}.")
    return session


def compare_kinds(
    *, generation: Generation, on_stage: Callable[[str], None] | None = None
) -> list[dict]:
    """Make, run and measure a judge and a hybrid beside the generation's code eval.

    Return the comparison rows (also stored on the generation); empty when the workspace
    has no LLM provider.
    """
    stage = on_stage or (lambda text: None)
    code_eval = generation.result
    eval_set = generation.eval_set
    if code_eval is None or resolve_provider(workspace=eval_set.workspace).provider == (
        Provider.OFFLINE
    ):
        return []
    choice = resolve_provider(workspace=eval_set.workspace)
    examples, traces = examples_for(eval_set)
    examples = [e for e in examples if e.label in ("positive", "negative")]
    training, heldout = _split(code_eval, examples)
    heldout_groups = {e.group for e in heldout}
    limits = sandbox_limits()
    trace_rows = [traces[e.group] for e in examples]
    template = judge_template(eval_set)

    code_results = run_sandbox(
        _measuring_session(eval_set) if uses_judge(code_eval.code) else None,
        sandbox.run,
        code_eval.code,
        [e.trace for e in examples],
        limits,
    ).results
    code_pairs = _pairs(examples, code_results)
    judge = judge_code(
        criteria=eval_set.criteria,
        question=template.question,
        material=template.material,
        examples=training,
        shots=template.shots,
    )
    trusted = trusted_verdicts([code_pairs[e.group] for e in training])
    candidates = [
        (EvalKind.JUDGE, judge),
        (EvalKind.HYBRID, hybrid_code(code=code_eval.code, judge=judge, trusted=trusted)),
    ]
    priced = find_price(choice.model, price_table()) is not None
    rows = [
        kind_row(
            code_eval,
            code_results,
            Usage(),
            len(examples),
            [code_pairs[g] for g in heldout_groups],
            list(code_pairs.values()),
            priced=priced,
        )
    ]
    for kind, code in candidates:
        stage(f"Measuring a {EvalKind(kind).label.lower()} on {len(examples)} labelled traces")
        session = _measuring_session(eval_set)
        judged = run_sandbox(session, sandbox.run, code, [e.trace for e in examples], limits)
        pairs = _pairs(examples, judged.results)
        measurement = measure(
            training=[pairs[e.group] for e in training],
            heldout=[pairs[e.group] for e in heldout] if heldout else None,
            method=f"{kind}: judge template '{template.criterion}'",
            labels=[e.label for e in examples],
            extra={"heldout_trace_ids": sorted(int(g) for g in heldout_groups)} if heldout else {},
        )
        eval = _store(
            eval_set,
            code=code,
            kind=kind,
            choice=choice,
            measurement=measurement,
            user=generation.created_by,
        )
        run = record_completed_run(
            eval=eval,
            traces=trace_rows,
            results=judged.results,
            trigger=EvalRun.Trigger.GENERATION,
            usage=judged.usage,
        )
        add_run_spend(run=run, session=session, since=Usage())
        rows.append(
            kind_row(
                eval,
                judged.results,
                session.total,
                len(examples),
                [pairs[g] for g in heldout_groups],
                list(pairs.values()),
                priced=priced,
            )
        )
    best = recommend(rows)
    comparison = [row.as_dict(row is best) for row in rows]
    Generation.objects.filter(pk=generation.pk).update(comparison=comparison)
    return comparison


def compare_generated_kinds(generation: Generation) -> None:
    """Compare the kinds after a generation; a failure here leaves the code eval standing."""
    try:
        compare_kinds(generation=generation)
    except (EvalError, ProviderError, sandbox.SandboxError) as exc:
        message = getattr(exc, "message", str(exc))
        logger.warning("kind comparison failed generation=%s: %s", generation.pk, message)
        Generation.objects.filter(pk=generation.pk).update(
            comparison=[{"error": f"The judge and hybrid could not be measured: {message}"}]
        )


def save_judge_template(
    *, eval_set: EvalSet, criterion: str, question: str = "", material: str = "", shots: int = 3
) -> JudgeTemplate:
    """Save how the set's judge asks; an empty question or material takes the criterion's."""
    if criterion not in CRITERIA:
        raise EvalError(f"Unknown criterion “{criterion}”.")
    if material and material not in MATERIALS:
        raise EvalError(f"Unknown material “{material}”: choose {', '.join(MATERIALS)}.")
    if not 0 <= shots <= 10:
        raise EvalError("Show between 0 and 10 examples.")
    if len(question.strip()) > MAX_QUESTION_CHARS:
        raise EvalError(f"A question is at most {MAX_QUESTION_CHARS:,} characters.")
    default = CRITERIA[criterion]
    template, _ = JudgeTemplate.objects.update_or_create(
        workspace_id=eval_set.workspace_id,
        eval_set=eval_set,
        defaults={
            "criterion": criterion,
            "question": question.strip() or default.question,
            "material": material or default.material,
            "shots": shots,
        },
    )
    return template


def refine_judge(*, generation: Generation, on_stage: Callable[[str], None] | None = None) -> Eval:
    """Refine a judge or hybrid version: its prompt (the set's template now) and its
    few-shot set (every training label now, those it got wrong included) are what change.

    Held-out labels stay the parent's, so the new version is measured on the same ones.
    A hybrid keeps its code and re-derives which code verdicts the labels back.
    """
    stage = on_stage or (lambda text: None)
    parent = generation.parent
    eval_set = generation.eval_set
    choice = resolve_provider(workspace=eval_set.workspace)
    if choice.provider == Provider.OFFLINE:
        raise EvalError("Refining an LLM judge needs an LLM provider; the workspace is offline.")
    examples, traces = examples_for(eval_set)
    examples = [e for e in examples if e.label in ("positive", "negative")]
    training, heldout = _split(parent, examples)
    template = judge_template(eval_set)
    limits = sandbox_limits()
    code = judge_code(
        criteria=eval_set.criteria,
        question=template.question,
        material=template.material,
        examples=training,
        shots=template.shots,
    )
    if parent.kind == EvalKind.HYBRID and HYBRID_MARKER in parent.code:
        code_part = parent.code.split(HYBRID_MARKER, 1)[0].replace(
            "def code_eval_fn(", "def eval_fn(", 1
        )
        code_results = run_sandbox(
            _measuring_session(eval_set) if uses_judge(code_part) else None,
            sandbox.run,
            code_part,
            [e.trace for e in training],
            limits,
        ).results
        pairs = [(e.label, r.passed) for e, r in zip(training, code_results, strict=True)]
        code = hybrid_code(code=code_part, judge=code, trusted=trusted_verdicts(pairs))
    stage(f"Measuring the refined judge on {len(examples)} labelled traces")
    session = _measuring_session(eval_set)
    judged = run_sandbox(session, sandbox.run, code, [e.trace for e in examples], limits)
    verdicts = _pairs(examples, judged.results)
    heldout_groups = {e.group for e in heldout}
    measurement = measure(
        training=[verdicts[e.group] for e in training],
        heldout=[verdicts[e.group] for e in heldout] if heldout else None,
        method=f"{parent.kind}: judge template '{template.criterion}', refined",
        labels=[e.label for e in examples],
        extra={"heldout_trace_ids": sorted(int(g) for g in heldout_groups)} if heldout else {},
    )
    eval = _store(
        eval_set,
        code=code,
        kind=parent.kind,
        choice=choice,
        measurement=measurement,
        user=generation.created_by,
        parent=parent,
    )
    run = record_completed_run(
        eval=eval,
        traces=[traces[e.group] for e in examples],
        results=judged.results,
        trigger=EvalRun.Trigger.GENERATION,
        usage=judged.usage,
    )
    add_run_spend(run=run, session=session, since=Usage())
    return eval
