"""Export an eval version as a standalone script, and a whole eval set as JSON."""

import csv
import io
import json
from collections import Counter, defaultdict

from evals.judging.export import judge_requirements, judge_shim
from evals.judging.runs import uses_judge
from evals.models import Eval
from traces.models import EvalSet, Feedback, Trace

EXPORT_FORMAT = "iofold.eval-set/1"

CONTRACT = """\
Contract: eval_fn(trace: dict) -> tuple[bool, str]
  True when the trace is good; the string says why, for a human.
  `trace` is iofold's normalised trace: id, name, timestamp, input, output,
  steps [{id, parent_id, type, name, input, output, error, model, usage,
  start_time, end_time, metadata}], metadata, tags, user_id, session_id,
  latency_ms, cost."""

MAIN = """

# --- command line: python this_file.py [traces.jsonl] ------------------------------------
# Reads one JSON trace per line (from the file, or stdin when no file or "-" is given)
# and prints one JSON verdict per line: {"id", "passed", "reason", "error"}.
# "passed" is null when eval_fn raised or returned something other than (bool, str).


def _iofold_verdict(trace):
    try:
        value = eval_fn(trace)
    except Exception as exc:  # report it per trace, as iofold's sandbox does
        return None, "", f"{type(exc).__name__}: {exc}"
    if not (isinstance(value, tuple) and len(value) == 2):
        return None, "", f"eval_fn must return a tuple (bool, str); it returned {value!r:.200}"
    passed, reason = value
    if not isinstance(passed, bool) or not isinstance(reason, str):
        return None, "", "eval_fn must return (bool, str)"
    return passed, reason, None


def _iofold_main(argv):
    import json as _json
    import sys as _sys

    path = argv[1] if len(argv) > 1 else "-"
    stream = _sys.stdin if path == "-" else open(path, encoding="utf-8")
    failed = 0
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                trace = _json.loads(line)
            except ValueError as exc:
                print(f"line {number}: not JSON: {exc}", file=_sys.stderr)
                failed = 1
                continue
            passed, reason, error = _iofold_verdict(trace)
            trace_id = trace.get("id") if isinstance(trace, dict) else None
            verdict = {"id": trace_id, "passed": passed, "reason": reason, "error": error}
            print(_json.dumps(verdict, ensure_ascii=False), flush=True)
    return failed


if __name__ == "__main__":
    import sys

    raise SystemExit(_iofold_main(sys.argv))
"""


def _docstring(text: str) -> str:
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '\n"""'


def _metric_lines(eval: Eval) -> list[str]:
    lines = []
    for scope in ("training", "heldout"):
        figures = (eval.metrics or {}).get(scope) or {}
        if not figures:
            continue
        parts = []
        for key in ("accuracy", "precision", "recall", "f1", "kappa"):
            value = figures.get(key)
            if isinstance(value, int | float):
                parts.append(f"{key} {value:.3f}")
        if figures.get("labelled") is not None:
            parts.append(f"on {figures['labelled']} labels")
        lines.append(f"  {scope}: " + (", ".join(parts) or "not computed"))
    if not lines and eval.agreement is not None:
        lines.append(f"  agreement {eval.agreement:.3f} on {eval.labels_tested} labels")
    return lines or ["  not measured yet"]


def eval_filename(eval: Eval) -> str:
    from django.utils.text import slugify

    return f"{slugify(eval.eval_set.name) or 'eval'}_v{eval.version}.py"


def export_eval_script(eval: Eval) -> str:
    """Return a Python file that defines the eval and runs it on JSONL traces by itself."""
    eval_set = eval.eval_set
    made = ", ".join(x for x in (eval.provider, eval.model) if x) or "by hand"
    header = "\n".join(
        [
            f"{eval_set.name}, version {eval.version} ({eval.get_status_display().lower()}).",
            "",
            "Exported from iofold. Criteria (what makes a trace good):",
            "",
            *[f"  {line}" for line in eval_set.criteria.splitlines()],
            "",
            f"Made: {eval.origin} ({made}), {eval.created_at:%Y-%m-%d %H:%M} UTC"
            + (f", refined from version {eval.parent.version}" if eval.parent_id else ""),
            f"Agreement with the reviewers ({eval.labels_tested} labelled traces):",
            *_metric_lines(eval),
            "",
            CONTRACT,
            "",
            *([*judge_requirements(eval), ""] if uses_judge(eval.code) else []),
            "Run: python this_file.py traces.jsonl   (or pipe JSON lines into stdin)",
        ]
    )
    code = eval.code.rstrip("\n")
    shim = judge_shim(eval) if uses_judge(eval.code) else ""
    return f"{_docstring(header)}\n{shim}\n{code}\n{MAIN}"


def export_eval_set(eval_set: EvalSet) -> dict:
    """Return the eval set with every reviewer's labels, the traces and all versions."""
    feedback = (
        Feedback.objects.filter(eval_set=eval_set)
        .select_related("user")
        .order_by("trace_id", "created_at", "id")
    )
    by_trace: dict[int, list[Feedback]] = defaultdict(list)
    for fb in feedback:
        by_trace[fb.trace_id].append(fb)
    from traces.conversations import eval_payloads
    from traces.services import resolve_label

    traces = Trace.objects.for_workspace(eval_set.workspace_id).in_bulk(list(by_trace))
    # What the eval judged for each label: the trace, or in a conversation set the whole
    # conversation (docs/conversations.md).
    payloads = dict(zip(traces, eval_payloads(eval_set, list(traces.values())), strict=True))
    labels = []
    for trace_id, items in by_trace.items():
        trace = traces.get(trace_id)
        if trace is None:
            continue
        labels.append(
            {
                "trace_id": trace.pk,
                "external_id": trace.external_id,
                "source": trace.source,
                "label": resolve_label(Counter(fb.rating for fb in items)),
                "feedback": [
                    {
                        "reviewer": fb.user.email,
                        "rating": fb.rating,
                        "note": fb.note,
                        "at": fb.updated_at.isoformat(),
                    }
                    for fb in items
                ],
                "trace": payloads[trace.pk],
            }
        )
    versions = [
        {
            "version": v.version,
            "parent_version": v.parent.version if v.parent_id else None,
            "status": v.status,
            "origin": v.origin,
            "provider": v.provider,
            "model": v.model,
            "prompt_version": v.prompt_version,
            "agreement": v.agreement,
            "labels_tested": v.labels_tested,
            "metrics": v.metrics,
            "cost_usd": str(v.cost_usd) if v.cost_usd is not None else None,
            "created_at": v.created_at.isoformat(),
            "activated_at": v.activated_at.isoformat() if v.activated_at else None,
            "code": v.code,
        }
        for v in Eval.objects.for_eval_set(eval_set).select_related("parent").order_by("version")
    ]
    return {
        "format": EXPORT_FORMAT,
        "eval_set": {
            "name": eval_set.name,
            "criteria": eval_set.criteria,
            "target_labels": eval_set.target_labels,
            "source_kind": eval_set.source_kind,
            "saved_filter": eval_set.saved_filter,
            "unit": eval_set.unit,
            "conversation_idle_minutes": eval_set.conversation_idle_minutes,
            "created_at": eval_set.created_at.isoformat(),
        },
        "labels": labels,
        "versions": versions,
    }


def export_eval_set_json(eval_set: EvalSet) -> str:
    return json.dumps(export_eval_set(eval_set), indent=2, ensure_ascii=False, default=str)


# The whole matrix, not a page: a labelled set is a few thousand traces at most.
MATRIX_CSV_ROWS = 100_000


# What a spreadsheet takes for the start of a formula (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_text(text: str) -> str:
    """Return text a source or a reviewer wrote, quoted when a spreadsheet would run it."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def matrix_csv(matrix) -> str:
    """The comparison matrix as CSV for a person to read in a spreadsheet.

    Each stored value (``positive``, ``true``) sits beside its word in the one vocabulary
    (``good``, ``pass``; traces/vocabulary.py): a script keeps reading the stored column,
    a person the word.
    """
    from traces.vocabulary import label_word, verdict_word

    out = io.StringIO()
    # A byte-order mark: without one, Excel reads the file in the system's code page and
    # notes in Arabic or Chinese turn to mojibake. Text cells that start like a formula
    # (a trace name a source sent) are shown, not run.
    out.write("\ufeff")
    writer = csv.writer(out)
    header = ["trace_id", "external_id", "name", "label", "label_word", "notes"]
    for column in matrix.columns:
        header += [f"v{column.eval.version}_passed", f"v{column.eval.version}_verdict"]
    writer.writerow(header)
    for row in matrix.rows:
        line = [
            row.trace.pk,
            _spreadsheet_text(row.trace.external_id),
            _spreadsheet_text(row.trace.name),
            row.label,
            label_word(row.label),
            _spreadsheet_text(" | ".join(row.notes)),
        ]
        for cell in row.cells:
            if cell.execution is None:
                line += ["", "not run"]
            else:
                passed = cell.execution.passed
                line += ["" if passed is None else str(passed).lower(), verdict_word(passed)]
        writer.writerow(line)
    return out.getvalue()
