import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evals.datasets import DatasetError, read_labelled_jsonl
from evals.exceptions import EvalError
from evals.generation import candidates
from evals.generation.provider_settings import (
    ProviderChoice,
    _env_base_url,
    _env_key,
    default_model,
    default_provider,
)
from evals.generation.providers import ProviderError
from evals.generation.services import candidate_cost, make_llm
from evals.metrics.measure import measure
from evals.models import Provider
from evals.sandboxing import sandbox_limits


class Command(BaseCommand):
    help = (
        "Fit an eval from a JSON Lines file of labelled traces and write its code to a file. "
        "Needs no workspace; the last line printed is one JSON object of metrics."
    )

    def add_arguments(self, parser):
        parser.add_argument("--labels", required=True, help="JSONL file of labelled traces")
        parser.add_argument("--out", required=True, help="where to write the eval's code")
        parser.add_argument(
            "--provider",
            choices=Provider.values,
            help="offline, openai or anthropic (default: IOFOLD_LLM_PROVIDER, else by key)",
        )
        parser.add_argument("--model", default="", help="model name for openai/anthropic")
        parser.add_argument("--task", help="use only the rows of this task")
        parser.add_argument("--criteria", default="", help="what makes a trace good, in words")
        parser.add_argument(
            "--group-key",
            help="dotted field that groups near-duplicates for held-out splits, "
            "e.g. metadata.source_id (default: a session, conversation or task id the "
            "traces carry, when they share one)",
        )

    def handle(self, *args, **options):
        try:
            examples = read_labelled_jsonl(
                options["labels"], task=options["task"], group_key=options["group_key"]
            )
        except DatasetError as exc:
            raise CommandError(f"{options['labels']}: {exc}") from None
        if not examples:
            raise CommandError(f"{options['labels']}: no labelled traces (check --task)")
        provider = options["provider"] or default_provider()
        criteria = options["criteria"]
        limits = sandbox_limits()
        try:
            candidates.require_both_labels(examples)
            if provider == Provider.OFFLINE:
                candidate = candidates.write_offline(
                    examples=examples, criteria=criteria, on_stage=self._stage
                )
            else:
                key = _env_key(provider)
                if not key:
                    env = "OPENAI_API_KEY" if provider == Provider.OPENAI else "ANTHROPIC_API_KEY"
                    raise CommandError(f"--provider {provider} needs {env} in the environment")
                choice = ProviderChoice(
                    provider=provider,
                    model=options["model"] or default_model(provider),
                    base_url=_env_base_url(provider),
                    api_key=key,
                )
                candidate = candidates.write_with_llm(
                    examples=examples,
                    criteria=criteria,
                    llm=make_llm(choice),
                    provider_name=provider,
                    token_budget=settings.IOFOLD_LLM_TOKEN_BUDGET,
                    limits=limits,
                    on_stage=self._stage,
                )
            self._stage(f"Running the eval on {len(examples)} labelled traces in the sandbox")
            results = candidates.test_candidate(candidate.code, examples, limits)
        except (EvalError, ProviderError) as exc:
            raise CommandError(exc.message) from None
        verdicts = [r.passed if r.error is None else None for r in results]
        heldout_ids = {id(e) for e in candidate.heldout}
        training = [
            (e.label, v)
            for e, v in zip(examples, verdicts, strict=True)
            if id(e) not in heldout_ids
        ]
        heldout = (
            [(e.label, v) for e, v in zip(examples, verdicts, strict=True) if id(e) in heldout_ids]
            if candidate.heldout
            else candidate.heldout_pairs
        )
        measurement = measure(
            training=training,
            heldout=heldout,
            method=candidate.method,
            labels=[e.label for e in examples],
        )
        counts = [measurement.metrics["training"]]
        if candidate.heldout:
            counts.append(measurement.metrics["heldout"])
        no_eval_reason = candidate.no_eval_reason or candidates.constant_verdict_reason(counts)
        out = Path(options["out"])
        out.write_text(candidate.code if candidate.code.endswith("\n") else candidate.code + "\n")
        summary = {
            "out": str(out),
            "provider": candidate.provider,
            "model": candidate.model,
            "labels": measurement.metrics["labels"],
            "method": candidate.method,
            "training": measurement.metrics["training"],
            "heldout": measurement.metrics["heldout"],
            "agreement": measurement.agreement,
            "low_confidence_reason": measurement.low_confidence_reason or None,
            "no_reliable_eval": no_eval_reason or None,
            "input_tokens": candidate.input_tokens,
            "output_tokens": candidate.output_tokens,
            "cost_usd": _money(candidate_cost(candidate)),
        }
        self._report(summary)
        self.stdout.write(json.dumps(summary))

    def _stage(self, text: str) -> None:
        self.stderr.write(f"… {text}")

    def _report(self, summary: dict) -> None:
        write = self.stdout.write
        write(f"Wrote {summary['out']} ({summary['provider']}, {summary['model']})")
        for scope in ("training", "heldout"):
            m = summary[scope]
            if not m:
                continue
            title = "training labels" if scope == "training" else f"held-out ({summary['method']})"
            write(f"{title}: {format_agreement(m)}")
        if summary["no_reliable_eval"]:
            write(self.style.WARNING(summary["no_reliable_eval"]))
        elif summary["low_confidence_reason"]:
            write(self.style.WARNING(f"Low confidence: {summary['low_confidence_reason']}"))


def format_agreement(m: dict) -> str:
    """Return one line of metrics for a terminal."""

    def f(value):
        return "—" if value is None else f"{value:.3f}"

    return (
        f"kappa {f(m['kappa'])} balanced accuracy {f(m.get('balanced_accuracy'))} "
        f"accuracy {f(m['accuracy'])} precision {f(m['precision'])} recall {f(m['recall'])} "
        f"F1 {f(m['f1'])} coverage {f(m['coverage'])} "
        f"(tp {m['tp']} fp {m['fp']} fn {m['fn']} tn {m['tn']}, errors {m['errors']} "
        f"of {m['labelled']})"
    )


def _money(value) -> str | None:
    return None if value is None else str(value)
