import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evals.datasets import DatasetError, read_labelled_jsonl
from evals.exceptions import EvalError
from evals.gallery.builtin import BUILTINS
from evals.gallery.services import FIGURES, shareable_metrics
from evals.generation import candidates
from evals.metrics.agreement import agreement
from evals.metrics.measure import measure
from evals.sandboxing import sandbox_limits


def _find_data() -> Path:
    """The nearest shared/data beside a parent directory (as bench/generation.py finds it)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return here.parents[3].parent / "shared" / "data"


DEFAULT_DATA = _find_data()


class Command(BaseCommand):
    help = (
        "Run every built-in gallery template in the sandbox on its task in shared/data and "
        "store the figures beside the templates (evals/gallery/figures.json)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared/data folder")
        parser.add_argument("--check", action="store_true", help="print only; write nothing")

    def handle(self, *args, **options):
        data = Path(options["data"])
        command = "python manage.py measure_gallery"
        figures = {}
        for builtin in BUILTINS:
            file, task, group = builtin.measured_on
            try:
                examples = read_labelled_jsonl(data / file, task=task, group_key=group)
            except (OSError, DatasetError) as exc:
                raise CommandError(f"{data / file}: {exc}") from None
            try:
                results = candidates.test_candidate(builtin.code, examples, sandbox_limits())
            except EvalError as exc:
                raise CommandError(f"{builtin.slug}: {exc.message}") from None
            pairs = [
                (e.label, r.passed if r.error is None else None)
                for e, r in zip(examples, results, strict=True)
            ]
            # Written by hand, not fitted: every trace of the task is held out.
            measurement = measure(
                training=[], heldout=pairs, method="hand-written; every trace held out"
            )
            positives = sum(e.label == "positive" for e in examples)
            majority = positives * 2 >= len(examples)
            baseline = agreement([(e.label, majority) for e in examples]).accuracy
            heldout = measurement.metrics["heldout"]
            figures[builtin.slug] = {
                "metrics": {**shareable_metrics(measurement.metrics), "majority": baseline},
                "command": command,
            }
            self.stdout.write(
                f"{builtin.slug:18} {file}/{task}: {len(examples)} traces, accuracy "
                f"{heldout['accuracy']:.3f}, kappa {heldout['kappa'] or 0:.3f}, "
                f"balanced {heldout['balanced_accuracy'] or 0:.3f}, majority {baseline:.3f}"
            )
        if not options["check"]:
            FIGURES.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
            self.stdout.write(f"wrote {FIGURES}")
        self.stdout.write(json.dumps({k: v["metrics"]["heldout"] for k, v in figures.items()}))
