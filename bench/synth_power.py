"""Calibrate the offline synthesiser's selection on semi-synthetic labels.

The traces are real (every file in shared/data); the labels are not. Each fit sees
labels from either

- a *planted rule* drawn at random from general families (a length threshold at a
  random quantile, a text-shape or phrase flag, a fact about the steps, an AND of an
  input condition and an output condition), with 0, 10, 20 or 30 % of labels flipped;
  the rule and its direction are drawn by seed among conditions that hold for 15-85 %
  of the file's traces, never picked to match a file's real label; or
- *pure noise*: random labels with a bad share drawn from 20-60 %.

For 10, 25 and 50 training labels (whole groups, as bench/generation.py draws them)
it reports power (share of planted fits whose eval is not a constant and scores
held-out kappa > 0.2 against the noisy held-out labels), the false-alarm rate (share
of pure-noise fits that emit a non-constant eval) and the mean held-out kappa.

With --sweep it gathers the cross-validation evidence once per fit under each scheme
(one 5-fold dealing, repeated dealings, leave-one-group-out) and replays the choice
under a grid of bars (learner.choose is a pure function of the evidence), then picks
the setting with the most power whose false-alarm rate is at most --target at every
size.

With --quotes every draw is fitted a second time with a note on each bad training trace
quoting a chance phrase of its output; with --complaints instead, with one complaint in a
reviewer's words (COMPLAINTS: "way too wordy", "off-topic", ...) drawn per fit and put on
every bad training trace, whatever the labels' cause: notes that point nowhere, read the
way real notes are.

With --permutations K it also computes the learner's label-permutation null (K
shuffles, docs/synthesiser.md "eighth pass") for every fit and replays its test at a
few levels beside the fixed bar, on the same fits.

With --insample K it also computes, for every fit, a max-statistic permutation test
without folds (the best single condition's in-sample gain against K shuffles of the
labels, docs/synthesiser.md "tenth pass") and replays it beside the fixed bar.

With --stats it replays, on the same fits, other standard errors of a rule's gain over
the majority verdict (learner.gain_z) and a bar rising with the splits tried, each over a
fine grid of bars (docs/synthesiser.md "ninth pass"); --save FILE keeps the fits and
--stats --replay FILE replays them without fitting again. --noise-draws, --rules,
--repeats and --folds change the number of pure-noise labellings, planted rules per
family, dealings of the folds and folds per dealing; --salt S draws another,
independent set of rules and draws.

    python bench/synth_power.py [--quick] [--sweep [--accuracy-only]] [--quotes | --complaints]
        [--permutations K]
        [--insample K]
        [--draws N] [--target 0.10] [--stats] [--noise-draws N] [--rules N] [--repeats N]
        [--folds K]
        [--salt S] [--save FILE | --replay FILE]

Last line of output: one JSON object.
"""

import argparse
import hashlib
import itertools
import json
import math
import pickle
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Appended: bench/sandbox.py must not shadow the sandbox package.
sys.path.append(str(ROOT / "bench"))

from generation import DEFAULT_DATA, draw  # noqa: E402

from evals.datasets import read_labelled_jsonl  # noqa: E402
from evals.synthesis import learner, runtime  # noqa: E402
from evals.synthesis.features import FLAGS, MEASURES  # noqa: E402

# One task per file: the traces are what matters, the real labels are never used.
FILES = (
    ("xstest.jsonl", "no_refusal", "metadata.source_id"),
    ("ifbench.jsonl", "follows_all_constraints", None),
    ("tau2_retail.jsonl", "task_success", "metadata.task_id"),
)
SIZES = (10, 25, 50)
NOISE = (0.0, 0.1, 0.2, 0.3)
FAMILIES = ("length", "flag", "step", "and")
POWER_KAPPA = 0.2
HELD_OUT_CAP = 300
OUT_MEASURES = ("output_words", "output_chars", "output_sentences", "output_lines")
IN_MEASURES = ("input_words",)
STEP_MEASURES = (
    "steps",
    "tool_calls",
    "read_calls",
    "write_calls",
    "distinct_tools",
    "tool_errors",
    "user_turns",
    "agent_turns",
    "changes",
    "confirmation_requests",
)
STEP_FLAGS = (
    "step_error",
    "tool_error",
    "write_called",
    "handoff",
    "last_action_write",
    "write_without_confirmation",
    "write_before_read",
    "repeated_tool_call",
    "user_confirmed",
    "write_with_unsupported_id",
    "contradicts_tool_error",
    "asked_after_last_change",
    "confirmed_after_last_change",
    "same_target_changed_twice",
    "failed_change_retried",
)


# Prefixed to every seed when set (--salt): another, independent set of rules and draws.
SALT = ""


def _seeded(*parts) -> random.Random:
    parts = (SALT, *parts) if SALT else parts
    return random.Random(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest())


def _conditions(views, kinds):
    """Return [(description, set of indices)] for conditions of the given kinds."""
    out = []
    n = len(views)
    flag_names = sorted(views[0]["flags"])
    for kind in kinds:
        if kind in ("out_measure", "in_measure", "step_measure"):
            names = {
                "out_measure": OUT_MEASURES,
                "in_measure": IN_MEASURES,
                "step_measure": STEP_MEASURES,
            }[kind]
            for name in names:
                values = sorted(v["numbers"][name] or 0.0 for v in views)
                for q in (0.3, 0.4, 0.5, 0.6, 0.7):
                    t = values[int(q * (n - 1))]
                    hit = {i for i, v in enumerate(views) if (v["numbers"][name] or 0.0) >= t}
                    fam = MEASURES[name][0]
                    out.append((f"{name} >= {t:g}", hit, fam))
                    out.append((f"{name} < {t:g}", set(range(n)) - hit, fam))
        else:
            if kind == "out_flag":
                names = [f for f in flag_names if f.startswith("out_")]
            elif kind == "in_flag":
                names = [f for f in flag_names if f.startswith("in_")]
            else:
                names = list(STEP_FLAGS)
            for name in names:
                hit = {i for i, v in enumerate(views) if v["flags"][name]}
                out.append((name, hit, FLAGS[name][0]))
                out.append((f"not {name}", set(range(n)) - hit, FLAGS[name][0]))
    return [c for c in out if 0.15 * n <= len(c[1]) <= 0.85 * n]


def _phrase_conditions(views):
    """Return [(description, indices, 'phrase:<words>')] for output words and word pairs.

    Words of four letters or more and pairs of words found in 10-50 % of the outputs: a
    phrase that makes a trace bad is seldom in most of them.
    """
    n = len(views)
    seen = {}
    for i, v in enumerate(views):
        words = v["out"].split()
        grams = {w for w in words if len(w) >= 4}
        grams |= {f"{a} {b}" for a, b in zip(words, words[1:], strict=False) if len(a + b) >= 6}
        for g in grams:
            seen.setdefault(g, set()).add(i)
    return [
        (f"out has '{g}'", hit, "phrase:" + g)
        for g, hit in sorted(seen.items())
        if 0.1 * n <= len(hit) <= 0.5 * n
    ]


def planted_rules(name, views, count, *, phrases=False):
    """Return up to `count` planted rules per family: (family, text, set of bad indices).

    `phrases`: also "the output contains <a word or word pair>" (family "phrase").
    """
    pools = {
        "length": _conditions(views, ["out_measure", "in_measure"]),
        "flag": _conditions(views, ["out_flag", "in_flag"]),
        "step": _conditions(views, ["step_measure", "step_flag"]),
    }
    ins = _conditions(views, ["in_measure", "in_flag"])
    outs = _conditions(views, ["out_measure", "out_flag"])
    pairs = []
    n = len(views)
    for (da, ha, fa), (db, hb, fb) in itertools.product(ins, outs):
        both = ha & hb
        if 0.15 * n <= len(both) <= 0.85 * n:
            pairs.append((f"{da} AND {db}", both, f"{fa}+{fb}"))
    pools["and"] = pairs
    if phrases:
        pools["phrase"] = _phrase_conditions(views)
    rules = []
    for family in (*FAMILIES, "phrase") if phrases else FAMILIES:
        pool = pools[family]
        if not pool:
            continue
        rng = _seeded(name, family)
        for text, bad, named in rng.sample(pool, min(count, len(pool))):
            rules.append((family, text, bad, named))
    return rules


def kappa(pairs):
    """Return Cohen's kappa of (label, verdict) booleans (0 when undefined)."""
    n = len(pairs)
    if not n:
        return 0.0
    agree = sum(a == b for a, b in pairs) / n
    pa = sum(a for a, _ in pairs) / n
    pb = sum(b for _, b in pairs) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    return 0.0 if chance >= 1 else (agree - chance) / (1 - chance)


# scheme -> (rules fitted by balanced accuracy?, how evidence is gathered and judged)
SCHEMES = {
    "acc": (False, learner.Bars(balanced=False)),
    "bal_select": (False, learner.Bars(balanced=True)),
    "bal_fit": (True, learner.Bars(balanced=True)),
}


def one_fit(views, labels, clean, groups, train_idx, held_idx, schemes, named=(), notes=None):
    """Return {scheme: evidence} and {scheme: per-level held-out results} for one draw.

    `named`: families believed by every fold (as a note on every bad training trace is:
    each fold trains on some). `notes`: one reviewer's note per training trace ('' for none).
    """
    tv = [views[i] for i in train_idx]
    tl = [labels[i] for i in train_idx]
    tg = [groups[i] for i in train_idx]
    searches = {}
    evidence, levels = {}, {}
    insample = None
    for name, (balanced_fit, bars) in schemes.items():
        if balanced_fit not in searches:
            search = learner.prepare(tv, tl, named=named, notes=notes, balanced=balanced_fit)
            per_level = {}
            for level in learner.LEVELS:
                decision, _ = learner.finish(search, level, learner.Selection())
                verdicts = [decision.predict_view(views[i])[0] for i in held_idx]
                pairs = list(zip(held_idx, verdicts, strict=True))
                per_level[level] = {
                    "constant": not decision.rules,
                    "kappa": kappa([(labels[i], v) for i, v in pairs]),
                    "clean_kappa": kappa([(clean[i], v) for i, v in pairs]),
                    "accuracy": sum(labels[i] == v for i, v in pairs) / max(1, len(pairs)),
                }
            searches[balanced_fit] = (search, per_level)
        search, per_level = searches[balanced_fit]
        evidence[name] = learner.gather(
            search, tl, tg, word_candidates=len(search.words), bars=bars
        )
        levels[name] = per_level
        if INSAMPLE and insample is None:
            insample = insample_null(search, tl, tg, INSAMPLE)
    return evidence, levels, insample


# Shuffles of the in-sample permutation test (--insample K, tenth pass); 0: off.
INSAMPLE = 0
INSAMPLE_ALPHAS = (0.01, 0.02, 0.03, 0.05)


def insample_gain(search) -> float:
    """Return the best single condition's training score over the majority verdict's."""
    fitted = search.fit("one", search.full)
    n_pos = search.pos.bit_count()
    n = search.full.bit_count()
    return -math.inf if fitted is None else fitted.score - max(n_pos, n - n_pos)


def insample_null(search, labels, groups, shuffles):
    """Return (statistic, null) of a max-statistic permutation test without folds.

    The statistic is the best single condition's gain on the training labels themselves;
    the null, the same on `shuffles` shuffles of them (whole groups moving together), so
    the choice among every candidate is paid for by the null, not by held-out folds.
    """
    rng = random.Random(
        len(labels) * 7919 + sum(1 << i for i, g in enumerate(labels) if g) % 100003
    )
    null = []
    for _ in range(shuffles):
        shuffled = learner.permuted(labels, groups, rng)
        pos = sum(1 << i for i, good in enumerate(shuffled) if good)
        null.append(
            insample_gain(
                learner._Search(search.structural, [], pos, search.full & ~pos, search.full)
            )
        )
    return insample_gain(search), null


def load(data):
    sets = []
    for filename, task, key in FILES:
        path = data / filename
        if not path.exists():
            print(f"skip {path}: not found")
            continue
        examples = read_labelled_jsonl(path, task=task, group_key=key)
        views = [runtime.view(e.trace) for e in examples]
        sets.append((filename.removesuffix(".jsonl"), examples, views))
    return sets


NOTE_FAMILIES = ("length", "refusal", "tone", "shape", "links", "pii", "ids", "tool", "error")


def quoting_notes(views, labels, train_idx, rng, phrase=""):
    """Return a note per training trace quoting a phrase of each bad one's output.

    The planted `phrase` where a bad output has it (a note that points to the rule);
    otherwise a chance phrase, as a reviewer who quotes what caught their eye ("said
    'whole grain'") where nothing the note quotes has to do with the label.
    """
    notes = []
    for i in train_idx:
        words = [w for w in views[i]["out"].split() if len(w) >= 4]
        if labels[i] or not words:
            notes.append("")
            continue
        if phrase and f" {phrase} " in views[i]["out"]:
            notes.append(f"said '{phrase}'")
            continue
        start = rng.randrange(len(words))
        notes.append("said '" + " ".join(words[start : start + rng.choice((1, 2))]) + "'")
    return notes


# Complaints reviewers write in their own words, used by --complaints as notes that point
# nowhere: one drawn per fit, on every bad training trace, whatever the labels' cause.
COMPLAINTS = (
    "way too wordy",
    "rambles on",
    "too short, barely answered",
    "preachy, lectures the user",
    "off-topic",
    "didn't address the question",
    "made up a number",
    "leaked the customer's email",
    "hedges everything",
    "messy formatting",
    "ignored the instructions",
    "repeats itself",
    "broken link",
    "refused to help",
    "the tool call failed",
    "wrong tone",
)


def run(
    sets,
    *,
    rules_per_family,
    draws,
    noise_draws,
    schemes,
    notes=False,
    quotes=False,
    complaints=False,
):
    """Return a list of fit records (one per training draw).

    With `notes`, every draw is fitted a second time as if a reviewer's note named a
    family: the planted rule's own families, or for pure noise a family drawn at random
    (a note that points nowhere). With `quotes` instead, the second fit has a note on
    every bad training trace quoting a chance phrase of its output (`quoting_notes`); with
    `complaints`, the same complaint (COMPLAINTS, drawn per fit) on every bad training trace.
    """
    records = []
    for name, examples, views in sets:
        groups = [e.group for e in examples]
        n = len(views)
        tasks = []
        planted = planted_rules(name, views, rules_per_family, phrases=quotes)
        for family, text, bad, named in planted:
            for noise in NOISE:
                clean = [i not in bad for i in range(n)]
                tasks.append(("planted", family, text, noise, clean, named.split("+")))
        for k in range(noise_draws):
            rng = _seeded(name, "noise", k)
            share = rng.uniform(0.2, 0.6)
            clean = [rng.random() >= share for _ in range(n)]
            named = [rng.choice(NOTE_FAMILIES)]
            tasks.append(("noise", "noise", f"random, {share:.0%} bad", None, clean, named))
        for kind, family, text, noise, clean, named in tasks:
            for size in SIZES:
                for d in range(draws):
                    seed = f"{name}:{text}:{noise}:{size}:{d}"
                    rng = _seeded(seed)
                    if noise:
                        labels = [c if rng.random() >= noise else not c for c in clean]
                    else:
                        labels = list(clean)
                    shuffled = [replace(e, trace={"id": str(i)}) for i, e in enumerate(examples)]
                    train, held = draw(shuffled, size, int(rng.random() * 1e9))
                    train_idx = [int(e.trace["id"]) for e in train]
                    held_idx = [int(e.trace["id"]) for e in held]
                    if len(held_idx) > HELD_OUT_CAP:
                        held_idx = sorted(rng.sample(held_idx, HELD_OUT_CAP))
                    if len({labels[i] for i in train_idx}) < 2:
                        continue  # one verdict only: nothing to learn, nothing to measure
                    for noted in (False, True) if notes or quotes or complaints else (False,):
                        believed = named if noted and notes else ()
                        said = None
                        if noted and quotes:
                            quoted = named[0].removeprefix("phrase:") if family == "phrase" else ""
                            said = quoting_notes(views, labels, train_idx, rng, quoted)
                        elif noted and complaints:
                            complaint = rng.choice(COMPLAINTS)
                            said = ["" if labels[i] else complaint for i in train_idx]
                        evidence, levels, insample = one_fit(
                            views,
                            labels,
                            clean,
                            groups,
                            train_idx,
                            held_idx,
                            schemes,
                            believed,
                            said,
                        )
                        records.append(
                            {
                                "set": name,
                                "kind": kind,
                                "family": family,
                                "rule": text,
                                "noise": noise,
                                "size": size,
                                "noted": noted,
                                "evidence": evidence,
                                "levels": levels,
                                "insample": insample,
                            }
                        )
    return records


def outcome(record, scheme, bars):
    ev = record["evidence"][scheme]
    chosen = "constant" if ev is None else learner.choose(ev, bars)[0]
    return record["levels"][scheme][chosen]


def summarise(records, scheme, bars, noted=False):
    """Return {(size, condition): figures} for one scheme and bars."""
    records = [r for r in records if r["noted"] == noted]
    table = {}
    for size in SIZES:
        for cond in (*NOISE, "noise"):
            rows = [
                r
                for r in records
                if r["size"] == size
                and (r["kind"] == "noise" if cond == "noise" else r["noise"] == cond)
                and (cond == "noise" or r["kind"] == "planted")
            ]
            if not rows:
                continue
            results = [outcome(r, scheme, bars) for r in rows]
            evals = [not x["constant"] for x in results]
            table[(size, cond)] = {
                "fits": len(rows),
                "eval_rate": sum(evals) / len(rows),
                "power": sum(
                    e and x["kappa"] > POWER_KAPPA for e, x in zip(evals, results, strict=True)
                )
                / len(rows),
                "kappa": statistics.mean(x["kappa"] for x in results),
                "clean_kappa": statistics.mean(x["clean_kappa"] for x in results),
            }
    return table


def by_family(records, scheme, bars, noted=False):
    records = [r for r in records if r["noted"] == noted]
    out = {}
    for family in (*FAMILIES, "phrase"):
        for size in SIZES:
            rows = [r for r in records if r["family"] == family and r["size"] == size]
            if rows:
                res = [outcome(r, scheme, bars) for r in rows]
                out[(family, size)] = sum(
                    not x["constant"] and x["kappa"] > POWER_KAPPA for x in res
                ) / len(rows)
    return out


def print_table(table, title):
    print(f"\n{title}")
    print(
        f"{'labels':>6} {'labels from':>16} {'fits':>5} {'eval':>6} {'power':>6} "
        f"{'kappa':>6} {'clean k':>7}"
    )
    for (size, cond), f in table.items():
        what = "pure noise" if cond == "noise" else f"rule, {int(cond * 100)} % flipped"
        print(
            f"{size:>6} {what:>16} {f['fits']:>5} {f['eval_rate']:>6.2f} "
            f"{'-' if cond == 'noise' else format(f['power'], '.2f'):>6} {f['kappa']:>6.3f} "
            f"{f['clean_kappa']:>7.3f}"
        )


def insample_choice(record, bars, alpha):
    """Return the level chosen when the in-sample test may ship one condition.

    The cross-validated bar decides first; when it keeps the majority verdict, one
    condition ships if at most a share `alpha` of the shuffles beat its in-sample gain.
    """
    ev = record["evidence"]["current"]
    chosen = "constant" if ev is None else learner.choose(ev, bars)[0]
    if chosen == "constant" and record.get("insample") and alpha:
        stat, null = record["insample"]
        if (1 + sum(z >= stat - 1e-9 for z in null)) / (1 + len(null)) <= alpha:
            chosen = "one"
    return chosen


def insample_report(records, bars):
    """Print and return FA / power of the fixed bar with and without the in-sample test."""
    print("\nin-sample permutation test, when the cross-validated bar keeps the majority")
    print(f"{'alpha':>7}  FA@10 FA@25 FA@50  P@10 P@25 P@50")
    out = {}
    for alpha in (0.0, *INSAMPLE_ALPHAS):
        fa, power = {}, {}
        for size in SIZES:
            noise = [r for r in records if r["size"] == size and r["kind"] == "noise"]
            planted = [r for r in records if r["size"] == size and r["kind"] == "planted"]
            got = [r["levels"]["current"][insample_choice(r, bars, alpha)] for r in noise]
            fa[size] = sum(not x["constant"] for x in got) / max(1, len(got))
            got = [r["levels"]["current"][insample_choice(r, bars, alpha)] for r in planted]
            power[size] = sum(not x["constant"] and x["kappa"] > POWER_KAPPA for x in got) / max(
                1, len(got)
            )
        print(
            f"{alpha:>7}  "
            + " ".join(f"{fa[s]:>5.3f}" for s in SIZES)
            + " "
            + " ".join(f"{power[s]:>5.3f}" for s in SIZES)
        )
        out[str(alpha)] = {"false_alarm": fa, "power": power}
    return out


PERM_ALPHAS = (0.05, 0.1, 0.15)
PERM_FLOORS = (0.0, 0.5, 0.84, 1.0)


def permutation_report(records, permutations, fixed):
    """Print and return FA / power of the fixed bar against the permutation test's replays."""
    rows = [("fixed", fixed)]
    for alpha, floor in itertools.product(PERM_ALPHAS, PERM_FLOORS):
        bars = replace(fixed, permutations=permutations, alpha=alpha, permutation_floor_se=floor)
        rows.append((f"perm a={alpha} floor={floor}", bars))
    print(f"\npermutation test ({permutations} shuffles) against the fixed bar")
    print(f"{'bar':>26}  FA@10 FA@25 FA@50  P@10 P@25 P@50   power by family @25")
    out = {}
    for name, bars in rows:
        fa, power = headline_of(summarise(records, "current", bars))
        fam = by_family(records, "current", bars)
        cells = " ".join(f"{f}:{fam[(f, 25)]:.2f}" for f in FAMILIES if (f, 25) in fam)
        print(
            f"{name:>26}  "
            + " ".join(f"{fa[s]:>5.3f}" for s in SIZES)
            + " "
            + " ".join(f"{power[s]:>5.3f}" for s in SIZES)
            + "   "
            + cells
        )
        table = summarise(records, "current", bars)
        out[name] = {
            "false_alarm": fa,
            "power": power,
            "power_by_noise": {
                f"{size}:{cond}": round(f["power"], 3)
                for (size, cond), f in table.items()
                if cond != "noise"
            },
            "fits_by_noise": {f"{size}:{cond}": f["fits"] for (size, cond), f in table.items()},
            "power_by_family": {f"{f}:{size}": round(v, 3) for (f, size), v in fam.items()},
        }
    return out


STAT_BARS = tuple(round(0.5 + 0.05 * i, 2) for i in range(27))  # 0.5 .. 1.8
# name -> learner.Bars fields replayed (beside the bar) by --stats.
VARIANTS = {
    "mcnemar": {},
    "mcnemar+0.25log": {"splits_slope": 0.25},
    "mcnemar+0.5log": {"splits_slope": 0.5},
    "trace": {"statistic": "trace"},
    "trace_emp": {"statistic": "trace_emp"},
    "nb": {"statistic": "nb"},
    "two_when_one_fails": {"two_when_one_fails": True},
}


def _wilson_se(p, n):
    return (p * (1 - p) / n) ** 0.5 if n else 0.0


def stats_report(records, current, target):
    """Print and return FA / power of every standard error and bar on the same fits.

    For each statistic (`learner.gain_z`) and slope of the bar in the log of the splits
    tried, the bar is swept; reported: the lowest bar whose false alarms stay within
    `target` at every size, and per size the most power at false alarms within target.
    """
    noise_n = {s: sum(r["kind"] == "noise" and r["size"] == s for r in records) for s in SIZES}
    out = {}
    print(f"\nstandard errors and bars (pure-noise fits per size: {noise_n})")
    print(f"{'variant':>18} {'bar':>5}   FA@10 FA@25 FA@50  P@10 P@25 P@50")
    for key, fields in VARIANTS.items():
        curve = []
        for z in STAT_BARS:
            bars = replace(current, beat_majority_se=z, **fields)
            fa, power = headline_of(summarise(records, "current", bars))
            fam = by_family(records, "current", bars)
            curve.append((z, fa, power, fam))
        ok = [c for c in curve if all(v <= target for v in c[1].values())]
        out[key] = {}
        for z, fa, power, _ in curve:
            print(
                f"{key:>18} {z:>5}  "
                + ("*" if all(v <= target for v in fa.values()) else " ")
                + " ".join(f"{fa[s]:>5.3f}" for s in SIZES)
                + " "
                + " ".join(f"{power[s]:>5.3f}" for s in SIZES)
            )
        if ok:
            z, fa, power, fam = ok[0]
            out[key]["lowest_bar_within_target"] = {
                "bar": z,
                "false_alarm": fa,
                "false_alarm_se": {s: round(_wilson_se(fa[s], noise_n[s]), 3) for s in SIZES},
                "power": power,
                "power_by_family_25": {
                    f: round(fam[(f, 25)], 3) for f in FAMILIES if (f, 25) in fam
                },
            }
        # Per size: the most power among bars within target at that size alone.
        out[key]["best_per_size"] = {}
        for s in SIZES:
            fine = [c for c in curve if c[1][s] <= target]
            if fine:
                z, fa, power, _ = max(fine, key=lambda c: (c[2][s], c[0]))
                out[key]["best_per_size"][s] = {"bar": z, "false_alarm": fa[s], "power": power[s]}
    print("\nlowest common bar within target, and per size the best bar within target:")
    for key, v in out.items():
        low = v.get("lowest_bar_within_target")
        per = v["best_per_size"]
        print(
            f"  {key:>16}: "
            + (
                f"bar {low['bar']} FA "
                + "/".join(f"{low['false_alarm'][s]:.3f}" for s in SIZES)
                + " P "
                + "/".join(f"{low['power'][s]:.3f}" for s in SIZES)
                if low
                else "none"
            )
            + "  | per size: "
            + "  ".join(
                f"{s}: {per[s]['bar']} ({per[s]['false_alarm']:.3f}, P {per[s]['power']:.3f})"
                for s in SIZES
                if s in per
            )
        )
    return out


def grid():
    """Yield candidate bars for fits without notes (named_family_se plays no part)."""
    for z, two, word in itertools.product(
        (0.84, 1.0, 1.1, 1.2, 1.28, 1.4, 1.645), (0.5, 1.0), (0.1, 0.2, 0.3)
    ):
        yield learner.Bars(beat_majority_se=z, two_over_one_se=two, word_margin=word)


def headline_of(table):
    fa = {size: table[(size, "noise")]["eval_rate"] for size in SIZES if (size, "noise") in table}
    power = {
        size: statistics.mean(table[(size, c)]["power"] for c in NOISE if (size, c) in table)
        for size in SIZES
    }
    return fa, power


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rules and draws (under a minute)"
    )
    parser.add_argument("--sweep", action="store_true", help="replay a grid of bars and schemes")
    parser.add_argument("--draws", type=int, default=None, help="training draws per rule and size")
    parser.add_argument("--target", type=float, default=0.10, help="false-alarm ceiling per size")
    parser.add_argument(
        "--quotes",
        action="store_true",
        help="refit every draw with notes quoting chance phrases of bad outputs",
    )
    parser.add_argument(
        "--complaints",
        action="store_true",
        help="refit every draw with one reviewer's complaint, pointing nowhere, on every bad trace",
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=0,
        help="also compute a label-permutation null of K shuffles and replay its test",
    )
    parser.add_argument(
        "--accuracy-only",
        action="store_true",
        help="with --sweep: the accuracy scheme only, without the refits with notes",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="replay every standard error (learner.gain_z) and a fine grid of bars",
    )
    parser.add_argument(
        "--insample",
        type=int,
        default=0,
        help="also replay an in-sample permutation test of K shuffles beside the bar",
    )
    parser.add_argument("--noise-draws", type=int, default=None, help="pure-noise labellings")
    parser.add_argument("--rules", type=int, default=None, help="planted rules per family")
    parser.add_argument("--salt", default="", help="another independent set of rules and draws")
    parser.add_argument("--repeats", type=int, default=None, help="dealings of the folds")
    parser.add_argument("--folds", type=int, default=None, help="folds per dealing (default 5)")
    parser.add_argument("--save", type=Path, help="pickle the fit records here (for replays)")
    parser.add_argument("--replay", type=Path, help="with --stats: the records --save wrote")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    global SALT, INSAMPLE
    SALT = args.salt
    INSAMPLE = args.insample
    draws = args.draws or (1 if args.quick or args.sweep else 2)
    rules_per_family = args.rules or (1 if args.quick else (2 if args.sweep else 3))
    noise_draws = args.noise_draws or (8 if args.quick else 30)
    current = learner.Bars(
        **({"repeats": args.repeats} if args.repeats else {}),
        **({"folds": args.folds} if args.folds else {}),
    )
    schemes = dict(SCHEMES) if args.sweep else {"current": (learner.BALANCED_FIT, current)}
    if args.sweep and args.accuracy_only:
        schemes = {"acc": SCHEMES["acc"]}
    if args.permutations:
        # Stopped early only past the loosest level replayed, so every replay is exact.
        gathered = replace(current, permutations=args.permutations, alpha=max(PERM_ALPHAS))
        schemes = {"current": (learner.BALANCED_FIT, gathered)}
    if args.replay:
        records = pickle.loads(args.replay.read_bytes())  # noqa: S301 (our own --save)
        headline = {"fits": len(records), "replayed": str(args.replay)}
        headline["statistics"] = stats_report(records, current, args.target)
        print(json.dumps(headline, sort_keys=True, default=lambda x: x))
        return
    sets = load(args.data)
    records = run(
        sets,
        rules_per_family=rules_per_family,
        draws=draws,
        noise_draws=noise_draws,
        schemes=schemes,
        notes=args.sweep and not args.accuracy_only,
        quotes=args.quotes and not args.sweep,
        complaints=args.complaints and not args.sweep and not args.quotes,
    )
    print(f"{len(records)} fits on {', '.join(name for name, _, _ in sets)}")
    if args.save:
        args.save.write_bytes(pickle.dumps(records))
    headline = {"fits": len(records)}
    if args.sweep:
        results = []
        for scheme in schemes:
            for bars in grid():
                bars = replace(bars, balanced=schemes[scheme][1].balanced)
                fa, power = headline_of(summarise(records, scheme, bars))
                results.append((scheme, bars, fa, power))
        print(
            "\nWithout notes (false alarms FA and power P at 10 / 25 / 50 labels; * within target)"
        )
        print(f"{'scheme':>9} {'z':>5} {'two':>4} {'word':>4}    FA@10 FA@25 FA@50  P@10 P@25 P@50")
        for scheme, b, fa, power in results:
            mark = "*" if all(v <= args.target for v in fa.values()) else " "
            print(
                f"{scheme:>9} {b.beat_majority_se:>5} {b.two_over_one_se:>4} {b.word_margin:>4}  "
                f"{mark} "
                + " ".join(f"{fa[s]:>5.2f}" for s in SIZES)
                + " "
                + " ".join(f"{power[s]:>5.2f}" for s in SIZES)
            )
        ok = [r for r in results if all(v <= args.target for v in r[2].values())]
        # Most power summed over sizes; ties to the stricter bar, then the cheaper scheme.
        ok.sort(key=lambda r: (-round(sum(r[3].values()), 6), -r[1].beat_majority_se, r[1].repeats))
        if ok:
            scheme, b, fa, power = ok[0]
            named_rows = []
            for zn in () if args.accuracy_only else (0.5, 0.84, 1.0, 1.28):
                if zn <= b.beat_majority_se:
                    bn = replace(b, named_family_se=zn)
                    nfa, npower = headline_of(summarise(records, scheme, bn, noted=True))
                    named_rows.append((zn, bn, nfa, npower))
            print("\nWith a note naming the planted family (noise: a random family)")
            print(f"{'z_named':>7}    FA@10 FA@25 FA@50  P@10 P@25 P@50")
            for zn, _, nfa, npower in named_rows:
                mark = "*" if all(v <= args.target for v in nfa.values()) else " "
                print(
                    f"{zn:>7}  {mark} "
                    + " ".join(f"{nfa[s]:>5.2f}" for s in SIZES)
                    + " "
                    + " ".join(f"{npower[s]:>5.2f}" for s in SIZES)
                )
            fine = [r for r in named_rows if all(v <= args.target for v in r[2].values())]
            if fine:
                fine.sort(key=lambda r: (-round(sum(r[3].values()), 6), -r[0]))
                b = fine[0][1]
            print(f"\nbest under false alarms <= {args.target:.0%} at every size: {scheme} {b}")
            print_table(summarise(records, scheme, b), f"{scheme}, chosen bars, no notes")
            if not args.accuracy_only:
                notes_table = summarise(records, scheme, b, noted=True)
                print_table(notes_table, f"{scheme}, chosen bars, notes")
            headline["best"] = {
                "scheme": scheme,
                "beat_majority_se": b.beat_majority_se,
                "named_family_se": b.named_family_se,
                "two_over_one_se": b.two_over_one_se,
                "word_margin": b.word_margin,
                "false_alarm": fa,
                "power": power,
            }
        for scheme in schemes:
            b = replace(current, balanced=schemes[scheme][1].balanced)
            fa, power = headline_of(summarise(records, scheme, b))
            headline[f"{scheme}_current_bars"] = {"false_alarm": fa, "power": power}
    else:
        table = summarise(records, "current", current)
        print_table(table, f"learner as configured: {current}")
        if args.quotes:
            quoted = summarise(records, "current", current, noted=True)
            print_table(quoted, "the same draws, bad training traces noted with a chance quote")
            qfa, qpower = headline_of(quoted)
            headline["quotes"] = {"false_alarm": qfa, "power": qpower}
        elif args.complaints:
            noted = summarise(records, "current", current, noted=True)
            print_table(noted, "the same draws, every bad training trace noted with one complaint")
            cfa, cpower = headline_of(noted)
            headline["complaints"] = {"false_alarm": cfa, "power": cpower}
        for noted in (False, True) if args.quotes else (False,):
            fam = by_family(records, "current", current, noted=noted)
            print(
                "\npower by planted family (all noise levels)"
                + (", bad training traces noted with a quote:" if noted else ":")
            )
            for family in (*FAMILIES, "phrase"):
                cells = [f"{fam[(family, s)]:.2f}" for s in SIZES if (family, s) in fam]
                if cells:
                    print(f"  {family:>7}: " + "  ".join(cells) + "   (10 / 25 / 50 labels)")
            if noted:
                headline["quotes"]["phrase_power"] = {
                    s: fam[("phrase", s)] for s in SIZES if ("phrase", s) in fam
                }
        if args.permutations:
            headline["permutation"] = permutation_report(records, args.permutations, current)
        if args.insample:
            headline["insample"] = insample_report(records, current)
        if args.stats:
            headline["statistics"] = stats_report(records, current, args.target)
        fa, power = headline_of(table)
        headline.update(
            {
                "false_alarm": fa,
                "power": power,
                "mean_kappa": {
                    s: round(statistics.mean(table[(s, c)]["kappa"] for c in NOISE), 3)
                    for s in SIZES
                },
            }
        )
        headline["false_alarm_ok"] = all(v <= args.target for v in fa.values())
    headline["bench_s"] = round(time.perf_counter() - started, 1)
    command = ".venv/bin/python bench/synth_power.py" + (" --quick" if args.quick else "")
    command += " --sweep" if args.sweep else ""
    command += " --quotes" if args.quotes else ""
    command += " --complaints" if args.complaints and not args.quotes else ""
    command += " --accuracy-only" if args.sweep and args.accuracy_only else ""
    command += f" --permutations {args.permutations}" if args.permutations else ""
    command += f" --insample {args.insample}" if args.insample else ""
    command += f" --draws {args.draws}" if args.draws else ""
    command += " --stats" if args.stats else ""
    command += f" --noise-draws {args.noise_draws}" if args.noise_draws else ""
    command += f" --rules {args.rules}" if args.rules else ""
    command += f" --salt {args.salt}" if args.salt else ""
    command += f" --repeats {args.repeats}" if args.repeats else ""
    command += f" --folds {args.folds}" if args.folds else ""
    print(f"\nreproduce: {command}")
    print(json.dumps(headline, sort_keys=True, default=lambda x: x))


if __name__ == "__main__":
    main()
