"""Eval versions after generation: activate, archive, restore, edit by hand, roll back."""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

import sandbox
from evals.collaboration import record_activity
from evals.exceptions import EvalError
from evals.execution import continuous
from evals.execution.scores import resend_replaced_scores
from evals.judging.runs import infer_kind, run_sandbox, uses_judge
from evals.judging.session import JudgeSession
from evals.metrics.measure import record_activation_baseline
from evals.models import Activity, Eval, EvalRun
from evals.sandboxing import sandbox_limits
from traces.models import EvalSet

logger = logging.getLogger(__name__)

# Versions started from a gallery template; measured on the workspace's labels before use.
TEMPLATE_ORIGIN = "template"
# A hand edit is tried on this many labelled traces before it is saved.
DRY_RUN_TRACES = 5


class EvalActionError(EvalError):
    """A version cannot change state this way; the message is shown to the user."""


@dataclass(frozen=True)
class CodeProblem:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class InvalidEvalCode(EvalActionError):
    """Edited code failed validation or its dry run; ``problems`` carry line numbers."""

    def __init__(self, problems: list[CodeProblem]):
        super().__init__("The code has problems: " + "; ".join(str(p) for p in problems))
        self.problems = problems


def _lock_set(eval_set_id: int) -> None:
    # Serialises state changes and version numbering within one eval set (PostgreSQL
    # row lock; SQLite serialises writers anyway).
    EvalSet.objects.select_for_update().filter(pk=eval_set_id).first()


def _take_the_one(current: Eval, status: str, *, since: str) -> None:
    """Make ``current`` its set's one version with ``status`` (active, shadow), from now
    (stamped in its field ``since``): the version that had it becomes a draft first."""
    (
        Eval.objects.for_workspace(current.workspace_id)
        .filter(eval_set_id=current.eval_set_id, status=status)
        .exclude(pk=current.pk)
        .update(status=Eval.Status.DRAFT, updated_at=timezone.now())
    )
    current.status = status
    setattr(current, since, timezone.now())
    current.save(update_fields=["status", since, "updated_at"])


@transaction.atomic
def activate_eval(*, eval: Eval) -> Eval:
    """Make this version the set's one active version; the previous one becomes a draft.

    The demotion and promotion happen in one transaction, in that order, so the
    one-active-per-set constraint holds at every statement and nobody sees zero or two.
    """
    _lock_set(eval.eval_set_id)
    current = Eval.objects.select_for_update().get(pk=eval.pk)
    if current.status == Eval.Status.ACTIVE:
        return current
    record_activation_baseline(current)
    current.save(update_fields=["metrics", "updated_at"])
    _take_the_one(current, Eval.Status.ACTIVE, since="activated_at")
    # Its verdicts another version's overwrote at the source go out again.
    resend_replaced_scores(eval=current)
    # A set paused for the previous version's timeouts runs again, held traces included.
    continuous.resume_on_activation(eval=current)
    logger.info("eval activated eval=%s eval_set=%s", current.pk, current.eval_set_id)
    return current


def rollback_to(*, eval: Eval) -> Eval:
    """Activate an older version again (a rollback is an activation of the older code)."""
    active = (
        Eval.objects.for_workspace(eval.workspace_id)
        .filter(eval_set_id=eval.eval_set_id, status=Eval.Status.ACTIVE)
        .first()
    )
    if active is not None and active.version < eval.version:
        raise EvalActionError(
            f"v{eval.version} is newer than the active v{active.version}; activate it instead."
        )
    return activate_eval(eval=eval)


@dataclass(frozen=True)
class Activation:
    eval: Eval
    previous: Eval | None  # the version active before, when it was another one
    rollback: bool


def activate_or_roll_back(*, eval: Eval, user=None, reason: str = "", verb: str = "") -> Activation:
    """Make ``eval`` the active version: a rollback when a newer version is active.

    The UI and the API both call this, so they decide the same way which one it is. The
    set's activity feed records who did it (None: iofold itself) and why.
    """
    if eval.being_measured:
        raise EvalActionError(
            f"v{eval.version} is still being measured on the labels; activate it once its "
            "generation has finished."
        )
    if eval.origin == TEMPLATE_ORIGIN and not eval.labels_tested:
        raise EvalActionError(
            f"v{eval.version} comes from the gallery: measure it on this workspace's labels "
            "first (label some traces, then “Test again”)."
        )
    active = (
        Eval.objects.for_workspace(eval.workspace_id)
        .filter(eval_set_id=eval.eval_set_id)
        .active()
        .first()
    )
    rollback = active is not None and active.version > eval.version
    current = rollback_to(eval=eval) if rollback else activate_eval(eval=eval)
    previous = active if active is not None and active.pk != current.pk else None
    if previous is not None or active is None:
        record_activity(
            verb=verb or (Activity.Verb.ROLLED_BACK if rollback else Activity.Verb.ACTIVATED),
            actor=user,
            eval=current,
            reason=reason,
        )
    return Activation(eval=current, previous=previous, rollback=rollback)


@transaction.atomic
def shadow_eval(*, eval: Eval, user=None, reason: str = "") -> Eval:
    """Run this version in shadow beside the active one; a previous shadow becomes a draft.

    A shadow judges every new trace the active version judges, but its verdicts stay in
    iofold, so two versions can be compared on the same traffic before one is promoted.
    """
    _lock_set(eval.eval_set_id)
    current = Eval.objects.select_for_update().get(pk=eval.pk)
    if current.status == Eval.Status.SHADOW:
        return current
    if current.status == Eval.Status.ACTIVE:
        raise EvalActionError(f"v{current.version} is the active version; shadow another one.")
    if current.status == Eval.Status.ARCHIVED:
        raise EvalActionError(f"v{current.version} is archived; restore it first.")
    _take_the_one(current, Eval.Status.SHADOW, since="shadow_since")
    record_activity(
        verb=Activity.Verb.SHADOWED,
        actor=user,
        eval=current,
        reason=reason,
    )
    logger.info("eval in shadow eval=%s eval_set=%s", current.pk, current.eval_set_id)
    return current


def promote_shadow(*, eval: Eval, user=None, reason: str = "") -> Activation:
    """Make the shadow the active version, only when it beats the active one beyond noise."""
    from evals.execution.shadow import compare_shadow

    if eval.status != Eval.Status.SHADOW:
        raise EvalActionError(f"v{eval.version} is not in shadow.")
    active = (
        Eval.objects.for_workspace(eval.workspace_id)
        .filter(eval_set_id=eval.eval_set_id)
        .active()
        .first()
    )
    if active is not None:
        comparison = compare_shadow(active=active, shadow=eval)
        if not comparison.challenger_wins:
            raise EvalActionError(
                f"v{eval.version} does not beat v{active.version} beyond noise yet "
                f"({comparison.labelled} labelled traces in common); activate it by hand "
                "if you want it anyway."
            )
        reason = reason or (
            f"Beat v{active.version} on {comparison.labelled} labelled new traces: "
            f"{comparison.paired.difference:+.0%} accuracy "
            f"[{comparison.paired.low:+.0%}, {comparison.paired.high:+.0%}], "
            f"mid-p {comparison.paired.p_mid:.3f}."
        )
    return activate_or_roll_back(eval=eval, user=user, reason=reason, verb=Activity.Verb.PROMOTED)


@transaction.atomic
def stop_shadow(*, eval: Eval, user=None) -> Eval:
    """Take a version out of shadow; it becomes a draft again."""
    current = Eval.objects.select_for_update().get(pk=eval.pk)
    if current.status == Eval.Status.SHADOW:
        current.status = Eval.Status.DRAFT
        current.save(update_fields=["status", "updated_at"])
        record_activity(
            verb=Activity.Verb.UNSHADOWED,
            actor=user,
            eval=current,
        )
    return current


@transaction.atomic
def archive_eval(*, eval: Eval, user=None, reason: str = "") -> Eval:
    """Retire a version; archiving the active one leaves the set with no active eval."""
    _lock_set(eval.eval_set_id)
    current = Eval.objects.select_for_update().get(pk=eval.pk)
    if current.status != Eval.Status.ARCHIVED:
        current.status = Eval.Status.ARCHIVED
        current.save(update_fields=["status", "updated_at"])
        record_activity(
            verb=Activity.Verb.ARCHIVED,
            actor=user,
            eval=current,
            reason=reason,
        )
    return current


@transaction.atomic
def restore_eval(*, eval: Eval) -> Eval:
    """Bring an archived version back as a draft."""
    current = Eval.objects.select_for_update().get(pk=eval.pk)
    if current.status == Eval.Status.ARCHIVED:
        current.status = Eval.Status.DRAFT
        current.save(update_fields=["status", "updated_at"])
    return current


def check_code(*, code: str, traces: list[dict], workspace=None) -> list[CodeProblem]:
    """Return what is wrong with eval code: static problems, else errors on a dry run.

    Code that calls judge()/llm() dry-runs with the workspace's judge channel (cached
    answers cost nothing), so a missing provider shows up as a problem here. A request
    waits for the dry run: its jails keep the batch API's ``wait`` limits, judge calls
    or not, so a slow provider is a problem listed, not a request past the server's timeout.
    """
    from evals.execution.batch import wait_limits

    if not code.strip():
        return [CodeProblem(None, "The code is empty.")]
    problems = [CodeProblem(p.line, p.message) for p in sandbox.validate(code)]
    if problems or not traces:
        return problems
    session = (
        JudgeSession(workspace=workspace) if workspace is not None and uses_judge(code) else None
    )
    # Code without judge calls keeps the usual limits: its traces' own timeouts bound it.
    limits = sandbox_limits() if session is None else wait_limits()
    try:
        results = run_sandbox(session, sandbox.run, code, traces, limits, bounded=True).results
    except sandbox.SandboxError as exc:
        raise EvalActionError(
            f"The sandbox could not try the code: {exc.message}", permanent=exc.permanent
        ) from exc
    for trace, result in zip(traces, results, strict=True):
        if result.error:
            problems.append(
                CodeProblem(
                    _error_line(result.error), f"on trace {trace.get('id')}: {result.error}"
                )
            )
    return problems


def _error_line(error: str) -> int | None:
    marker = "(line "
    if marker not in error:
        return None
    digits = error.split(marker, 1)[1].split(" ", 1)[0].rstrip(":)")
    return int(digits) if digits.isdigit() else None


def next_version(eval_set: EvalSet) -> int:
    """Return the next free version number of the set (call inside the set's lock)."""
    top = Eval.objects.for_eval_set(eval_set).aggregate(top=Max("version"))["top"]
    return (top or 0) + 1


def edit_eval_code(*, eval: Eval, code: str, user=None, description: str = "") -> Eval:
    """Save hand-edited code as a new draft version refined from ``eval``.

    The code is validated and dry-run on a few labelled traces first; problems raise
    InvalidEvalCode with line numbers and nothing is saved.
    """
    from traces.selectors import labelled_examples

    code = code.replace("\r\n", "\n")
    if code.strip() == eval.code.strip():
        raise EvalActionError("The code is unchanged.")
    from traces.conversations import eval_payloads

    examples = labelled_examples(eval.eval_set)[:DRY_RUN_TRACES]
    sample = eval_payloads(eval.eval_set, [ex.trace for ex in examples])
    problems = check_code(code=code, traces=sample, workspace=eval.workspace)
    if problems:
        raise InvalidEvalCode(problems)
    with transaction.atomic():
        _lock_set(eval.eval_set_id)
        edited = Eval(
            workspace_id=eval.workspace_id,
            eval_set_id=eval.eval_set_id,
            version=next_version(eval.eval_set),
            parent=eval,
            status=Eval.Status.DRAFT,
            code=code,
            kind=infer_kind(code, eval.kind),
            origin="edited",
            description=description or f"Edited by hand from v{eval.version}",
            created_by=user,
        )
        edited.full_clean()
        edited.save()
    logger.info("eval edited eval=%s parent=%s", edited.pk, eval.pk)
    return edited


def test_again(*, eval: Eval) -> EvalRun:
    """Queue a run of the version over the set's current labelled traces.

    A run of it over the same traces that is still queued or running is returned instead:
    a double click, a second tab or a retried request starts no second run.
    """
    from evals.execution.runs import start_run
    from traces.selectors import labelled_examples

    trace_ids = [ex.trace.pk for ex in labelled_examples(eval.eval_set)]
    if not trace_ids:
        raise EvalActionError("The eval set has no labelled traces to test on.")
    with transaction.atomic():
        _lock_set(eval.eval_set_id)  # two requests at once: the second sees the first's run
        runs = EvalRun.objects.for_workspace(eval.workspace_id).filter(
            eval=eval, trigger=EvalRun.Trigger.MANUAL
        )
        for run in runs.unfinished().order_by("-pk"):
            if set(run.trace_ids) == set(trace_ids):
                return run
        return start_run(eval=eval, trace_ids=trace_ids, trigger=EvalRun.Trigger.MANUAL)
