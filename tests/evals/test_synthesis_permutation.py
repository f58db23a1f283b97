"""The label-permutation bar (docs/synthesiser.md, eighth pass): off by default, measured."""

import random

from evals.synthesis import learner, runtime

PERMUTED = learner.Bars(permutations=19)


def _link_set(seed: int, *, flips: int, n: int = 25):
    """Return views and labels where a link in the answer makes it bad, `flips` of n wrong.

    Every answer is the same sentence, with or without a link, so there are only a few
    distinct candidate rules to choose from.
    """
    rng = random.Random(seed)
    views, labels = [], []
    for i in range(n):
        link = rng.random() < 0.4
        output = "Your order is updated." + (f" Details: [order](/orders/{i})." if link else "")
        bad = link != (rng.random() < flips / n)
        trace = {"id": f"t{i}", "input": {"q": "Update my order"}, "output": output, "steps": []}
        views.append(runtime.view(trace))
        labels.append(not bad)
    return views, labels, [f"t{i}" for i in range(n)]


def test_shuffled_labels_move_whole_groups_and_keep_the_count():
    labels = [True, False, True, True, False, False, True, False, True]
    groups = ["a", "a", "b", "b", "c", "c", "d", "e", "f"]
    for seed in range(20):
        shuffled = learner.permuted(labels, groups, random.Random(seed))
        assert sorted(shuffled) == sorted(labels)
        pairs = {(shuffled[i], shuffled[i + 1]) for i in (0, 2, 4)}
        # Each pair of traces of a group carries one of the three real groups' pattern.
        assert pairs <= {(True, False), (True, True), (False, False)}
    assert learner.permuted(labels, groups, random.Random(3)) == learner.permuted(
        labels, groups, random.Random(3)
    )


def test_a_weak_rule_among_few_candidates_passes_the_permutation_bar_only():
    # Six answers in 25 labelled against the link: the rule beats the majority verdict
    # by under one standard error, short of the fixed bar, but no shuffle of the labels
    # does as well with these two candidates.
    views, labels, groups = _link_set(5, flips=6)
    fixed = learner.learn(views, labels, groups)
    assert fixed[0].rules == ()
    decision, selection = learner.learn(views, labels, groups, bars=PERMUTED)
    (rule,) = decision.rules
    assert rule.feature.family == "links"
    assert selection.chosen == "one"


def test_pure_noise_labels_still_give_no_reliable_eval_with_the_permutation_bar():
    shipped = 0
    for seed in range(8):
        views, _, groups = _link_set(seed, flips=0, n=30)
        rng = random.Random(100 + seed)
        labels = [rng.random() < 0.6 for _ in views]
        shipped += bool(learner.learn(views, labels, groups, bars=PERMUTED)[0].rules)
    assert shipped == 0


def test_the_permutation_bar_is_off_by_default_and_replays_from_the_evidence():
    views, labels, groups = _link_set(5, flips=6)
    search = learner.prepare(views, labels)
    plain = learner.gather(search, labels, groups, word_candidates=0, bars=learner.Bars())
    assert plain.null is None
    ev = learner.gather(search, labels, groups, word_candidates=0, bars=PERMUTED)
    assert ev.null_planned == 19 and ev.null
    assert learner.choose(ev, PERMUTED)[0] == "one"
    # The same evidence judged by the fixed bar (learner.Bars()) ignores the null.
    assert learner.choose(ev, learner.Bars())[0] == "constant"
