"""Generate an eval version for an eval set: a Generation row carried out on the generate queue.

start_generation (request) -> generate_eval_task -> worker.run_generation: read the labels,
write a candidate (offline synthesiser or an LLM with validation and retries), run it
on every labelled trace in the sandbox (in chunks other workers share, on many labels:
``measure_and_store``), measure it against the labels, store the version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

import sandbox
from evals.datasets import LabelledExample
from evals.exceptions import EvalError, TransientEvalError, sandbox_failure
from evals.execution.runs import record_completed_run
from evals.generation import candidates
from evals.generation.pricing import cost_usd, price_table
from evals.generation.provider_settings import ProviderChoice, resolve_provider
from evals.generation.providers import ProviderError, get_provider
from evals.judging.runs import add_run_spend, infer_kind, run_sandbox, uses_judge
from evals.judging.session import JudgeSession, Usage
from evals.judging.spend import capped_session, nothing_left
from evals.metrics.measure import apply_measurement, measure, record_activation_baseline
from evals.models import (
    Eval,
    EvalExecution,
    EvalKind,
    EvalRun,
    Generation,
    Provider,
    RunStatus,
)
from evals.queue import enqueue_generation
from evals.sandboxing import sandbox_limits
from iofold.lib import metrics
from traces.conversations import eval_payloads
from traces.models import EvalSet, Trace
from traces.selectors import labelled_examples
from traces.vocabulary import unit_noun

logger = logging.getLogger(__name__)

# A generation no worker has touched for this long is failed (queued ones after twelve
# times as long). A running one beats its heartbeat every few seconds and is taken over as
# soon as its worker dies (iofold/lib/runs.py), so this is the last resort.
GENERATION_STALE_AFTER = timedelta(minutes=15)


def start_generation(
    *, eval_set: EvalSet, user=None, choice: ProviderChoice | None = None, enqueue: bool = True
) -> Generation:
    """Queue a generation for the set and return it; an unfinished one is returned as is."""
    if eval_set.is_archived:
        raise EvalError("This eval set is archived; restore it to generate an eval.")
    examples = labelled_examples(eval_set)
    good = sum(e.label == "positive" for e in examples)
    bad = sum(e.label == "negative" for e in examples)
    if not good or not bad:
        # An eval learns what tells good from bad: with one side only, it could but say
        # always one verdict (the button and API started such a run from one good label).
        raise EvalError(
            f"Label some traces good and some bad before generating an eval: it learns what "
            f"tells them apart, and this set has {good} good and {bad} bad."
        )
    # A generation whose worker died is enqueued again (and returned) rather than left stuck.
    recover_generations(eval_set=eval_set)
    reap_stale_generations(eval_set=eval_set)
    with transaction.atomic():
        lock_eval_set(eval_set)
        unfinished = Generation.objects.filter(eval_set=eval_set, parent__isnull=True).unfinished()
        if (active := unfinished.first()) is not None:
            return active
        generation = queue_generation(eval_set=eval_set, user=user, choice=choice, enqueue=enqueue)
    logger.info(
        "generation queued generation=%s eval_set=%s provider=%s",
        generation.pk,
        eval_set.pk,
        generation.provider,
    )
    return generation


def lock_eval_set(eval_set: EvalSet) -> None:
    """Make the other transactions starting a generation of the set wait for this one.

    Two requests at once (a double click, two tabs) each found no unfinished generation
    before the other had stored its own, and both were queued.
    """
    EvalSet.objects.select_for_update().filter(pk=eval_set.pk).first()


def queue_generation(
    *,
    eval_set: EvalSet,
    parent: Eval | None = None,
    user=None,
    choice: ProviderChoice | None = None,
    enqueue: bool = True,
) -> Generation:
    """Create a Generation row (a refinement when ``parent`` is set) and enqueue its task."""
    choice = choice or resolve_provider(workspace=eval_set.workspace)
    with transaction.atomic():
        generation = Generation.objects.create(
            workspace_id=eval_set.workspace_id,
            eval_set=eval_set,
            parent=parent,
            provider=choice.provider,
            model=choice.model,
            stage="Waiting for a worker",
            created_by=user if user is not None and user.is_authenticated else None,
        )
        if enqueue:
            transaction.on_commit(lambda: enqueue_generation(generation.pk))
    return generation


def complete_generation(
    generation: Generation, make_eval: Callable[..., Eval], *, what: str
) -> Generation | None:
    """Make the eval of a claimed generation (or refinement) and record how it went.

    ``make_eval(on_stage=..., on_attempt=...)`` does the work. Permanent failures mark the
    row failed with a message for the user; transient ones put it back in the queue and
    raise TransientEvalError for the task to retry. None: the row was deleted meanwhile
    (with its workspace or eval set), and there is nobody left to tell.
    """
    try:
        eval = make_eval(
            on_stage=lambda text: set_stage(generation, text),
            on_attempt=lambda n: Generation.objects.filter(pk=generation.pk).update(attempts=n),
        )
    except ProviderError as exc:
        if exc.permanent:
            return fail_generation(generation_id=generation.pk, error=exc.message)
        _requeue(generation, f"Provider unavailable, retrying: {exc.message}")
        raise TransientEvalError(exc.message) from exc
    except TransientEvalError as exc:
        _requeue(generation, f"Retrying: {exc.message}")
        raise
    except EvalError as exc:
        return fail_generation(generation_id=generation.pk, error=exc.message)
    except Exception as exc:
        # Celery logs the crash, with the task's id: a record here would log it twice. Its
        # traceback carries the ids instead.
        exc.add_note(f"{what} crashed generation={generation.pk}")
        fail_generation(
            generation_id=generation.pk,
            error=f"The {what} stopped on an internal error; try again.",
        )
        raise
    now = timezone.now()
    Generation.objects.filter(pk=generation.pk).update(
        status=RunStatus.SUCCEEDED,
        stage="Done",
        result=eval,
        model=eval.model,
        finished_at=now,
        heartbeat_at=now,
    )
    generation = Generation.objects.filter(pk=generation.pk).first()
    if generation is None:
        logger.info("%s finished after its generation was deleted eval=%s", what, eval.pk)
        return None
    _count_generation(generation, "succeeded", eval=eval)
    logger.info(
        "%s finished generation=%s eval=%s agreement=%s",
        what,
        generation.pk,
        eval.pk,
        eval.agreement,
    )
    return generation


def _requeue(generation: Generation, stage: str) -> None:
    Generation.objects.filter(pk=generation.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.QUEUED, stage=stage[:200]
    )


def choice_for(generation: Generation) -> ProviderChoice:
    """Return the provider the generation was queued with, with the workspace's current key."""
    current = resolve_provider(workspace=generation.workspace)
    if current.provider == generation.provider:
        return current
    # The settings changed since it was queued; use what is configured now.
    Generation.objects.filter(pk=generation.pk).update(
        provider=current.provider, model=current.model
    )
    return current


def set_stage(generation: Generation, text: str) -> None:
    """Record what the generation is doing now (shown while polling); also a heartbeat."""
    Generation.objects.filter(pk=generation.pk).update(
        stage=text[:200], heartbeat_at=timezone.now()
    )


def examples_for(eval_set: EvalSet) -> tuple[list[LabelledExample], dict[str, Trace]]:
    """Return the set's labelled traces as examples, and the Trace of each example's group."""
    examples = []
    traces: dict[str, Trace] = {}
    items = labelled_examples(eval_set)
    # A conversation set's examples are conversations (traces.conversations.eval_payloads).
    payloads = eval_payloads(eval_set, [item.trace for item in items])
    for item, payload in zip(items, payloads, strict=True):
        group = str(item.trace.pk)
        traces[group] = item.trace
        data = payload if isinstance(payload, dict) else {}
        examples.append(
            LabelledExample(trace=data, label=item.label, note="\n".join(item.notes), group=group)
        )
    examples.sort(key=lambda e: int(e.group))
    return examples, traces


def make_llm(choice: ProviderChoice):
    """Return the provider client for an LLM choice."""
    return get_provider(
        choice.provider,
        api_key=choice.api_key,
        model=choice.model,
        base_url=choice.base_url or None,
    )


def judge_session_for(eval_set: EvalSet) -> JudgeSession | None:
    """Return the judge channel generated code may use, or None when the workspace has no
    real provider or nothing left of its monthly budget (the prompt then does not offer
    the judge)."""
    session = capped_session(workspace=eval_set.workspace)
    if not session.available or nothing_left(session.budget):
        return None
    return session


def judged_runner(session: JudgeSession | None) -> candidates.RunCode | None:
    """Return a sandbox runner answering judge() calls through `session` (None: plain)."""
    if session is None:
        return None

    def run_code(code: str, traces: list[dict], limits) -> list:
        channel = session if uses_judge(code) else None
        return run_sandbox(channel, sandbox.run, code, traces, limits or sandbox_limits()).results

    return run_code


def generate_eval(
    *,
    eval_set: EvalSet,
    choice: ProviderChoice,
    user=None,
    on_stage=None,
    on_attempt=None,
    generation_id: int | None = None,
) -> Eval:
    """Write, test, measure and store a new eval version for the set; return it."""
    stage = on_stage or (lambda text: None)
    stage("Reading the labels")
    examples, traces = examples_for(eval_set)
    candidates.require_both_labels(examples)
    limits = sandbox_limits()
    session = judge_session_for(eval_set) if choice.provider != Provider.OFFLINE else None
    candidate = write_candidate(
        eval_set=eval_set,
        examples=examples,
        choice=choice,
        limits=limits,
        on_stage=stage,
        on_attempt=on_attempt,
        session=session,
    )
    items = unit_noun(eval_set.unit, len(examples))
    stage(f"Running the eval on {len(examples)} labelled {items} in the sandbox")
    return measure_and_store(
        eval_set=eval_set,
        candidate=candidate,
        examples=examples,
        traces=traces,
        limits=limits,
        generation_id=generation_id,
        session=session,
        user=user,
    )


def write_candidate(
    *,
    eval_set: EvalSet,
    examples: list[LabelledExample],
    choice: ProviderChoice,
    limits,
    on_stage,
    on_attempt=None,
    build_prompt=None,
    session: JudgeSession | None = None,
    keep_out: Collection[str] = (),
) -> candidates.Candidate:
    """Write eval code for the set: the offline synthesiser, or the chosen LLM.

    `build_prompt` replaces the generation prompt (refinement's, with `keep_out`, the
    parent's held-out groups); offline there is no prompt, the synthesiser refits on all
    the labels and cross-validates. With a judge `session` the prompt offers
    judge()/llm() and the dry run answers them.
    """
    if choice.provider == Provider.OFFLINE:
        return candidates.write_offline(
            examples=examples, criteria=eval_set.criteria, on_stage=on_stage
        )
    return candidates.write_with_llm(
        examples=examples,
        criteria=eval_set.criteria,
        llm=make_llm(choice),
        provider_name=choice.provider,
        token_budget=settings.IOFOLD_LLM_TOKEN_BUDGET,
        limits=limits,
        on_stage=on_stage,
        on_attempt=on_attempt,
        build_prompt=build_prompt,
        judge=session is not None,
        run_code=judged_runner(session),
        keep_out=keep_out,
    )


def test_and_measure(
    candidate: candidates.Candidate,
    examples: list[LabelledExample],
    limits,
    *,
    extra: dict | None = None,
    session: JudgeSession | None = None,
):
    """Run the candidate on every example in the sandbox; return (results, measurement).

    Judge calls are answered through `session` (their cost goes to the stored run).

    Training agreement is over the examples it was not kept back from; held-out agreement
    over those kept back, or the offline cross-validation pairs. One label per trace:
    cross-validation pairs cover the training traces a second time.
    """
    results = candidates.test_candidate(candidate.code, examples, limits, judged_runner(session))
    return results, measure_results(candidate, examples, results, extra=extra)


def measure_results(
    candidate: candidates.Candidate,
    examples: list[LabelledExample],
    results: list,
    *,
    extra: dict | None = None,
):
    """Measure the candidate's results (one per example, in order) against the labels."""
    verdicts = {
        e.group: (r.passed if r.error is None else None)
        for e, r in zip(examples, results, strict=True)
    }
    heldout_groups = {e.group for e in candidate.heldout}
    training = [(e.label, verdicts[e.group]) for e in examples if e.group not in heldout_groups]
    extra = dict(extra or {})
    if candidate.heldout:
        heldout = [(e.label, verdicts[e.group]) for e in candidate.heldout]
        extra["heldout_trace_ids"] = sorted(int(g) for g in heldout_groups)
    else:
        heldout = candidate.heldout_pairs
    return measure(
        training=training,
        heldout=heldout,
        method=candidate.method,
        labels=[e.label for e in examples],
        extra=extra,
    )


def candidate_cost(candidate: candidates.Candidate) -> Decimal | None:
    """Return the candidate's cost in dollars (0 offline, None for an unpriced model)."""
    if candidate.provider == Provider.OFFLINE:
        return Decimal(0)
    return cost_usd(candidate.model, candidate.input_tokens, candidate.output_tokens, price_table())


def store_eval(
    *,
    eval_set: EvalSet,
    candidate: candidates.Candidate,
    measurement,
    traces: list[Trace],
    results: list,
    user=None,
    parent: Eval | None = None,
    origin: str = "generated",
    session: JudgeSession | None = None,
    draft: Eval | None = None,
) -> Eval:
    """Save the candidate as the set's next version with its run and executions.

    The first version that clears the agreement bars (held-out accuracy and Cohen's
    kappa, see evals.metrics.agreement.KAPPA_BAR) becomes the set's active eval; later ones stay
    drafts until someone activates them. A version that gives every labelled trace the
    same verdict is "no reliable eval yet": kept as a draft with the reason, never
    activated automatically. With a judge `session`, what its calls cost (the dry run's
    included) is recorded on the run, so it counts against the monthly budget. A `draft`
    stored before measuring (``store_draft``), whose run holds the verdicts already, is
    completed in place instead.
    """
    judged = session is not None and uses_judge(candidate.code)
    usage = [session.per_trace.get(i) for i in range(len(results))] if judged else []
    counts = [measurement.metrics.get("training")]
    if measurement.metrics.get("heldout_trace_ids"):
        counts.append(measurement.metrics.get("heldout"))
    no_eval_reason = candidate.no_eval_reason or candidates.constant_verdict_reason(
        counts, eval_set.unit
    )

    def write(version: int) -> Eval:
        has_active = Eval.objects.for_eval_set(eval_set).active().exists()
        activate = not has_active and not measurement.low_confidence
        activate = activate and not no_eval_reason
        eval = draft or _new_version(
            eval_set=eval_set,
            candidate=candidate,
            version=version,
            user=user,
            parent=parent,
            origin=origin,
        )
        eval.status = Eval.Status.ACTIVE if activate else Eval.Status.DRAFT
        eval.activated_at = timezone.now() if activate else None
        apply_measurement(eval, measurement)
        eval.metrics = {
            **eval.metrics,
            "attempts": candidate.attempts,
            "usage_estimated": candidate.usage_estimated,
            "no_reliable_eval": bool(no_eval_reason),
            "no_eval_reason": no_eval_reason,
        }
        if no_eval_reason:
            eval.low_confidence = True
            eval.low_confidence_reason = no_eval_reason.split(". ")[0]
        if activate:
            record_activation_baseline(eval)
        eval.save()
        if draft is not None:
            return eval
        run = record_completed_run(
            eval=eval,
            traces=traces,
            results=results,
            trigger=EvalRun.Trigger.GENERATION,
            usage=usage,
        )
        if judged:
            add_run_spend(run=run, session=session, since=Usage())
        return eval

    return _in_version_order(eval_set, write)


def _in_version_order(eval_set: EvalSet, write: Callable[[int], Eval]) -> Eval:
    """Call ``write(next version number)`` in a transaction holding the set's lock.

    Another version (or activation) landing at the same moment makes the write fail on a
    unique constraint: it is tried again with the next number.
    """
    for _ in range(3):
        try:
            with transaction.atomic():
                lock_eval_set(eval_set)
                latest = Eval.objects.for_eval_set(eval_set).aggregate(v=Max("version"))["v"]
                return write((latest or 0) + 1)
        except IntegrityError:
            continue
    raise TransientEvalError("Could not number the new eval version; try again.")


def _new_version(
    *,
    eval_set: EvalSet,
    candidate: candidates.Candidate,
    version: int,
    user=None,
    parent: Eval | None = None,
    origin: str,
) -> Eval:
    """Return the candidate as an unsaved version of the set (a draft, not measured yet)."""
    return Eval(
        workspace_id=eval_set.workspace_id,
        eval_set=eval_set,
        version=version,
        parent=parent,
        status=Eval.Status.DRAFT,
        code=candidate.code,
        provider=candidate.provider,
        model=candidate.model,
        origin=origin,
        kind=infer_kind(candidate.code, parent.kind if parent else EvalKind.CODE),
        prompt=candidate.prompt,
        prompt_version=candidate.prompt_version,
        input_tokens=candidate.input_tokens,
        output_tokens=candidate.output_tokens,
        cost_usd=candidate_cost(candidate),
        description=candidate.description,
        created_by=user if user is not None and user.is_authenticated else None,
    )


# A version stored before it is measured (``measure_and_store``) names its generation here
# until it is: a version whose generation's worker died is removed when it starts again.
MEASURING = Eval.MEASURING


def measure_and_store(
    *,
    eval_set: EvalSet,
    candidate: candidates.Candidate,
    examples: list[LabelledExample],
    traces: dict[str, Trace],
    limits,
    generation_id: int | None = None,
    extra: dict | None = None,
    session: JudgeSession | None = None,
    user=None,
    parent: Eval | None = None,
    origin: str = "generated",
) -> Eval:
    """Run the candidate on every labelled trace, measure it and store it as a version.

    Up to ``IOFOLD_EVAL_CHUNK_TRACES`` labelled traces (or code that calls a judge, whose
    spend one task must keep) are judged here in one sandbox call. More are judged the
    way a large eval run is: the version is stored first as a draft, its run is split
    into chunks that any worker may carry out (evals/execution/chunks.py), this task
    works on them too and waits for the rest, then measures the verdicts the chunks
    wrote. The verdicts, and so the metrics, are the same either way.
    """
    from evals.execution.chunks import work_until_done
    from evals.execution.runs import start_run

    ordered = [traces[e.group] for e in examples]
    size = settings.IOFOLD_EVAL_CHUNK_TRACES
    if len(examples) <= size or uses_judge(candidate.code):
        results, measurement = test_and_measure(
            candidate, examples, limits, extra=extra, session=session
        )
        return store_eval(
            eval_set=eval_set,
            candidate=candidate,
            measurement=measurement,
            traces=ordered,
            results=results,
            user=user,
            parent=parent,
            origin=origin,
            session=session,
        )
    draft = store_draft(
        eval_set=eval_set,
        candidate=candidate,
        user=user,
        parent=parent,
        origin=origin,
        generation_id=generation_id,
    )
    try:
        run = start_run(
            eval=draft, trace_ids=[t.pk for t in ordered], trigger=EvalRun.Trigger.GENERATION
        )
        try:
            run = work_until_done(run_id=run.pk)
        except sandbox.SandboxError as exc:
            raise sandbox_failure(exc) from exc
        if run.status != RunStatus.SUCCEEDED:
            raise EvalError(run.error or "Measuring the new eval did not finish; try again.")
        results = stored_results(eval=draft, traces=ordered)
        measurement = measure_results(candidate, examples, results, extra=extra)
        return store_eval(
            eval_set=eval_set,
            candidate=candidate,
            measurement=measurement,
            traces=ordered,
            results=results,
            draft=draft,
        )
    except BaseException:
        # Nothing half-measured is left behind; the generation starts over on a retry.
        draft.delete()
        raise


def store_draft(
    *,
    eval_set: EvalSet,
    candidate: candidates.Candidate,
    user=None,
    parent: Eval | None = None,
    origin: str = "generated",
    generation_id: int | None = None,
) -> Eval:
    """Store the candidate as the set's next version, a draft marked as being measured."""

    def write(version: int) -> Eval:
        eval = _new_version(
            eval_set=eval_set,
            candidate=candidate,
            version=version,
            user=user,
            parent=parent,
            origin=origin,
        )
        eval.metrics = {MEASURING: generation_id}
        eval.low_confidence = True
        eval.low_confidence_reason = "Being measured on the labelled traces"
        eval.save()
        return eval

    return _in_version_order(eval_set, write)


def drop_unmeasured(*, generation_id: int) -> int:
    """Delete the versions a generation stored and did not finish measuring (its worker died)."""
    deleted, _ = Eval.objects.filter(
        status=Eval.Status.DRAFT, **{f"metrics__{MEASURING}": generation_id}
    ).delete()
    return deleted


def stored_results(*, eval: Eval, traces: list[Trace]) -> list[sandbox.Result]:
    """Return the eval's stored verdicts on `traces` as sandbox results, in their order."""
    rows = {
        row["trace_id"]: row
        for row in EvalExecution.objects.filter(eval=eval, trace__in=traces).values(
            "trace_id", "passed", "reason", "error", "duration_ms", "output"
        )
    }
    missing = sandbox.Result(None, "", "No verdict was recorded for this trace.", 0.0)
    return [
        sandbox.Result(
            passed=row["passed"],
            reason=row["reason"],
            error=row["error"] or None,
            duration_ms=row["duration_ms"],
            output=row["output"],
        )
        if (row := rows.get(t.pk))
        else missing
        for t in traces
    ]


def fail_generation(*, generation_id: int, error: str) -> Generation | None:
    """Mark an unfinished generation failed with a message for the user."""
    now = timezone.now()
    failed = Generation.objects.filter(
        pk=generation_id, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
    ).update(status=RunStatus.FAILED, error=error, stage="Failed", finished_at=now)
    logger.info("generation failed generation=%s", generation_id)
    generation = Generation.objects.filter(pk=generation_id).first()
    if failed and generation is not None:
        _count_generation(generation, "failed")
    return generation


def _count_generation(generation: Generation, outcome: str, *, eval: Eval | None = None) -> None:
    """Count a finished generation, and what its LLM calls cost, in the metrics."""
    metrics.GENERATIONS.labels(generation.provider, outcome).inc()
    if eval is None:
        return
    if eval.cost_usd:
        metrics.LLM_COST.labels(eval.provider, eval.model).inc(float(eval.cost_usd))
    for direction, tokens in (("input", eval.input_tokens), ("output", eval.output_tokens)):
        if tokens:
            metrics.LLM_TOKENS.labels(eval.provider, eval.model, direction).inc(tokens)


def recover_generations(*, eval_set: EvalSet | None = None, include_queued: bool = False) -> int:
    """Enqueue again the generations (and refinements) whose worker died."""
    generations = Generation.objects.all()
    if eval_set is not None:
        generations = generations.filter(eval_set=eval_set)
    return generations.recover(
        enqueue=lambda generation: enqueue_generation(generation.pk),
        include_queued=include_queued,
        stage="The worker stopped; waiting for another one",
    )


def reap_stale_generations(
    *, older_than: timedelta = GENERATION_STALE_AFTER, eval_set: EvalSet | None = None
) -> int:
    """Fail generations no worker has touched for long, or that none picked up for hours."""
    now = timezone.now()
    stale = Generation.objects.filter(
        Q(status=RunStatus.RUNNING, heartbeat_at__lt=now - older_than)
        | Q(status=RunStatus.QUEUED, created_at__lt=now - 12 * older_than)
    )
    if eval_set is not None:
        stale = stale.filter(eval_set=eval_set)
    count = stale.fail("The worker stopped responding; start the generation again.", stage="Failed")
    if count:
        logger.warning("stale generations reaped count=%d", count)
    return count
