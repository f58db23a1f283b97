import pytest

from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import services
from traces.exceptions import TraceError, TraceNotFound
from traces.models import EvalSet, EvalSetTrace, Feedback, LabelChange, Trace
from traces.selectors import (
    eval_set_summary,
    eval_sets_of_trace,
    labelled_examples,
    next_trace_for_review,
    review_progress,
)


def test_create_eval_set_with_picked_traces(workspace, owner, traces):
    eval_set = services.create_eval_set(
        workspace=workspace,
        name="Refunds",
        criteria="Cites the policy.",
        created_by=owner,
        trace_ids=[traces[0].pk, traces[1].pk, traces[0].pk],
    )
    assert eval_set.target_labels == 10
    assert list(Trace.objects.in_eval_set(eval_set).order_by("pk")) == traces[:2]


def test_eval_set_names_are_unique_among_active_sets(workspace, owner):
    first = services.create_eval_set(workspace=workspace, name="A", criteria="c")
    with pytest.raises(TraceError):
        services.create_eval_set(workspace=workspace, name="A", criteria="c")
    services.archive_eval_set(eval_set=first)
    services.create_eval_set(workspace=workspace, name="A", criteria="c")
    with pytest.raises(TraceError):
        services.restore_eval_set(eval_set=first)


@pytest.mark.parametrize(
    "changes", [{"criteria": "  "}, {"target_labels": 0}, {"source_kind": "magic"}]
)
def test_invalid_eval_set_fields_are_refused(workspace, changes):
    values = {"name": "X", "criteria": "good", "target_labels": 10, "source_kind": "manual"}
    with pytest.raises(TraceError):
        services.create_eval_set(workspace=workspace, **{**values, **changes})


def test_update_eval_set_normalises_the_saved_filter(workspace):
    eval_set = services.create_eval_set(workspace=workspace, name="X", criteria="c")
    services.update_eval_set(
        eval_set=eval_set,
        source_kind="filter",
        saved_filter={"tag": "prod", "has_error": "1", "bogus": "x", "date_from": "nope"},
    )
    eval_set.refresh_from_db()
    assert eval_set.saved_filter == {"tag": "prod", "has_error": "true"}


def test_filter_eval_set_reviews_matching_traces_only(workspace, owner):
    good = TraceFactory(workspace=workspace, tags=["prod"])
    TraceFactory(workspace=workspace, tags=["staging"])
    eval_set = services.create_eval_set(
        workspace=workspace,
        name="P",
        criteria="c",
        source_kind="filter",
        saved_filter={"tag": "prod"},
    )
    assert list(Trace.objects.in_eval_set(eval_set)) == [good]
    assert next_trace_for_review(eval_set=eval_set, user=owner) == good


def test_adding_another_workspaces_trace_is_refused(workspace, other_workspace, eval_set):
    foreign = TraceFactory(workspace=other_workspace)
    with pytest.raises(TraceNotFound) as exc:
        services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[foreign.pk, 999_999])
    assert exc.value.missing == [foreign.pk, 999_999]
    assert not EvalSetTrace.objects.filter(trace=foreign).exists()


def test_record_feedback_keeps_one_label_per_reviewer(eval_set, traces, owner, member):
    _, created = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="positive"
    )
    assert created
    fb, created = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="negative", note=" wrong order "
    )
    assert not created and fb.rating == "negative" and fb.note == "wrong order"
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=member, rating="positive")
    assert Feedback.objects.filter(trace=traces[0]).count() == 2


def test_a_label_racing_the_first_insert_updates_that_row(eval_set, traces, owner, monkeypatch):
    """A double-click: the other request inserts the label between our read and insert."""
    real_select_for_update = Feedback.objects.select_for_update
    reads = []

    def read_then_other_request_inserts():
        if reads:
            return real_select_for_update()
        reads.append(1)
        Feedback.objects.bulk_create(
            [
                Feedback(
                    workspace=eval_set.workspace,
                    eval_set=eval_set,
                    trace=traces[0],
                    user=owner,
                    rating="positive",
                )
            ]
        )
        return Feedback.objects.none()  # what our read saw, before that insert

    monkeypatch.setattr(Feedback.objects, "select_for_update", read_then_other_request_inserts)
    fb, created = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="negative", note="late"
    )
    assert not created
    stored = Feedback.objects.get(trace=traces[0], eval_set=eval_set, user=owner)
    assert (stored.pk, stored.rating, stored.note) == (fb.pk, "negative", "late")
    # The other request's insert is the creation; this one's overwrite is audited as a change.
    audit = LabelChange.objects.filter(trace=traces[0], eval_set=eval_set)
    assert list(audit.values_list("action", flat=True)) == [LabelChange.Action.CHANGED]


def test_bad_rating_is_refused(eval_set, traces, owner):
    with pytest.raises(TraceError):
        services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="meh")


def test_labelling_a_trace_outside_the_set_is_refused(workspace, eval_set, owner):
    stray = TraceFactory(workspace=workspace)
    with pytest.raises(TraceError):
        services.record_feedback(eval_set=eval_set, trace=stray, user=owner, rating="positive")


def test_labelling_another_workspaces_trace_is_refused(other_workspace, eval_set, owner):
    foreign = TraceFactory(workspace=other_workspace)
    with pytest.raises(TraceNotFound):
        services.record_feedback(eval_set=eval_set, trace=foreign, user=owner, rating="positive")


def test_archived_set_takes_no_labels(eval_set, traces, owner):
    services.archive_eval_set(eval_set=eval_set)
    with pytest.raises(TraceError):
        services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")


def test_undo_removes_only_my_latest_label_and_requeues_it(eval_set, traces, owner, member):
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    services.record_feedback(eval_set=eval_set, trace=traces[1], user=owner, rating="negative")
    services.record_feedback(eval_set=eval_set, trace=traces[2], user=member, rating="neutral")
    assert next_trace_for_review(eval_set=eval_set, user=owner) == traces[2]
    assert services.undo_last_feedback(eval_set=eval_set, user=owner).trace == traces[1]
    assert next_trace_for_review(eval_set=eval_set, user=owner) == traces[1]
    assert Feedback.objects.filter(user=member).count() == 1
    assert services.undo_last_feedback(eval_set=eval_set, user=owner).trace == traces[0]
    assert services.undo_last_feedback(eval_set=eval_set, user=owner) is None


def test_skipped_traces_come_back_when_nothing_else_is_left(eval_set, traces, owner):
    for trace in traces[1:]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    assert next_trace_for_review(eval_set=eval_set, user=owner, skipped=[traces[0].pk]) == traces[0]


@pytest.mark.parametrize(
    ("counts", "label"),
    [
        ({"positive": 2, "negative": 1}, "positive"),
        ({"positive": 1, "negative": 1}, None),
        ({"positive": 1, "negative": 1, "neutral": 2}, "neutral"),
        ({"positive": 2, "negative": 2, "neutral": 1}, None),
        ({"negative": 1}, "negative"),
        ({}, None),
        ({"positive": 0, "negative": 1}, "negative"),
    ],
)
def test_resolve_label_takes_the_majority_and_flags_ties(counts, label):
    assert services.resolve_label(counts) == label


def test_summary_splits_majority_labels_and_measures_agreement(
    eval_set, traces, owner, member, admin_user
):
    rate = services.record_feedback
    # t0: all three agree positive; t1: 2 negative vs 1 positive; t2: tie; t3: one neutral.
    for user in (owner, member, admin_user):
        rate(eval_set=eval_set, trace=traces[0], user=user, rating="positive")
    rate(eval_set=eval_set, trace=traces[1], user=owner, rating="negative")
    rate(eval_set=eval_set, trace=traces[1], user=member, rating="negative")
    rate(eval_set=eval_set, trace=traces[1], user=admin_user, rating="positive")
    rate(eval_set=eval_set, trace=traces[2], user=owner, rating="positive")
    rate(eval_set=eval_set, trace=traces[2], user=member, rating="negative")
    rate(eval_set=eval_set, trace=traces[3], user=owner, rating="neutral")
    summary = eval_set_summary(eval_set)
    assert (summary.positive, summary.negative, summary.neutral) == (1, 1, 1)
    assert summary.ties == [traces[2].pk]
    assert sorted(summary.disagreements) == sorted([traces[1].pk, traces[2].pk])
    assert summary.labelled_traces == 4 and summary.reviewers == 3
    # Pairs: t0 3/3 agree, t1 1/3, t2 0/1 -> 4 of 7.
    assert summary.agreement == pytest.approx(4 / 7)
    assert summary.eval_count is None and summary.best_agreement is None
    progress = review_progress(eval_set=eval_set, user=owner)
    assert progress.labelled_traces == 4 and progress.mine == 4 and progress.disagreements == 2
    # Only t0 and t1 have a good or bad majority: the tie and the neutral count for nothing,
    # in the review's progress as on the set's page.
    assert progress.decided == summary.decided == 2
    # The review's ✓/✗/– are the set page's: traces by majority label, not single labels.
    assert (progress.positive, progress.negative, progress.neutral) == (1, 1, 1)
    assert not progress.ready and progress.remaining == 8


def test_all_one_way_labels_raise_an_imbalance_warning(eval_set, traces, owner):
    for trace in traces[:3]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    assert review_progress(eval_set=eval_set, user=owner).imbalance is None
    services.record_feedback(eval_set=eval_set, trace=traces[3], user=owner, rating="positive")
    assert "labels are good" in review_progress(eval_set=eval_set, user=owner).imbalance
    services.record_feedback(eval_set=eval_set, trace=traces[4], user=owner, rating="negative")
    assert eval_set_summary(eval_set).imbalance is None


def test_labelled_examples_use_majority_drop_ties_and_keep_neutral(eval_set, traces, owner, member):
    rate = services.record_feedback
    rate(eval_set=eval_set, trace=traces[0], user=owner, rating="positive", note="cites policy")
    rate(eval_set=eval_set, trace=traces[0], user=member, rating="positive", note="fine")
    rate(eval_set=eval_set, trace=traces[1], user=owner, rating="positive")
    rate(eval_set=eval_set, trace=traces[1], user=member, rating="negative")
    rate(eval_set=eval_set, trace=traces[2], user=owner, rating="neutral")
    rate(eval_set=eval_set, trace=traces[3], user=owner, rating="negative", note="wrong order")
    examples = {ex.trace: (ex.label, ex.notes) for ex in labelled_examples(eval_set)}
    assert examples == {
        traces[0]: ("positive", ["cites policy", "fine"]),
        traces[2]: ("neutral", []),
        traces[3]: ("negative", ["wrong order"]),
    }
    trace, label, notes = labelled_examples(eval_set)[0]
    assert isinstance(trace, Trace)


def test_ready_when_target_reached(workspace, owner, traces):
    eval_set = EvalSetFactory(workspace=workspace, target_labels=2)
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces[:3]])
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    assert not review_progress(eval_set=eval_set, user=owner).ready
    services.record_feedback(eval_set=eval_set, trace=traces[1], user=owner, rating="negative")
    assert review_progress(eval_set=eval_set, user=owner).ready
    assert eval_set_summary(eval_set).ready


def test_eval_numbers_come_from_the_composition_layer(eval_set, monkeypatch):
    from iofold import composition

    monkeypatch.setattr(
        composition,
        "eval_set_stats",
        lambda ids: {pk: {"eval_count": 3, "best_agreement": 0.9} for pk in ids},
    )
    summary = eval_set_summary(eval_set)
    assert (summary.eval_count, summary.best_agreement) == (3, 0.9)


def test_archived_sets_drop_out_of_active(eval_set):
    services.archive_eval_set(eval_set=eval_set)
    assert not EvalSet.objects.active().exists()


def test_seed_demo_labels_builds_a_labelled_set(workspace, owner, member, traces):
    from traces.demo import seed_demo_labels

    # Twelve labels: a tie or a neutral one does not count toward the target of ten.
    eval_set = seed_demo_labels(workspace, [owner, member], traces=12, labels=12)
    summary = eval_set_summary(eval_set)
    assert summary.labelled_traces == 12 and summary.ready
    assert summary.reviewers == 2
    assert seed_demo_labels(workspace, [owner, member]) == eval_set


def test_a_saved_label_filter_does_not_shrink_the_set_as_it_is_labelled(workspace, owner):
    trace = TraceFactory(workspace=workspace)
    eval_set = services.create_eval_set(
        workspace=workspace,
        name="U",
        criteria="c",
        source_kind="filter",
        saved_filter={"label": "unlabelled"},
    )
    services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    assert list(Trace.objects.in_eval_set(eval_set)) == [trace]


def test_next_trace_skips_the_labelled_head_of_the_queue(eval_set, traces, owner, member):
    for trace in traces[:5]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    services.record_feedback(eval_set=eval_set, trace=traces[6], user=owner, rating="negative")
    # Another reviewer's labels don't take traces out of this reviewer's queue.
    services.record_feedback(eval_set=eval_set, trace=traces[5], user=member, rating="neutral")
    assert next_trace_for_review(eval_set=eval_set, user=owner) == traces[5]
    skipped = [traces[5].pk, traces[7].pk]
    assert next_trace_for_review(eval_set=eval_set, user=owner, skipped=skipped) == traces[8]
    for trace in traces[7:]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    assert next_trace_for_review(eval_set=eval_set, user=owner, skipped=skipped) == traces[5]
    services.record_feedback(eval_set=eval_set, trace=traces[5], user=owner, rating="positive")
    assert next_trace_for_review(eval_set=eval_set, user=owner) is None


def test_review_progress_counts_in_one_query(
    eval_set, traces, owner, member, admin_user, django_assert_num_queries
):
    with django_assert_num_queries(1):
        empty = review_progress(eval_set=eval_set, user=owner)
    assert (empty.labelled_traces, empty.mine, empty.positive, empty.disagreements) == (0, 0, 0, 0)
    rate = services.record_feedback
    rate(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    rate(eval_set=eval_set, trace=traces[0], user=member, rating="positive")
    rate(eval_set=eval_set, trace=traces[1], user=member, rating="neutral")
    rate(eval_set=eval_set, trace=traces[1], user=admin_user, rating="negative")
    rate(eval_set=eval_set, trace=traces[2], user=owner, rating="negative")
    rate(eval_set=eval_set, trace=traces[2], user=member, rating="neutral")
    rate(eval_set=eval_set, trace=traces[2], user=admin_user, rating="positive")
    with django_assert_num_queries(1):
        progress = review_progress(eval_set=eval_set, user=owner)
    assert (progress.labelled_traces, progress.mine) == (3, 2)
    # Traces by majority label: t0 is good, t1 and t2 are ties.
    assert (progress.positive, progress.negative, progress.neutral) == (1, 0, 0)
    assert progress.disagreements == 2


def test_the_sets_a_trace_is_in_hand_picked_or_by_filter(workspace, owner, eval_set, traces):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    trace = TraceFactory(workspace=workspace, tags=["billing"])
    other = TraceFactory(workspace=workspace, tags=["other"])
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])

    def filter_set(tag, **fields):
        return EvalSetFactory(
            workspace=workspace,
            created_by=owner,
            source_kind=EvalSet.SourceKind.FILTER,
            saved_filter={"tag": tag},
            **fields,
        )

    billing = filter_set("billing")
    filter_set("refunds")
    filter_set("billing", archived_at=timezone.now())
    archived = EvalSetFactory(workspace=workspace, created_by=owner)
    services.add_traces_to_eval_set(eval_set=archived, trace_ids=[trace.pk])
    EvalSet.objects.filter(pk=archived.pk).update(archived_at=timezone.now())

    with CaptureQueriesContext(connection) as captured:
        assert eval_sets_of_trace(trace) == [eval_set, billing]
    assert eval_sets_of_trace(other) == []
    # One query for the sets (hand-picked ones with whether they hold it), one per filter set.
    filter_set("billing")
    with CaptureQueriesContext(connection) as more:
        assert len(eval_sets_of_trace(trace)) == 3
    assert (len(captured), len(more)) == (1 + 2, 1 + 3)
