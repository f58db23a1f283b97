"""Refine an eval version from the labelled traces it gets wrong.

start_refinement (request) queues a Generation with ``parent`` set; the generation task
hands such rows to run_refinement, which measures the parent on the current labels,
gathers its contradictions, and asks the provider to revise the code with the refine
prompt through the generation pipeline's own validate-and-retry loop. The offline
synthesiser needs no prompt: it refits on the larger set of labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from django.db import transaction

from evals.datasets import LabelledExample
from evals.exceptions import EvalError
from evals.execution.runs import run_unjudged_labels
from evals.generation import candidates, prompts
from evals.metrics.agreement import cell_state
from evals.metrics.measure import score_eval_version
from evals.models import Eval, EvalExecution, EvalKind, Generation, Provider
from evals.sandboxing import sandbox_limits
from traces.vocabulary import unit_noun

logger = logging.getLogger(__name__)

PromptBuilder = Callable[[Sequence[LabelledExample], int], prompts.Prompt]


def start_refinement(*, eval: Eval, user=None, enqueue: bool = True) -> Generation:
    """Queue a refinement of ``eval``; an unfinished one of the same version is returned."""
    from evals.generation.services import (
        lock_eval_set,
        queue_generation,
        reap_stale_generations,
        recover_generations,
    )

    if eval.eval_set.is_archived:
        raise EvalError("This eval set is archived; restore it to refine its evals.")
    recover_generations(eval_set=eval.eval_set)
    reap_stale_generations(eval_set=eval.eval_set)
    with transaction.atomic():
        lock_eval_set(eval.eval_set)
        running = Generation.objects.filter(parent=eval).unfinished().first()
        if running is not None:
            return running
        generation = queue_generation(
            eval_set=eval.eval_set, parent=eval, user=user, enqueue=enqueue
        )
    logger.info("refinement queued generation=%s parent=%s", generation.pk, eval.pk)
    return generation


def refine_prompt_builder(
    *, parent: Eval, criteria: str, wrong: Sequence[prompts.Contradiction]
) -> PromptBuilder:
    """Return the prompt builder the generation loop calls instead of the generation prompt.

    The loop passes its training examples; those the parent got right become the
    agreement cases to keep, the contradictions among them the cases to fix.
    Contradictions on held-out traces stay out of the prompt: showing them to the
    model would make the held-out agreement measure nothing.
    """
    wrong_ids = {str(c.trace.get("id")) for c in wrong}

    def build(train: Sequence[LabelledExample], token_budget: int) -> prompts.Prompt:
        train_ids = {str(e.trace.get("id")) for e in train}
        keep = [
            prompts.PromptExample(e.trace, e.label, e.note)
            for e in train
            if str(e.trace.get("id")) not in wrong_ids
        ]
        return prompts.build_refine_prompt(
            criteria=criteria,
            current_code=parent.code,
            contradictions=[c for c in wrong if str(c.trace.get("id")) in train_ids],
            examples=keep,
            token_budget=token_budget,
        )

    return build


def gather_contradictions(
    *, parent: Eval, examples: Sequence[LabelledExample]
) -> list[prompts.Contradiction]:
    """Return the labelled examples the parent version contradicts or errors on."""
    verdicts = {
        str(trace_id): (passed, reason, error)
        for trace_id, passed, reason, error in EvalExecution.objects.filter(
            eval=parent, trace_id__in=[int(e.group) for e in examples]
        ).values_list("trace_id", "passed", "reason", "error")
    }
    found = []
    for example in examples:
        if example.label not in ("positive", "negative") or example.group not in verdicts:
            continue
        passed, reason, error = verdicts[example.group]
        if cell_state(example.label, passed) in ("contradict", "error"):
            found.append(
                prompts.Contradiction(
                    trace=example.trace,
                    label=example.label,
                    note=example.note,
                    eval_passed=passed,
                    eval_reason=error if passed is None else reason,
                )
            )
    return found


def refine_eval(*, generation: Generation, on_stage=None, on_attempt=None) -> Eval:
    """Write, test, measure and store the refined version of ``generation.parent``."""
    from evals.generation.provider_settings import resolve_provider
    from evals.generation.services import (
        examples_for,
        measure_and_store,
        write_candidate,
    )

    stage = on_stage or (lambda text: None)
    parent = generation.parent
    eval_set = generation.eval_set
    if parent.kind != EvalKind.CODE:
        from evals.judging.compare import refine_judge

        return refine_judge(generation=generation, on_stage=stage)
    stage(f"Testing v{parent.version} on the current labels")
    run_unjudged_labels(eval=parent)
    score_eval_version(eval=parent)
    examples, traces = examples_for(eval_set)
    candidates.require_both_labels(examples)
    wrong = gather_contradictions(parent=parent, examples=examples)
    limits = sandbox_limits()
    choice = resolve_provider(workspace=eval_set.workspace)
    if choice.provider != Provider.OFFLINE and not wrong:
        # Offline, the synthesiser refits on all the labels; an LLM needs something to fix.
        raise EvalError(f"v{parent.version} agrees with every label; there is nothing to refine.")
    candidate = write_candidate(
        eval_set=eval_set,
        examples=examples,
        choice=choice,
        limits=limits,
        on_stage=stage,
        on_attempt=on_attempt,
        build_prompt=refine_prompt_builder(parent=parent, criteria=eval_set.criteria, wrong=wrong),
        # Measured on the parent's held-out labels, as a refined judge is.
        keep_out=[str(i) for i in (parent.metrics or {}).get("heldout_trace_ids") or []],
    )
    candidate.description = (
        f"Refined from v{parent.version} on {len(wrong)} disagreement"
        f"{'' if len(wrong) == 1 else 's'}.\n{candidate.description}"
    ).strip()
    items = unit_noun(eval_set.unit, len(examples))
    stage(f"Running the refined eval on {len(examples)} labelled {items} in the sandbox")
    return measure_and_store(
        eval_set=eval_set,
        candidate=candidate,
        examples=examples,
        traces=traces,
        limits=limits,
        generation_id=generation.pk,
        extra={"refined_contradictions": len(wrong)},
        user=generation.created_by,
        parent=parent,
        origin="refined",
    )


def run_refinement(*, generation: Generation) -> Generation:
    """Carry out a claimed refinement Generation; the generation task calls this."""
    from evals.generation.services import complete_generation

    return complete_generation(
        generation,
        lambda **progress: refine_eval(generation=generation, **progress),
        what="refinement",
    )
