import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

import sandbox
from evals.datasets import DatasetError, read_labelled_jsonl
from evals.exceptions import EvalError
from evals.generation import candidates
from evals.management.commands.fit_eval import format_agreement
from evals.metrics.measure import measure
from evals.sandboxing import sandbox_limits


class Command(BaseCommand):
    help = (
        "Run an eval file in the sandbox on a JSON Lines file of labelled traces and print "
        "its agreement with the labels; the last line printed is one JSON object."
    )

    def add_arguments(self, parser):
        parser.add_argument("--eval", required=True, help="Python file defining eval_fn")
        parser.add_argument("--labels", required=True, help="JSONL file of labelled traces")
        parser.add_argument("--task", help="use only the rows of this task")

    def handle(self, *args, **options):
        path = Path(options["eval"])
        try:
            code = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        problems = sandbox.validate(code)
        if problems:
            listed = "; ".join(f"line {p.line}, column {p.column}: {p.message}" for p in problems)
            raise CommandError(f"{path} is not a valid eval: {listed}")
        try:
            examples = read_labelled_jsonl(options["labels"], task=options["task"])
        except DatasetError as exc:
            raise CommandError(f"{options['labels']}: {exc}") from None
        if not examples:
            raise CommandError(f"{options['labels']}: no labelled traces (check --task)")
        try:
            results = candidates.test_candidate(code, examples, sandbox_limits())
        except EvalError as exc:
            raise CommandError(exc.message) from None
        pairs = [
            (e.label, r.passed if r.error is None else None)
            for e, r in zip(examples, results, strict=True)
        ]
        measurement = measure(training=pairs, labels=[e.label for e in examples])
        metrics = measurement.metrics["training"]
        errors = [
            (e.trace.get("id"), r.error) for e, r in zip(examples, results, strict=True) if r.error
        ]
        self.stdout.write(f"{path} on {len(examples)} traces: {format_agreement(metrics)}")
        for trace_id, error in errors[:5]:
            self.stdout.write(f"  error on {trace_id}: {error.splitlines()[0][:200]}")
        if measurement.low_confidence_reason:
            self.stdout.write(
                self.style.WARNING(f"Low confidence: {measurement.low_confidence_reason}")
            )
        summary = {
            "eval": str(path),
            "labels": measurement.metrics["labels"],
            **metrics,
            "low_confidence_reason": measurement.low_confidence_reason or None,
        }
        self.stdout.write(json.dumps(summary))
