import pytest

from evals.metrics.agreement import (
    agreement,
    cohen_kappa,
    grouped_folds,
    holdout_split,
    low_confidence_reason,
)


def _pairs(tp=0, fp=0, fn=0, tn=0, errors=0, neutral=0):
    return (
        [("positive", True)] * tp
        + [("negative", True)] * fp
        + [("positive", False)] * fn
        + [("negative", False)] * tn
        + [("positive", None)] * errors
        + [("neutral", True)] * neutral
    )


def test_hand_computed_confusion_and_scores():
    result = agreement(_pairs(tp=3, fp=1, fn=2, tn=4, errors=1, neutral=2))
    assert (result.tp, result.fp, result.fn, result.tn) == (3, 1, 2, 4)
    assert result.labelled == 11
    assert result.errors == 1
    assert result.accuracy == pytest.approx(0.7)
    assert result.precision == pytest.approx(0.75)
    assert result.recall == pytest.approx(0.6)
    assert result.f1 == pytest.approx(2 / 3)
    # p_o = 0.7; p_e = (4*5 + 6*5) / 100 = 0.5; kappa = 0.2 / 0.5.
    assert result.kappa == pytest.approx(0.4)
    assert result.coverage == pytest.approx(10 / 11)


def test_neutral_labels_are_excluded():
    with_neutral = agreement(_pairs(tp=2, tn=2, neutral=5))
    assert with_neutral == agreement(_pairs(tp=2, tn=2))


def test_boolean_human_labels_are_accepted():
    assert agreement([(True, True), (False, True)]).fp == 1


def test_no_positives_gives_none_instead_of_dividing_by_zero():
    result = agreement(_pairs(tn=5))
    assert result.accuracy == 1.0
    assert result.precision is None
    assert result.recall is None
    assert result.f1 is None
    # Every rater says "negative": chance agreement is 1, kappa is undefined.
    assert result.kappa is None


def test_perfect_and_inverted_agreement_kappa():
    assert cohen_kappa(tp=5, fp=0, fn=0, tn=5) == pytest.approx(1.0)
    assert cohen_kappa(tp=0, fp=5, fn=5, tn=0) == pytest.approx(-1.0)


def test_empty_and_all_error_inputs():
    empty = agreement([])
    assert empty.accuracy is None and empty.kappa is None and empty.coverage is None
    errors = agreement(_pairs(errors=3))
    assert errors.accuracy is None
    assert errors.coverage == 0.0
    assert errors.errors == 3


def test_unknown_label_is_rejected():
    with pytest.raises(ValueError, match="thumbs_up"):
        agreement([("thumbs_up", True)])


def test_low_confidence_reason_names_the_counts():
    reason = low_confidence_reason(agreement(_pairs(tp=4, tn=3, fp=2, fn=1)))
    assert reason == "Agrees with 7 of 10 labels (70%) on held-out traces; below the 80% bar"


def test_agreement_at_the_bar_is_not_flagged():
    assert low_confidence_reason(agreement(_pairs(tp=4, tn=4, fp=1, fn=1))) is None


def test_low_coverage_and_no_labels_are_flagged():
    low_coverage = agreement(_pairs(tp=5, tn=3, errors=4))
    assert "only 8 of 12" in low_confidence_reason(low_coverage, scope="training traces")
    assert low_confidence_reason(agreement([])).startswith("No labelled")


def test_grouped_folds_keep_groups_together_and_cover_everything():
    groups = [f"g{i // 2}" for i in range(20)]
    labels = [i % 4 < 2 for i in range(20)]
    folds = grouped_folds(groups, k=5, labels=labels)
    assert len(folds) == 5
    assert sorted(i for fold in folds for i in fold) == list(range(20))
    for fold in folds:
        assert {groups[i] for i in fold}.isdisjoint(
            {groups[i] for other in folds if other is not fold for i in other}
        )
        # Stratified: with 5 good and 5 bad groups, every fold holds both labels.
        assert {labels[i] for i in fold} == {True, False}


def test_grouped_folds_are_deterministic_and_seeded():
    groups = [f"g{i}" for i in range(30)]
    assert grouped_folds(groups, k=3) == grouped_folds(list(groups), k=3)
    assert grouped_folds(groups, k=3, seed=1) != grouped_folds(groups, k=3, seed=2)


def test_fewer_groups_than_folds_gives_one_fold_per_group():
    assert sorted(grouped_folds(["a", "b", "a"], k=5)) == [[0, 2], [1]]


def test_holdout_split_is_grouped_and_sized():
    groups = [f"g{i // 2}" for i in range(100)]
    train, test = holdout_split(groups, test_fraction=0.2, seed=3)
    assert sorted(train + test) == list(range(100))
    assert {groups[i] for i in train}.isdisjoint({groups[i] for i in test})
    assert len(test) == 20
    assert holdout_split(groups, test_fraction=0.2, seed=3) == (train, test)


def test_holdout_split_holds_out_both_verdicts_in_proportion_whatever_the_ids():
    # 24 traces, 12 good: unstratified, a hash of the ids held out five of one verdict in
    # about one split of 27, and the held-out κ of every eval was then undefined.
    labels = [i % 2 == 0 for i in range(24)]
    for offset in range(200):
        groups = [f"trace-{offset * 24 + i}" for i in range(24)]
        train, test = holdout_split(groups, labels=labels, test_fraction=0.2)
        assert len(test) == 5 and sorted(train + test) == list(range(24))
        assert {labels[i] for i in test} == {True, False}
    skewed = [i < 4 for i in range(40)]  # four good of 40: one good held out
    train, test = holdout_split([f"t{i}" for i in range(40)], labels=skewed, test_fraction=0.2)
    assert len(test) == 8 and sum(skewed[i] for i in test) == 1


def test_holdout_split_rejects_bad_fraction():
    with pytest.raises(ValueError):
        holdout_split(["a"], test_fraction=1.5)
