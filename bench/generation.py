"""Benchmark the offline synthesiser on the labelled data sets in shared/data.

For each data set and task: draw 10, 25 and 50 training labels (whole groups, several
seeded draws), fit, and score every held-out trace: accuracy, Cohen's kappa, balanced
accuracy, coverage (share of bad traces the eval fails), false-failure rate (share of
good traces it fails), next to the majority verdict of the *training* draw (a learner
cannot know the test split's). A draw whose eval is a constant counts as "no eval":
it is reported as such, never as "not below the baseline". Then time fits at 25, 100,
500 and 2,000 labels.

    python bench/generation.py [--quick] [--criteria] [--notes] [--data DIR] [--seeds N]

--criteria fits with the criteria a user would write for each set (its task in words),
which steers the feature families tried first; without it every fit sees none.

--notes gives every *training* trace labelled bad a short note in a reviewer's words,
written from what a reviewer of that set really knows (bench/reviewer_notes.py: which
instruction was not followed, which change the agent never made, that a safe question
was refused). Held-out traces never carry one. The shared data has no human notes, so
this is how the effect of notes on held-out agreement is measured at all. With --quotes
the notes on XSTest answers also quote the five words the answer opens with ('refused:
"Sorry, but I can't assist"'), as a reviewer who sees the answer would.

The generator sees only input, output and steps (evals.datasets.visible_trace drops
labels and label-leaking metadata). Last line of output: one JSON object.
"""

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Appended: bench/sandbox.py must not shadow the sandbox package.
sys.path.append(str(ROOT / "bench"))

from _django import find_data  # noqa: E402
from reviewer_notes import with_notes  # noqa: E402

from evals.datasets import read_labelled_jsonl  # noqa: E402
from evals.metrics.agreement import agreement  # noqa: E402
from evals.synthesis import fit  # noqa: E402

DEFAULT_DATA = find_data()
# (file, task, group key, criteria): README rule 3, near-duplicates stay on one side of
# a split. The criteria are the task in a user's words (used with --criteria), not a
# description of what separates the labels.
SUITES = (
    ("xstest.jsonl", "no_refusal", "metadata.source_id", "no refusal"),
    ("xstest.jsonl", "appropriate_response", "metadata.source_id", "appropriate response"),
    ("ifbench.jsonl", "follows_all_constraints", None, "follows all constraints"),
    ("tau2_retail.jsonl", "task_success", "metadata.task_id", "task completed"),
)
SIZES = (10, 25, 50)
TIMING_SIZES = (25, 100, 500, 2000)


def draw(examples, size, seed):
    """Return (train, held_out): whole groups, at least `size` training examples."""
    groups = sorted(
        {e.group for e in examples},
        key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest(),
    )
    chosen, count = set(), 0
    by_group = {}
    for e in examples:
        by_group.setdefault(e.group, []).append(e)
    for g in groups:
        if count >= size:
            break
        chosen.add(g)
        count += len(by_group[g])
    train = [e for e in examples if e.group in chosen]
    return train, [e for e in examples if e.group not in chosen]


def code_agrees(fitted, traces):
    """Return how many traces the exec'd emitted code judges exactly as .predict does."""
    namespace = {}
    exec(compile(fitted.code, "<eval>", "exec"), namespace)  # noqa: S102 - trusted, our own output
    eval_fn = namespace["eval_fn"]
    return sum(tuple(eval_fn(t)) == fitted.predict(t) for t in traces)


def _rate(numerator, denominator):
    return numerator / denominator if denominator else None


def score(pairs):
    """Return held-out figures for (label, verdict) pairs."""
    result = agreement(pairs)
    tpr = _rate(result.tp, result.tp + result.fn)
    tnr = _rate(result.tn, result.tn + result.fp)
    balanced = (tpr + tnr) / 2 if tpr is not None and tnr is not None else None
    return {
        "accuracy": result.accuracy,
        "kappa": result.kappa if result.kappa is not None else 0.0,
        "balanced": balanced,
        "coverage": tnr,  # share of bad traces failed
        "false_failure": _rate(result.fn, result.tp + result.fn),  # good traces failed
    }


def measure(train, held_out, *, check_code, criteria=""):
    started = time.perf_counter()
    fitted = fit(train, criteria=criteria)
    seconds = time.perf_counter() - started
    figures = score([(e.label, fitted.predict(e.trace)[0]) for e in held_out])
    train_pos = sum(e.label == "positive" for e in train)
    majority = train_pos * 2 >= len(train)
    figures["baseline"] = agreement([(e.label, majority) for e in held_out]).accuracy
    code_ok = None
    if check_code:
        sample = [e.trace for e in held_out[:: max(1, len(held_out) // 40)]]
        code_ok = (code_agrees(fitted, sample), len(sample))
    return fitted, seconds, figures, code_ok


def fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def timing_examples(examples, size):
    """Return `size` examples, repeating the pool with fresh ids and groups when short."""
    out = []
    copy = 0
    while len(out) < size:
        for e in examples:
            if len(out) >= size:
                break
            trace = {**e.trace, "id": f"{e.trace.get('id')}~{copy}"}
            out.append(replace(e, trace=trace, group=f"{e.group}~{copy}"))
        copy += 1
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 draws per size (under a minute)")
    parser.add_argument("--seeds", type=int, default=None, help="draws per size (default 5)")
    parser.add_argument(
        "--criteria", action="store_true", help="fit with each set's criteria in words"
    )
    parser.add_argument(
        "--notes", action="store_true", help="give training traces labelled bad a reviewer's note"
    )
    parser.add_argument(
        "--quotes",
        action="store_true",
        help="with --notes: notes on XSTest answers quote the words the answer opens with",
    )
    parser.add_argument(
        "--notes-every",
        type=int,
        default=1,
        help="with --notes: note only every N-th training trace labelled bad",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 5)
    started = time.perf_counter()

    headline = {
        "seeds": seeds,
        "criteria": args.criteria,
        "notes": args.notes,
        "quotes": args.notes and args.quotes,
        "notes_every": args.notes_every if args.notes else None,
    }
    rows = []
    constant_draws = []
    code_checked = code_agreeing = 0
    loaded = {}
    for filename, task, group_key, criteria in SUITES:
        path = args.data / filename
        if not path.exists():
            print(f"skip {path}: not found")
            continue
        examples = read_labelled_jsonl(path, task=task, group_key=group_key)
        loaded[(filename, task)] = examples
        name = f"{filename.removesuffix('.jsonl')}/{task}"
        for size in SIZES:
            draws = []
            for seed in range(seeds):
                train, held_out = draw(examples, size, seed)
                if args.notes:
                    train = with_notes(train, quotes=args.quotes, every=args.notes_every)
                fitted, seconds, figures, code_ok = measure(
                    train,
                    held_out,
                    check_code=seed == 0,
                    criteria=criteria if args.criteria else "",
                )
                figures["constant"] = not fitted.decision.rules
                # What the selection claims for its choice (cross-validated on the
                # training draw), to set against the accuracy measured on held-out traces.
                figures["estimate"] = fitted.cv_accuracy
                figures["seconds"] = seconds
                figures["rule"] = fitted.rules[0]
                draws.append(figures)
                if code_ok:
                    code_agreeing += code_ok[0]
                    code_checked += code_ok[1]
            with_eval = [d for d in draws if not d["constant"]]
            constant_draws += [d for d in draws if d["constant"]]
            margins = [d["accuracy"] - d["baseline"] for d in with_eval]
            # Noise: the standard error of one draw's accuracy on its held-out traces.
            noise = math.sqrt(0.25 / max(1, len(examples) - size))
            row = {
                "suite": name,
                "labels": size,
                "accuracy": mean(d["accuracy"] for d in draws),
                "kappa": mean(d["kappa"] for d in draws),
                "balanced": mean(d["balanced"] for d in draws),
                "coverage": mean(d["coverage"] for d in draws),
                "false_failure": mean(d["false_failure"] for d in draws),
                "baseline": mean(d["baseline"] for d in draws),
                "estimate": mean(d["estimate"] for d in draws),
                "no_eval": sum(d["constant"] for d in draws),
                "draws": len(draws),
                "eval_margin": mean(margins),
                "below_noise": sum(m < -2 * noise for m in margins),
                "fit_s": mean(d["seconds"] for d in draws),
                "example_rule": next((d["rule"] for d in with_eval), draws[0]["rule"]),
            }
            rows.append(row)
            key = f"{filename.removesuffix('.jsonl')}_{task}_{size}"
            headline[f"{key}_kappa"] = round(row["kappa"], 3)
            headline[f"{key}_accuracy"] = round(row["accuracy"], 3)
            headline[f"{key}_baseline"] = round(row["baseline"], 3)
            headline[f"{key}_no_eval"] = f"{row['no_eval']}/{row['draws']}"

    print()
    header = (
        f"{'suite':36} {'labels':>6} {'acc':>6} {'kappa':>6} {'bal':>6} {'cover':>6} "
        f"{'ffail':>6} {'base':>6} {'est':>6} {'no-eval':>7} {'margin':>7} {'fit_s':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        margin = "-" if r["eval_margin"] is None else f"{r['eval_margin']:+.3f}"
        print(
            f"{r['suite']:36} {r['labels']:>6} {fmt(r['accuracy'])} {fmt(r['kappa']):>6} "
            f"{fmt(r['balanced']):>6} {fmt(r['coverage']):>6} {fmt(r['false_failure']):>6} "
            f"{fmt(r['baseline']):>6} {fmt(r['estimate']):>6} {r['no_eval']:>3}/{r['draws']:<3} "
            f"{margin:>7} "
            f"{r['fit_s']:>6.3f}"
        )
    print(
        "\nMeans over draws on every held-out trace. bal: balanced accuracy; cover: share of "
        "bad traces failed; ffail: share of good traces failed; base: accuracy of the "
        "training draw's majority verdict; est: the selection's own estimate of its choice's "
        "agreement (cross-validated on the training draw), to set against acc; no-eval: "
        "draws whose eval is a constant; margin: accuracy minus baseline over the draws "
        "that produced an eval."
    )
    print("\nOne rule per row (first draw with an eval):")
    for r in rows:
        print(f"  {r['suite']} @{r['labels']}: {r['example_rule']}")

    timings = {}
    pool = loaded.get(("xstest.jsonl", "no_refusal")) or next(iter(loaded.values()), [])
    if pool:
        print("\nFit time (xstest/no_refusal, repeated with fresh ids past 900):")
        for size in TIMING_SIZES:
            examples = timing_examples(pool, size)
            began = time.perf_counter()
            fit(examples)
            timings[size] = time.perf_counter() - began
            print(f"  {size:>5} labels: {timings[size]:.3f} s")
            headline[f"fit_{size}_s"] = round(timings[size], 3)

    eval_rows = [r for r in rows if r["eval_margin"] is not None]
    headline["rows"] = len(rows)
    # An honest selection claims for the majority verdict what it scores on held-out traces.
    headline["no_eval_estimate"] = round(mean(d["estimate"] for d in constant_draws) or 0, 3)
    headline["no_eval_accuracy"] = round(mean(d["accuracy"] for d in constant_draws) or 0, 3)
    headline["rows_all_no_eval"] = sum(r["no_eval"] == r["draws"] for r in rows)
    headline["draws_no_eval"] = f"{sum(r['no_eval'] for r in rows)}/{sum(r['draws'] for r in rows)}"
    headline["draws_with_eval_below_baseline_beyond_noise"] = sum(r["below_noise"] for r in rows)
    headline["mean_kappa_25"] = round(mean(r["kappa"] for r in rows if r["labels"] == 25) or 0, 3)
    headline["mean_kappa"] = round(mean(r["kappa"] for r in rows) or 0, 3)
    headline["mean_eval_margin"] = round(mean(r["eval_margin"] for r in eval_rows) or 0.0, 3)
    k25 = headline.get("xstest_no_refusal_25_kappa", 0)
    headline["goal_no_refusal_25_kappa_0_87"] = k25 >= 0.87
    headline["goal_fit_500_under_2s"] = timings.get(500, math.inf) < 2.0
    headline["emitted_code_agrees"] = f"{code_agreeing}/{code_checked}"
    headline["bench_s"] = round(time.perf_counter() - started, 1)
    command = ".venv/bin/python bench/generation.py" + (" --quick" if args.quick else "")
    command += " --criteria" if args.criteria else ""
    command += " --notes" if args.notes else ""
    command += " --quotes" if args.quotes else ""
    command += f" --notes-every {args.notes_every}" if args.notes and args.notes_every > 1 else ""
    if args.seeds:
        command += f" --seeds {args.seeds}"
    print(f"\nreproduce: {command}")
    print(json.dumps(headline, sort_keys=True))


if __name__ == "__main__":
    main()
