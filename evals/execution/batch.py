"""Batch runs for CI: one eval over a batch of traces, sent or stored.

A batch is accepted at once as a run to poll (``start_batch``): stored trace ids become an
ordinary queued run (split into chunks when large), sent traces a run that keeps them and
their verdicts (``execute_sent_batch`` on a worker). A small batch can instead be judged
within the request (``run_batch`` with ``wait_limits``), bounded in size and in time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from django.db import transaction

import sandbox
from evals.exceptions import EvalError, sandbox_failure
from evals.execution.runs import finish_run, run_eval_now, start_run, stored_trace_ids
from evals.judging.runs import open_session, run_sandbox
from evals.models import Eval, EvalExecution, EvalRun, RunStatus
from evals.queue import enqueue_sent_batch
from evals.sandboxing import sandbox_limits
from integrations.adapters.base import validate_normalised_trace
from iofold.lib.runs import keep_alive
from traces.ingest import canonical_trace
from traces.models import Trace

logger = logging.getLogger(__name__)

# Sent traces per batch run (they travel in the request body and are kept on the run).
MAX_BATCH_TRACES = 1000
# Stored trace ids per batch run: a large one is split into chunks that workers share.
MAX_BATCH_TRACE_IDS = 100_000
# A batch judged within the request ("wait": true) holds a web worker: at most this many
# traces, and a jail is killed after WAIT_SECONDS (its unjudged traces get an error; one
# fresh jail at most finishes the rest, so the sandbox takes at most twice that).
MAX_WAIT_TRACES = 100
WAIT_SECONDS = 20


@dataclass
class BatchRun:
    """Per-trace verdicts of one batch run, in the order the traces were given."""

    results: list[dict] = field(default_factory=list)
    invalid: int = 0

    def summary(self) -> dict:
        passed = sum(1 for r in self.results if r["passed"] is True and not r["error"])
        failed = sum(1 for r in self.results if r["passed"] is False and not r["error"])
        errors = sum(1 for r in self.results if r["passed"] is None and not r["invalid"])
        return {
            "total": len(self.results),
            "passed": passed,
            "failed": failed,
            "errors": errors,
            "invalid": self.invalid,
            "ok": failed == 0 and errors == 0 and self.invalid == 0,
        }


def run_batch(
    *,
    eval: Eval,
    traces: Sequence[dict] | None = None,
    trace_ids: Sequence[int] | None = None,
    limits: sandbox.Limits | None = None,
) -> BatchRun:
    """Judge sent traces (not stored) or stored trace ids (verdicts stored) right now.

    Invalid sent traces get an error result instead of failing the whole batch. Raises
    EvalError when the sandbox cannot run, or when ids name no trace of the workspace.
    `limits` given (``wait_limits``, a request waiting) bound every jail as they are,
    judge calls or not.
    """
    batch = BatchRun()
    if trace_ids:
        wanted = list(dict.fromkeys(int(pk) for pk in trace_ids))
        stored = Trace.objects.for_workspace(eval.workspace_id).in_bulk(wanted)
        _check_stored(wanted, stored)
        executions = {
            e.trace_id: e
            for e in run_eval_now(
                eval=eval,
                traces=[stored[pk] for pk in wanted],
                trigger=EvalRun.Trigger.API,
                limits=limits,
                bounded=limits is not None,
            )
        }
        for index, pk in enumerate(wanted):
            e = executions[pk]
            batch.results.append(
                _verdict(index, stored[pk].external_id, e.passed, e.reason, e.error, e.duration_ms)
            )
        return batch
    valid: list[tuple[int, dict]] = []
    for index, raw in enumerate(traces or []):
        problems = validate_normalised_trace(raw)
        if problems:
            batch.invalid += 1
            trace_id = raw.get("id") if isinstance(raw, dict) else None
            result = _verdict(index, str(trace_id or ""), None, "", "; ".join(problems), 0.0)
            result["invalid"] = True
            batch.results.append(result)
            continue
        valid.append((index, canonical_trace(raw)))
    if valid:
        try:
            outcomes = run_sandbox(
                open_session(eval=eval),
                sandbox.run,
                eval.code,
                [t for _, t in valid],
                limits or sandbox_limits(),
                bounded=limits is not None,
            ).results
        except sandbox.SandboxError as exc:
            raise sandbox_failure(exc) from exc
        for (index, trace), outcome in zip(valid, outcomes, strict=True):
            passed = outcome.passed if outcome.error is None else None
            batch.results.append(
                _verdict(
                    index,
                    trace["id"],
                    passed,
                    outcome.reason or "",
                    outcome.error or "",
                    outcome.duration_ms,
                )
            )
    batch.results.sort(key=lambda r: r["index"])
    return batch


def _verdict(index, trace_id, passed, reason, error, duration_ms) -> dict:
    return {
        "index": index,
        "trace_id": trace_id,
        "passed": passed,
        "reason": reason,
        "error": error,
        "duration_ms": duration_ms,
        "invalid": False,
    }


def _check_stored(wanted: Sequence[int], stored) -> None:
    missing = [pk for pk in wanted if pk not in stored]
    if missing:
        shown = ", ".join(str(pk) for pk in missing[:10])
        raise EvalError(f"No trace with id {shown} in this workspace.")


def wait_limits() -> sandbox.Limits:
    """Return the sandbox limits of a batch judged within the request: one short jail."""
    return replace(sandbox_limits(), batch_timeout_s=WAIT_SECONDS, max_restarts=1)


# --- batch runs accepted at once ----------------------------------------------------------


def start_batch(
    *, eval: Eval, traces: Sequence[dict] | None = None, trace_ids: Sequence[int] | None = None
) -> EvalRun:
    """Queue a batch run and return it to poll; nothing is judged in the caller.

    Stored ids become an ordinary run whose verdicts are stored as executions; sent
    traces are kept on the run, judged on a worker, and their verdicts kept with them.
    Raises EvalError when ids name no trace of the workspace.
    """
    if trace_ids:
        wanted = list(dict.fromkeys(int(pk) for pk in trace_ids))
        stored = stored_trace_ids(eval.workspace_id, wanted)
        _check_stored(wanted, stored)
        # The run reuses the ids just read instead of reading them again.
        return start_run(eval=eval, trace_ids=wanted, trigger=EvalRun.Trigger.API, stored=stored)
    sent = list(traces or [])
    with transaction.atomic():
        run = EvalRun.objects.create(
            workspace_id=eval.workspace_id,
            eval=eval,
            trigger=EvalRun.Trigger.API,
            inputs=sent,
            total=len(sent),
        )
        transaction.on_commit(lambda: enqueue_sent_batch(run.pk))
    logger.info(
        "batch run of sent traces queued run=%s eval=%s traces=%d", run.pk, eval.pk, len(sent)
    )
    return run


def execute_sent_batch(*, run_id: int) -> EvalRun | None:
    """Judge a queued batch run's sent traces and keep their verdicts on the run.

    Safe to call twice: a run claimed by a live worker, or finished, is left alone.
    Raises EvalError when the sandbox cannot run (TransientEvalError when retrying can
    help, after putting the run back in the queue).
    """
    if EvalRun.objects.filter(inputs__isnull=False).claim(run_id) is None:
        return EvalRun.objects.filter(pk=run_id).first()
    run = EvalRun.objects.select_related("eval").get(pk=run_id)
    with keep_alive(run):
        try:
            batch = run_batch(eval=run.eval, traces=run.inputs)
        except EvalError as exc:
            if not exc.permanent:
                EvalRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
                    status=RunStatus.QUEUED, owner=""
                )
            raise
    summary = batch.summary()
    EvalRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, owner=run.owner).update(
        results=batch.results,
        done=summary["total"],
        passed=summary["passed"],
        failed=summary["failed"],
        errors=summary["errors"] + summary["invalid"],
    )
    return finish_run(run=run)


def batch_outcome(run: EvalRun) -> tuple[dict, list[dict] | None] | None:
    """Return a finished batch run's summary and per-trace verdicts; None until it succeeds.

    Verdicts of stored traces are their current executions by this version, listed when
    the run covers at most MAX_BATCH_TRACES traces (page through
    /api/v1/evals/<id>/executions/ for more).
    """
    if run.status != RunStatus.SUCCEEDED:
        return None
    if run.inputs is not None:
        results = run.results or []
        batch = BatchRun(results=results, invalid=sum(1 for r in results if r["invalid"]))
        return batch.summary(), results
    summary = {
        "total": run.total,
        "passed": run.passed,
        "failed": run.failed,
        "errors": run.errors,
        "invalid": 0,
        "ok": run.failed == 0 and run.errors == 0,
    }
    if run.total > MAX_BATCH_TRACES:
        return summary, None
    executions = EvalExecution.objects.filter(eval_id=run.eval_id, trace_id__in=run.trace_ids)
    by_trace = {e.trace_id: e for e in executions.select_related("trace")}
    results = [
        _verdict(index, e.trace.external_id, e.passed, e.reason, e.error, e.duration_ms)
        for index, pk in enumerate(run.trace_ids)
        if (e := by_trace.get(pk)) is not None
    ]
    return summary, results
