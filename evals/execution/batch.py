"""Batch runs for CI: one eval over a batch of traces, verdicts returned at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import sandbox
from evals.exceptions import EvalError
from evals.execution.runs import run_eval_now
from evals.models import Eval, EvalRun
from evals.sandboxing import metered, sandbox_limits
from integrations.adapters.base import validate_normalised_trace
from traces.ingest import canonical_trace
from traces.models import Trace

logger = logging.getLogger(__name__)

# A batch run answers within one request: one sandbox call over at most this many traces.
MAX_BATCH_TRACES = 1000


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
) -> BatchRun:
    """Judge sent traces (not stored) or stored trace ids (verdicts stored) right now.

    Invalid sent traces get an error result instead of failing the whole batch. Raises
    EvalError when the sandbox cannot run, or when ids name no trace of the workspace.
    """
    batch = BatchRun()
    if trace_ids:
        wanted = list(dict.fromkeys(int(pk) for pk in trace_ids))
        stored = Trace.objects.for_workspace(eval.workspace_id).in_bulk(wanted)
        missing = [pk for pk in wanted if pk not in stored]
        if missing:
            shown = ", ".join(str(pk) for pk in missing[:10])
            raise EvalError(f"No trace with id {shown} in this workspace.")
        executions = {
            e.trace_id: e
            for e in run_eval_now(
                eval=eval, traces=[stored[pk] for pk in wanted], trigger=EvalRun.Trigger.API
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
            outcomes = metered(sandbox.run, eval.code, [t for _, t in valid], sandbox_limits())
        except sandbox.SandboxError as exc:
            raise EvalError(
                f"The sandbox could not run the eval: {exc.message}", permanent=exc.permanent
            ) from exc
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
