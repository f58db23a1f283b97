"""Benchmark the offline synthesiser on the labelled data sets in shared/data.

For each data set and task: draw 10, 25 and 50 training labels (whole groups, several
seeded draws), fit, and measure agreement on every held-out trace next to the
majority-class baseline of the same draw. Also time a 500-label fit.

    python bench/generation.py [--quick] [--data DIR] [--seeds N]

The generator sees only input, output and steps (evals.datasets.visible_trace drops
labels and label-leaking metadata). Last line of output: one JSON object.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evals.datasets import read_labelled_jsonl  # noqa: E402
from evals.metrics import agreement  # noqa: E402
from evals.synthesis import fit  # noqa: E402

DEFAULT_DATA = Path(
    os.environ.get(
        "IOFOLD_BENCH_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
)
# (file, task, group key): README rule 3, XSTest prompts appear once per model.
SUITES = (
    ("xstest.jsonl", "no_refusal", "metadata.source_id"),
    ("xstest.jsonl", "appropriate_response", "metadata.source_id"),
    ("ifbench.jsonl", "follows_all_constraints", None),
)
SIZES = (10, 25, 50)
BIG = 500


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


def measure(train, held_out, *, check_code):
    started = time.perf_counter()
    fitted = fit(train)
    seconds = time.perf_counter() - started
    pairs = [(e.label, fitted.predict(e.trace)[0]) for e in held_out]
    result = agreement(pairs)
    train_pos = sum(e.label == "positive" for e in train)
    majority = train_pos * 2 >= len(train)
    baseline = agreement([(e.label, majority) for e in held_out])
    code_ok = None
    if check_code:
        sample = [e.trace for e in held_out[:: max(1, len(held_out) // 40)]]
        code_ok = (code_agrees(fitted, sample), len(sample))
    return fitted, seconds, result, baseline, code_ok


def fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 draws per size (under a minute)")
    parser.add_argument("--seeds", type=int, default=None, help="draws per size (default 5)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 5)

    headline = {"seeds": seeds}
    rows = []
    code_checked = code_agreeing = 0
    never_below = True
    for filename, task, group_key in SUITES:
        path = args.data / filename
        if not path.exists():
            print(f"skip {path}: not found")
            continue
        examples = read_labelled_jsonl(path, task=task, group_key=group_key)
        name = f"{filename.removesuffix('.jsonl')}/{task}"
        for size in SIZES:
            accs, kappas, bases, times, margins = [], [], [], [], []
            rules = []
            for seed in range(seeds):
                train, held_out = draw(examples, size, seed)
                fitted, seconds, result, baseline, code_ok = measure(
                    train, held_out, check_code=seed == 0
                )
                accs.append(result.accuracy)
                kappas.append(result.kappa if result.kappa is not None else 0.0)
                bases.append(baseline.accuracy)
                margins.append(result.accuracy - baseline.accuracy)
                times.append(seconds)
                rules.append(len(fitted.decision.rules))
                if code_ok:
                    code_agreeing += code_ok[0]
                    code_checked += code_ok[1]
            row = {
                "suite": name,
                "labels": size,
                "accuracy": statistics.mean(accs),
                "kappa": statistics.mean(kappas),
                "kappa_min": min(kappas),
                "baseline": statistics.mean(bases),
                "worst_margin": min(margins),
                "fit_s": statistics.mean(times),
                "rules": statistics.mean(rules),
            }
            never_below = never_below and statistics.mean(margins) >= 0
            rows.append(row)
            key = f"{task}_{size}"
            headline[f"{key}_accuracy"] = round(row["accuracy"], 3)
            headline[f"{key}_kappa"] = round(row["kappa"], 3)
            headline[f"{key}_baseline"] = round(row["baseline"], 3)
        # Keep a fifth of the traces held out even when the set is smaller than BIG.
        big = min(BIG, int(len(examples) * 0.8))
        train, held_out = draw(examples, big, 0)
        fitted, seconds, result, baseline, _ = measure(train, held_out, check_code=False)
        rows.append(
            {
                "suite": name,
                "labels": len(train),
                "accuracy": result.accuracy,
                "kappa": result.kappa or 0.0,
                "kappa_min": result.kappa or 0.0,
                "baseline": baseline.accuracy,
                "worst_margin": result.accuracy - baseline.accuracy,
                "fit_s": seconds,
                "rules": len(fitted.decision.rules),
            }
        )
        headline[f"{task}_{len(train)}_fit_s"] = round(seconds, 3)
        headline[f"{task}_{len(train)}_accuracy"] = round(result.accuracy, 3)
        if task == "no_refusal":
            print(f"\nRules learned from {len(train)} labels ({name}):")
            for line in fitted.rules:
                print("  " + line)

    print()
    header = (
        f"{'suite':36} {'labels':>6} {'acc':>6} {'kappa':>6} {'k_min':>6} "
        f"{'base':>6} {'worst+':>7} {'rules':>5} {'fit_s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['suite']:36} {r['labels']:>6} {fmt(r['accuracy'])} {fmt(r['kappa']):>6} "
            f"{fmt(r['kappa_min']):>6} {fmt(r['baseline']):>6} {r['worst_margin']:>+7.3f} "
            f"{r['rules']:>5.1f} {r['fit_s']:>7.3f}"
        )
    print(
        "\nacc/kappa: mean over draws on all held-out traces; base: majority class of the "
        "training draw; worst+: worst draw's accuracy minus its baseline."
    )
    headline["never_below_baseline_on_average"] = never_below
    fits_500 = [v for k, v in headline.items() if k.endswith("_500_fit_s")]
    headline["goal_fit_500_under_2s"] = bool(fits_500) and max(fits_500) < 2.0
    headline["goal_no_refusal_25_kappa_0_7"] = headline.get("no_refusal_25_kappa", 0) >= 0.7
    headline["emitted_code_agrees"] = f"{code_agreeing}/{code_checked}"
    headline["max_fit_s"] = round(max(r["fit_s"] for r in rows), 3) if rows else None
    command = "python bench/generation.py" + (" --quick" if args.quick else "")
    if args.seeds:
        command += f" --seeds {args.seeds}"
    print(f"command: {command}")
    print(json.dumps(headline, sort_keys=True))


if __name__ == "__main__":
    main()
