"""Measure trace minification (traces.minify) on the labelled data in shared/data.

1. Size: approximate tokens (characters / 4, as the prompt budget counts) of every
   generator-visible trace, whole and compact.
2. The LLM-prompt path: generation prompts built from seeded training draws, with and
   without the compact form (same budget): examples shown and prompt tokens.
3. Generation quality through that path: a fake LLM that reads the prompt, parses the
   examples it shows (as the prompt renders them: compact or trimmed) and fits the offline
   synthesiser on exactly those, then answers with the emitted code. The candidate runs
   the real write-validate-dry-run loop (evals.generation.candidates.write_with_llm) and
   is scored on held-out traces, whole, as production evals see them. Whatever the
   prompt loses, this generator cannot learn from.
4. The offline synthesiser fitted on compact vs whole training traces (it never sees a
   prompt), scored on whole held-out traces.

    python bench/minify.py [--quick] [--data DIR] [--seeds N]

Last line of output: one JSON object of headline figures. Needs no database.
"""

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Appended: bench/sandbox.py must not shadow the sandbox package.
sys.path.append(str(ROOT / "bench"))

from generation import DEFAULT_DATA, SUITES, draw, score  # noqa: E402

from evals.datasets import LabelledExample, read_labelled_jsonl  # noqa: E402
from evals.generation import prompts  # noqa: E402
from evals.generation.candidates import write_with_llm  # noqa: E402
from evals.generation.providers.base import Completion, Provider  # noqa: E402
from evals.synthesis import fit  # noqa: E402
from traces.minify import minify_trace  # noqa: E402

BUDGETS = (60_000, 8_000)  # the default IOFOLD_LLM_TOKEN_BUDGET, and a tight one
TRAIN_LABELS = 50
EXAMPLE = re.compile(
    r"### Trace \d+ — (?:AGREEMENT — )?reviewer: (GOOD|BAD)[^\n]*\n[^\n]*\n```json\n(.*?)\n```",
    re.S,
)


def tokens(value) -> int:
    return prompts.approx_tokens(json.dumps(value, ensure_ascii=False, default=str))


class PromptLearner(Provider):
    """A fake LLM: fits the offline synthesiser on the examples its prompt shows."""

    def __init__(self):
        super().__init__(api_key="-", model="prompt-learner")
        self.seen: list[int] = []

    def complete(self, *, system, messages):
        text = messages[0]["content"]
        shown = []
        for n, (word, body) in enumerate(EXAMPLE.findall(text)):
            try:
                trace = json.loads(body)
            except json.JSONDecodeError:
                continue  # cut as a last resort: not JSON any more, nothing to learn
            label = "positive" if word == "GOOD" else "negative"
            shown.append(LabelledExample(trace=trace, label=label, group=str(n)))
        self.seen.append(len(shown))
        if {e.label for e in shown} >= {"positive", "negative"}:
            code = fit(shown).code
        else:
            # Nothing legible of both kinds: all this generator can do is a constant.
            code = 'def eval_fn(trace):\n    return True, "nothing to learn from"\n'

        return Completion(
            text=f"```python\n{code}\n```",
            input_tokens=prompts.approx_tokens(system + text),
            output_tokens=prompts.approx_tokens(code),
            model=self.model,
        )


def run_code(code: str, traces):
    namespace = {}
    exec(compile(code, "<eval>", "exec"), namespace)  # noqa: S102 - our own synthesiser's output
    out = []
    for trace in traces:
        try:
            out.append(bool(namespace["eval_fn"](trace)[0]))
        except Exception:
            out.append(None)
    return out


def llm_path(train, held_out, *, budget: int, minified: bool):
    """Return (prompt tokens, examples shown, held-out figures) through the prompt path."""
    patch = (
        mock.patch.object(prompts, "minify_trace", minify_trace)
        if minified
        else mock.patch.object(prompts, "minify_trace", lambda trace: trace)
    )
    learner = PromptLearner()
    with patch:
        candidate = write_with_llm(
            examples=train,
            criteria="Judge the trace as the reviewers did.",
            llm=learner,
            provider_name="fake",
            token_budget=budget,
            limits=None,
        )
    verdicts = run_code(candidate.code, [e.trace for e in held_out])
    figures = score([(e.label, v) for e, v in zip(held_out, verdicts, strict=True)])
    return candidate.input_tokens, learner.seen[0], figures


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 draw per suite (under a minute)")
    parser.add_argument("--seeds", type=int, default=None, help="draws per suite (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 3)
    started = time.perf_counter()
    headline = {"seeds": seeds, "train_labels": TRAIN_LABELS}

    print("1. Size of the generator-visible traces (approximate tokens)")
    print(f"{'suite':36} {'traces':>6} {'whole':>10} {'compact':>10} {'saved':>7} {'p50 saved':>9}")
    loaded = {}
    all_whole = all_compact = 0
    for filename, task, group_key, _criteria in SUITES:
        path = args.data / filename
        if not path.exists():
            print(f"skip {path}: not found")
            continue
        examples = read_labelled_jsonl(path, task=task, group_key=group_key)
        loaded[(filename, task)] = examples
        whole = [tokens(e.trace) for e in examples]
        compact = [tokens(minify_trace(e.trace)) for e in examples]
        saved = 1 - sum(compact) / sum(whole)
        per = statistics.median(1 - c / w for c, w in zip(compact, whole, strict=True))
        name = f"{filename.removesuffix('.jsonl')}/{task}"
        print(f"{name:36} {len(examples):>6} {sum(whole):>10} {sum(compact):>10} "
              f"{saved:>6.1%} {per:>9.1%}")  # fmt: skip
        key = f"{filename.removesuffix('.jsonl')}_{task}"
        headline[f"{key}_tokens_saved"] = round(saved, 3)
        all_whole += sum(whole)
        all_compact += sum(compact)
    headline["tokens_saved_all"] = round(1 - all_compact / max(all_whole, 1), 3)

    print("\n2-3. Generation prompts and a fake LLM that learns only from what they show")
    header = (
        f"{'suite':36} {'budget':>6} {'mode':>7} {'tokens':>7} {'shown':>5} {'acc':>6} {'kappa':>6}"
    )
    print(header)
    print("-" * len(header))
    deltas = []
    for (filename, task), examples in loaded.items():
        name = f"{filename.removesuffix('.jsonl')}/{task}"
        for budget in BUDGETS:
            results = {}
            for minified in (False, True):
                rows = []
                for seed in range(seeds):
                    train, held_out = draw(examples, TRAIN_LABELS, seed)
                    train = [replace(e, raw={}) for e in train]
                    rows.append(llm_path(train, held_out, budget=budget, minified=minified))
                results[minified] = {
                    "tokens": mean(r[0] for r in rows),
                    "shown": mean(r[1] for r in rows),
                    "accuracy": mean(r[2]["accuracy"] for r in rows),
                    "kappa": mean(r[2]["kappa"] for r in rows),
                }
                r = results[minified]
                mode = "compact" if minified else "whole"
                print(f"{name:36} {budget:>6} {mode:>7} {r['tokens']:>7.0f} {r['shown']:>5.1f} "
                      f"{fmt(r['accuracy'])} {fmt(r['kappa']):>6}")  # fmt: skip
            key = f"{filename.removesuffix('.jsonl')}_{task}_{budget}"
            headline[f"{key}_shown"] = [results[False]["shown"], results[True]["shown"]]
            headline[f"{key}_kappa"] = [
                round(results[False]["kappa"], 3),
                round(results[True]["kappa"], 3),
            ]
            deltas.append(results[True]["kappa"] - results[False]["kappa"])
    headline["llm_path_mean_kappa_delta"] = round(mean(deltas) or 0.0, 3)
    headline["llm_path_worst_kappa_delta"] = round(min(deltas, default=0.0), 3)

    print("\n4. Offline synthesiser fitted on whole vs compact training traces")
    synth = []
    for (filename, task), examples in loaded.items():
        name = f"{filename.removesuffix('.jsonl')}/{task}"
        pair = {}
        for minified in (False, True):
            kappas = []
            for seed in range(seeds):
                train, held_out = draw(examples, TRAIN_LABELS, seed)
                if minified:
                    train = [replace(e, trace=minify_trace(e.trace)) for e in train]
                fitted = fit(train)
                figures = score([(e.label, fitted.predict(e.trace)[0]) for e in held_out])
                kappas.append(figures["kappa"])
            pair[minified] = mean(kappas)
        print(f"  {name:36} kappa whole {fmt(pair[False])}  compact {fmt(pair[True])}")
        synth.append(pair[True] - pair[False])
    headline["synth_mean_kappa_delta"] = round(mean(synth) or 0.0, 3)

    headline["bench_s"] = round(time.perf_counter() - started, 1)
    command = ".venv/bin/python bench/minify.py" + (" --quick" if args.quick else "")
    if args.seeds:
        command += f" --seeds {args.seeds}"
    print(
        "\ntokens: the prompt the fake LLM received; shown: examples it could parse; acc/kappa"
        " on held-out traces, whole. Kappa deltas are compact minus whole."
    )
    print(f"\nreproduce: {command}")
    print(json.dumps(headline, sort_keys=True))


if __name__ == "__main__":
    main()
