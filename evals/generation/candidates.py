"""Write a candidate eval from labelled examples and test it in the sandbox; no database.

The Django flow (`evals.generation.services`) and the `fit_eval` command share this:
one writes Eval rows, the other a file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import sandbox
from evals.datasets import LabelledExample
from evals.exceptions import EvalError, sandbox_failure
from evals.generation import prompts
from evals.generation.code_extraction import CodeExtractionError, extract_code
from evals.generation.providers import Provider as LLMProvider
from evals.metrics.agreement import cross_validated_method, holdout_split
from evals.synthesis import SynthesisError, cross_validate, fit, fold_count, split_groups
from traces.vocabulary import unit_noun

logger = logging.getLogger(__name__)

# Calls to the model per generation: the first answer plus two corrections. Past that the
# model is usually stuck on the same mistake and another call mostly costs money.
MAX_ATTEMPTS = 3
# With fewer decided labels a held-out part would be too small to say anything.
HOLDOUT_MIN_LABELS = 20
HOLDOUT_FRACTION = 0.2
CV_FOLDS = 5

Stage = Callable[[str], None]
# Runs code on traces in the sandbox: sandbox.run, or one that answers judge() calls
# (the Django flow passes evals.judging.runs.run_sandbox with a session).
RunCode = Callable[[str, list[dict], "sandbox.Limits | None"], list["sandbox.Result"]]


def _plain_run(code: str, traces: list[dict], limits: sandbox.Limits | None):
    return sandbox.run(code, traces, limits, validate_code=False)


@dataclass
class Candidate:
    """Eval code that passed validation and a dry run, with how it was made."""

    code: str
    provider: str
    model: str
    method: str  # how held-out agreement is measured
    prompt: str = ""
    prompt_version: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    attempts: int = 1
    description: str = ""
    usage_estimated: bool = False
    # Examples the code was written from and those kept back to measure it.
    train: list[LabelledExample] = field(default_factory=list)
    heldout: list[LabelledExample] = field(default_factory=list)
    # Offline: (label, verdict) from cross-validation of the whole procedure.
    heldout_pairs: list[tuple[str, bool | None]] | None = None
    # Why this is no reliable eval yet (a constant verdict), or "" when it is a real rule.
    no_eval_reason: str = ""


def decided(examples: Sequence[LabelledExample]) -> list[LabelledExample]:
    """Return the examples labelled positive or negative."""
    return [e for e in examples if e.label in ("positive", "negative")]


def require_both_labels(examples: Sequence[LabelledExample]) -> None:
    """Raise EvalError unless there is at least one positive and one negative label."""
    labels = {e.label for e in examples}
    if not labels & {"positive", "negative"}:
        raise EvalError("There are no good or bad labels to learn from yet.")


def hold_out(
    examples: Sequence[LabelledExample], groups: Collection[str]
) -> tuple[list[LabelledExample], list[LabelledExample]]:
    """Return (train, held-out) of the decided examples, in order: held out those of `groups`."""
    usable = decided(examples)
    return [e for e in usable if e.group not in groups], [e for e in usable if e.group in groups]


def split_for_llm(
    examples: Sequence[LabelledExample], *, keep_out: Collection[str] = ()
) -> tuple[list[LabelledExample], list[LabelledExample]]:
    """Return (train, held-out): a fifth kept back once there are 20 decided labels.

    Traces sharing a session, conversation or task id are kept on one side; both verdicts
    are held out in proportion. With `keep_out` (a refined version's held-out groups),
    those are held out and every other label trains: the refinement is measured on the
    labels its parent was, none of which its prompt shows, instead of a new split that
    would move the parent's held-out labels into the prompt and hold out labels the
    parent's code was written from.
    """
    usable = sorted(decided(examples), key=lambda e: str(e.trace.get("id", "")))
    if keep_out:
        return hold_out(usable, {str(g) for g in keep_out})
    if len(usable) < HOLDOUT_MIN_LABELS:
        return usable, []
    # Traces of one session or task stay on one side (see evals.synthesis.split_groups).
    groups = split_groups(usable)
    labels = [e.label == "positive" for e in usable]
    train_idx, test_idx = holdout_split(groups, labels=labels, test_fraction=HOLDOUT_FRACTION)
    return [usable[i] for i in train_idx], [usable[i] for i in test_idx]


def write_offline(
    *, examples: Sequence[LabelledExample], criteria: str, on_stage: Stage | None = None
) -> Candidate:
    """Synthesise an eval with the offline learner, cross-validating it for held-out figures."""
    stage = on_stage or (lambda text: None)
    usable = decided(examples)
    stage(f"Learning a rule from {len(usable)} labels")
    try:
        fitted = fit(usable, criteria=criteria)
    except SynthesisError as exc:
        raise EvalError(str(exc)) from None
    stage("Cross-validating on held-out labels")
    pairs = cross_validate(usable, criteria=criteria, folds=CV_FOLDS)
    code = fitted.code
    problems = sandbox.validate(code)
    if problems:
        # The synthesiser emits only allow-listed code; this is a bug, not a user error.
        raise EvalError(f"The synthesised code failed validation: {problems[0]}")
    description = "\n".join(fitted.rules)
    selection = fitted.selection
    if selection.cv_correct:
        shapes = {"constant": "majority verdict", "one": "one condition"}
        shapes.update({"two": "two conditions", "words": "a word or phrase"})
        tried = "; ".join(
            f"{shapes[level]} {count} of {selection.cv_total}"
            for level, count in selection.cv_correct.items()
        )
        description += (
            f"\nShape chosen by {selection.folds}-fold grouped cross-validation within the "
            "labels it learned from, the simplest shape "
            "within one standard error of the best; a rule only when it beats the majority "
            f"verdict by more than a standard error. Held-out agreement by shape: {tried}."
        )
    if fitted.constant_reason:
        description += f"\n{fitted.constant_reason}"
    # The measured figures: the whole fit, shape choice included, redone without each fold.
    folds = fold_count(usable, folds=CV_FOLDS)
    return Candidate(
        code=code,
        provider="offline",
        model="synthesiser",
        method=cross_validated_method(folds),
        description=description,
        train=list(usable),
        heldout_pairs=pairs,
        no_eval_reason=fitted.constant_reason or "",
    )


def constant_verdict_reason(counts: Sequence[dict | None], unit: str = "trace") -> str:
    """Return why the code is no reliable eval when it judges every labelled item (a
    trace, or a conversation: the set's ``unit``) alike.

    `counts` are confusion counts (tp, fp, fn, tn) of the labelled traces it ran on.
    Only when the labels themselves are mixed: then one verdict for everything is a
    constant, however high its raw agreement. Returns "" otherwise.
    """
    total = {k: sum((c or {}).get(k, 0) for c in counts) for k in ("tp", "fp", "fn", "tn")}
    said_good, said_bad = total["tp"] + total["fp"], total["fn"] + total["tn"]
    human_good, human_bad = total["tp"] + total["fn"], total["fp"] + total["tn"]
    if not human_good or not human_bad or (said_good and said_bad):
        return ""
    verdict = "good" if said_good else "bad"
    one, many = unit_noun(unit), unit_noun(unit, None)
    return (
        f"No reliable eval yet: this code judges every labelled {one} {verdict}, so it "
        "agrees with your labels no better than chance. What would help: more labels of "
        f"the minority verdict, a note on what made the bad {many} bad, or an LLM judge."
    )


def format_problems(problems: Sequence[sandbox.Problem]) -> str:
    """Return validation problems as the line-numbered text fed back to the model."""
    lines = [f"- line {p.line}, column {p.column}: {p.message}" for p in problems[:10]]
    if len(problems) > 10:
        lines.append(f"- and {len(problems) - 10} more")
    return "The code was rejected by the validator:\n" + "\n".join(lines)


def render_conversation(system: str, messages: Sequence[dict]) -> str:
    """Return the exact prompt sent, as readable text (system, then each message)."""
    parts = [f"### system\n\n{system}"]
    parts += [f"### {m['role']}\n\n{m['content']}" for m in messages]
    return "\n\n".join(parts)


def check_code(
    code: str, trace: dict, limits: sandbox.Limits | None, run_code: RunCode | None = None
) -> str | None:
    """Return why `code` is unusable (validation, or a dry run on `trace`), or None."""
    problems = sandbox.validate(code)
    if problems:
        return format_problems(problems)
    try:
        [result] = (run_code or _plain_run)(code, [trace], limits)
    except sandbox.SandboxError as exc:
        raise sandbox_failure(exc, "run the code") from exc
    if result.error:
        trace_id = trace.get("id", "?")
        return f"Running eval_fn on trace {trace_id!r} in the sandbox failed:\n{result.error}"
    return None


def write_with_llm(
    *,
    examples: Sequence[LabelledExample],
    criteria: str,
    llm: LLMProvider,
    provider_name: str,
    token_budget: int,
    limits: sandbox.Limits | None = None,
    on_stage: Stage | None = None,
    on_attempt: Callable[[int], None] | None = None,
    build_prompt: Callable[[list[LabelledExample], int], prompts.Prompt] | None = None,
    judge: bool = False,
    run_code: RunCode | None = None,
    keep_out: Collection[str] = (),
) -> Candidate:
    """Ask the model for eval code; validate and dry-run it, feeding errors back.

    `build_prompt(train, token_budget)` replaces the generation prompt (refinement uses
    it, with `keep_out`, the parent's held-out groups: see split_for_llm). `judge` offers
    judge()/llm() in the generation prompt; `run_code` must then answer them in the dry
    run. Up to MAX_ATTEMPTS calls. Raises evals.generation.providers.ProviderError from
    the provider, and EvalError when no attempt produced usable code.
    """
    stage = on_stage or (lambda text: None)
    train, heldout = split_for_llm(examples, keep_out=keep_out)
    if not train:
        raise EvalError("There are no good or bad labels to learn from yet.")
    try:
        if build_prompt is not None:
            prompt = build_prompt(train, token_budget)
        else:
            prompt = prompts.build_generation_prompt(
                criteria=criteria,
                examples=[prompts.PromptExample(e.trace, e.label, e.note) for e in train],
                token_budget=token_budget,
                judge=judge,
            )
    except prompts.PromptBudgetError as exc:
        raise EvalError(f"The prompt does not fit IOFOLD_LLM_TOKEN_BUDGET: {exc}") from None
    messages = list(prompt.messages)
    dry_trace = train[0].trace
    input_tokens = output_tokens = 0
    estimated = False
    error = ""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        stage(f"Asking {llm.model} for code (attempt {attempt} of {MAX_ATTEMPTS})")
        if on_attempt is not None:
            on_attempt(attempt)
        completion = llm.complete(system=prompt.system, messages=messages)
        input_tokens += completion.input_tokens
        output_tokens += completion.output_tokens
        estimated = estimated or completion.usage_estimated
        sent = render_conversation(prompt.system, messages)
        try:
            code = extract_code(completion.text)
        except CodeExtractionError as exc:
            error = str(exc)
        else:
            stage(f"Checking the code and dry-running it (attempt {attempt})")
            error = check_code(code, dry_trace, limits, run_code) or ""
        if not error:
            return Candidate(
                code=code,
                provider=provider_name,
                model=completion.model or llm.model,
                method="held-out split" if heldout else "",
                prompt=sent,
                prompt_version=prompt.version,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                attempts=attempt,
                usage_estimated=estimated,
                train=train,
                heldout=heldout,
            )
        logger.info("generated code rejected attempt=%d model=%s", attempt, llm.model)
        messages += [
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": prompts.build_retry_message(error)},
        ]
    raise EvalError(
        f"The model did not write a usable eval in {MAX_ATTEMPTS} attempts "
        f"({input_tokens + output_tokens} tokens used). Last problem: "
        f"{prompts.truncate_middle(error, 1500)}"
    )


def test_candidate(
    code: str,
    examples: Sequence[LabelledExample],
    limits: sandbox.Limits | None = None,
    run_code: RunCode | None = None,
) -> list[sandbox.Result]:
    """Run `code` on every example's trace in one sandbox call; one Result per example."""
    try:
        if run_code is not None:
            return run_code(code, [e.trace for e in examples], limits)
        return sandbox.run(code, [e.trace for e in examples], limits)
    except sandbox.SandboxError as exc:
        raise sandbox_failure(exc) from exc
