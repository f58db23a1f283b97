"""Carry out queued Generation rows: claim one, keep it alive, and make its eval.

A row with a ``parent`` is a refinement (``evals.generation.refinement``); any other is a
generation (``evals.generation.services``). Both share the row, the queue and the task
(``generate_eval_task``), so this module is the one place that tells them apart.
"""

from __future__ import annotations

import logging

from evals.generation.automatic import after_refinement
from evals.generation.provider_settings import ProviderChoice
from evals.generation.refinement import run_refinement, start_refinement
from evals.generation.services import (
    choice_for,
    complete_generation,
    drop_unmeasured,
    generate_eval,
    start_generation,
)
from evals.judging.compare import compare_generated_kinds
from evals.models import Eval, Generation, RunStatus
from iofold.lib.runs import keep_alive
from traces.models import EvalSet

logger = logging.getLogger(__name__)


def generate_now(
    *, eval_set: EvalSet, user=None, choice: ProviderChoice | None = None
) -> Generation:
    """Generate synchronously (demo data, commands); return the finished Generation."""
    generation = start_generation(eval_set=eval_set, user=user, choice=choice, enqueue=False)
    return run_generation(generation_id=generation.pk, choice=choice) or generation


def refine_now(*, eval: Eval, user=None) -> Generation:
    """Refine synchronously (commands, tests); return the finished Generation."""
    generation = start_refinement(eval=eval, user=user, enqueue=False)
    return run_generation(generation_id=generation.pk) or generation


def claim_generation(*, generation_id: int) -> Generation | None:
    """Mark a queued generation (or one whose worker died) running; None if taken or gone."""
    if Generation.objects.claim(generation_id, error="") is None:
        return None
    return Generation.objects.select_related("eval_set", "workspace").get(pk=generation_id)


def run_generation(
    *, generation_id: int, choice: ProviderChoice | None = None
) -> Generation | None:
    """Carry out a queued generation and return it finished.

    Permanent failures mark it failed with a message for the user. A transient provider
    or sandbox failure puts it back in the queue and raises TransientEvalError, for the
    task to retry later.
    """
    generation = claim_generation(generation_id=generation_id)
    if generation is None:
        logger.info("generation not claimed generation=%s", generation_id)
        return Generation.objects.filter(pk=generation_id).first()
    # A version an earlier attempt stored and did not finish measuring (its worker died).
    drop_unmeasured(generation_id=generation.pk)
    with keep_alive(generation):
        return _run_claimed(generation, choice=choice)


def _run_claimed(generation: Generation, *, choice: ProviderChoice | None) -> Generation | None:
    """Finish a claimed generation; None when its row was deleted meanwhile (its workspace)."""
    if generation.parent_id is not None:
        # Refinement shares the row, the queue and the task; its logic lives apart.
        done = run_refinement(generation=generation)
        if done is not None:
            # One iofold started by itself goes on to shadow and a notification.
            after_refinement(generation=done)
        return done

    def make_eval(**progress) -> Eval:
        return generate_eval(
            eval_set=generation.eval_set,
            choice=choice or choice_for(generation),
            user=generation.created_by,
            generation_id=generation.pk,
            **progress,
        )

    generation = complete_generation(generation, make_eval, what="generation")
    if generation is not None and generation.status == RunStatus.SUCCEEDED:
        compare_generated_kinds(generation)
        generation.refresh_from_db()
    return generation
