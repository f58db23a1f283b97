"""Review queues with assignees and the agreement between reviewers."""

import pytest
from django.urls import reverse

from iofold.lib.kappa import cohen_kappa
from traces import assignments, selectors, services
from traces.exceptions import TraceError
from traces.models import LabelAssignment


def test_round_robin_shares_the_agreement_traces_and_splits_the_rest(
    workspace, owner, member, eval_set, traces
):
    made = assignments.assign_round_robin(
        eval_set=eval_set, reviewer_ids=[owner.pk, member.pk], agreement_target=2, assigned_by=owner
    )
    # 12 traces: 2 to both (4 assignments), 10 split 5 and 5.
    assert made == 14
    per_trace = {}
    for a in LabelAssignment.objects.filter(eval_set=eval_set):
        per_trace.setdefault(a.trace_id, set()).add(a.assignee_id)
    shared = [t for t, who in per_trace.items() if len(who) == 2]
    assert sorted(shared) == [traces[0].pk, traces[1].pk]
    mine = LabelAssignment.objects.filter(eval_set=eval_set, assignee=member).count()
    assert mine == 7
    # Assigning again finds nothing new to hand out.
    assert (
        assignments.assign_round_robin(
            eval_set=eval_set,
            reviewer_ids=[owner.pk, member.pk],
            agreement_target=2,
            assigned_by=owner,
        )
        == 0
    )


def test_reviewers_must_be_members_who_label(workspace, owner, viewer, outsider, eval_set):
    for bad in ([viewer.pk], [outsider.pk], []):
        with pytest.raises(TraceError):
            assignments.assign_round_robin(
                eval_set=eval_set, reviewer_ids=bad, agreement_target=0, assigned_by=owner
            )
    assert not LabelAssignment.objects.exists()


def test_review_serves_my_assigned_traces_first_and_home_lists_my_queue(
    login, workspace, owner, member, eval_set, traces
):
    late = traces[-1]
    assignments.assign_trace(
        eval_set=eval_set, trace=late, reviewer_id=member.pk, assigned_by=owner
    )
    client = login(member)
    home = client.get(reverse("workspaces:home", kwargs={"slug": workspace.slug}))
    assert 'data-testid="my-queue"' in home.content.decode()
    assert "1 trace to label" in home.content.decode()
    card = client.get(reverse("traces:review", kwargs={"slug": workspace.slug, "pk": eval_set.pk}))
    assert card.context["trace"] == late
    services.record_feedback(eval_set=eval_set, trace=late, user=member, rating="positive")
    home = client.get(reverse("workspaces:home", kwargs={"slug": workspace.slug}))
    assert 'data-testid="my-queue"' not in home.content.decode()


def test_assign_view_and_bad_input(login, workspace, owner, member, eval_set):
    url = reverse("traces:evalset_assign", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
    client = login(owner)
    response = client.post(url, {"reviewer": ["x"], "agreement_target": "2"})
    assert response.status_code == 302 and not LabelAssignment.objects.exists()
    response = client.post(url, {"reviewer": [owner.pk, member.pk], "agreement_target": "3"})
    assert response.status_code == 302
    assert LabelAssignment.objects.filter(eval_set=eval_set).count() == 15
    eval_set.refresh_from_db()
    assert eval_set.agreement_target == 3


def test_kappa_between_two_reviewers_is_shown_with_a_warning_when_low(
    login, workspace, owner, member, eval_set, traces
):
    ratings_owner = ["positive", "negative", "positive", "negative"]
    ratings_member = ["negative", "positive", "positive", "negative"]
    for trace, a, b in zip(traces, ratings_owner, ratings_member, strict=False):
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating=a)
        services.record_feedback(eval_set=eval_set, trace=trace, user=member, rating=b)
    agreement = selectors.reviewer_agreement(eval_set)
    assert agreement.kappa == pytest.approx(0.0)
    assert agreement.shared_traces == 4
    page = login(owner).get(eval_set.get_absolute_url()).content.decode()
    assert "Inter-reviewer κ: <strong>0.00</strong> on 4 shared traces" in page
    assert 'data-testid="reviewer-warning"' in page


def test_reviewers_who_agree_get_no_warning(workspace, owner, member, eval_set, traces):
    for trace, rating in zip(traces, ["positive", "negative", "positive", "neutral"], strict=False):
        for user in (owner, member):
            services.record_feedback(eval_set=eval_set, trace=trace, user=user, rating=rating)
    agreement = selectors.reviewer_agreement(eval_set)
    assert agreement.kappa == pytest.approx(1.0)
    assert agreement.warning is None


def test_imported_labels_are_left_out_of_inter_reviewer_kappa(
    login, workspace, owner, member, eval_set, traces
):
    """The owner imported Langfuse scores (recorded as theirs) and reviewed two traces
    with the member: κ is measured on those two alone, not on the owner's imports."""
    for trace, rating in zip(traces[:2], ["positive", "negative"], strict=True):
        for user in (owner, member):
            services.record_feedback(eval_set=eval_set, trace=trace, user=user, rating=rating)
    for trace, imported, reviewed in zip(
        traces[2:6], ["positive"] * 4, ["negative", "negative", "positive", "negative"], strict=True
    ):
        services.record_feedback(
            eval_set=eval_set, trace=trace, user=owner, rating=imported, origin="langfuse"
        )
        services.record_feedback(eval_set=eval_set, trace=trace, user=member, rating=reviewed)

    agreement = selectors.reviewer_agreement(eval_set)

    assert agreement.kappa == pytest.approx(1.0)
    assert agreement.shared_traces == 2
    assert agreement.warning is None
    assert {line.email: (line.labelled, line.shared) for line in agreement.reviewers} == {
        owner.email: (6, 2),
        member.email: (6, 2),
    }
    page = login(owner).get(eval_set.get_absolute_url()).content.decode()
    assert "Inter-reviewer κ: <strong>1.00</strong> on 2 shared traces" in page
    assert "are left out of κ" in page


def test_cohen_kappa_known_value():
    # Wikipedia's worked example: 50 items, 20 yes/yes, 15 no/no, 5 yes/no, 10 no/yes: κ 0.4.
    pairs = [("y", "y")] * 20 + [("n", "n")] * 15 + [("y", "n")] * 5 + [("n", "y")] * 10
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([]) is None
    assert cohen_kappa([("y", "y"), ("y", "y")]) is None


def test_bulk_assign_from_the_trace_list_adds_to_the_set_and_fills_the_queue(
    login, workspace, other_workspace, owner, member, viewer, eval_set, traces
):
    from tests.traces.factories import TraceFactory

    new = TraceFactory(workspace=workspace)  # not in the set yet
    foreign = TraceFactory(workspace=other_workspace)
    url = reverse("traces:bulk_assign", kwargs={"slug": workspace.slug})
    client = login(owner)
    listing = client.get(reverse("traces:list", kwargs={"slug": workspace.slug})).content.decode()
    assert 'data-testid="bulk-assign"' in listing and member.email in listing

    picked = {"eval_set": eval_set.pk, "trace": [traces[0].pk, new.pk], "reviewer": member.pk}
    response = client.post(url, picked, follow=True)

    assert "2 traces assigned" in response.content.decode()
    assert set(
        LabelAssignment.objects.filter(eval_set=eval_set, assignee=member).values_list(
            "trace_id", flat=True
        )
    ) == {traces[0].pk, new.pk}
    assert eval_set.traces.filter(pk=new.pk).exists()
    home = login(member).get(reverse("workspaces:home", kwargs={"slug": workspace.slug}))
    assert "2 traces to label" in home.content.decode()
    # Again: nothing new. Another workspace's trace or a viewer as reviewer: nothing written.
    client = login(owner)
    assert "0 traces assigned" in client.post(url, picked, follow=True).content.decode()
    for bad in (
        {**picked, "trace": [traces[1].pk, foreign.pk]},
        {**picked, "trace": [traces[1].pk], "reviewer": viewer.pk},
        {**picked, "trace": []},
    ):
        client.post(url, bad)
    assert LabelAssignment.objects.count() == 2
