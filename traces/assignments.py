"""Review queues with assignees: who labels which trace of an eval set."""

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q

from iofold.lib.fields import possible_ids
from traces.exceptions import TraceError
from traces.models import EvalSet, Feedback, LabelAssignment, Trace
from workspaces.models import Membership

# One click assigns at most this many traces; assigning again takes the next ones.
MAX_ASSIGN = 2_000


def _reviewers(eval_set: EvalSet, user_ids: Iterable[int]) -> list:
    """The users among ``user_ids`` who may label in the set's workspace, in the given order."""
    wanted = list(dict.fromkeys(int(pk) for pk in user_ids))
    members = {
        m.user_id: m.user
        for m in Membership.objects.for_workspace(eval_set.workspace_id)
        .filter(user_id__in=possible_ids(wanted))
        .select_related("user")
        if m.can_write
    }
    missing = [pk for pk in wanted if pk not in members]
    if missing or not wanted:
        raise TraceError("Pick reviewers among the workspace's members who can label.")
    return [members[pk] for pk in wanted]


def _unassigned_unlabelled(eval_set: EvalSet):
    labelled = Feedback.objects.filter(eval_set=eval_set, trace=OuterRef("pk"))
    assigned = LabelAssignment.objects.filter(eval_set=eval_set, trace=OuterRef("pk"))
    return (
        Trace.objects.in_eval_set(eval_set)
        .exclude(Exists(labelled))
        .exclude(Exists(assigned))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def assign_round_robin(
    *, eval_set: EvalSet, reviewer_ids: Iterable[int], agreement_target: int, assigned_by
) -> int:
    """Share the set's unlabelled, unassigned traces among the reviewers; return how many
    assignments were made.

    The first ``agreement_target`` traces go to every reviewer, so their labels overlap
    and their agreement (κ) can be measured; the rest go to one reviewer each in turn,
    starting with whoever has the fewest.
    """
    if eval_set.is_archived:
        raise TraceError("This eval set is archived.")
    if not isinstance(agreement_target, int) or not 0 <= agreement_target <= 1_000:
        raise TraceError("The labels for agreement must be between 0 and 1000.")
    reviewers = _reviewers(eval_set, reviewer_ids)
    if agreement_target and len(reviewers) < 2:
        raise TraceError("Agreement needs at least two reviewers.")
    with transaction.atomic():
        load = dict(
            LabelAssignment.objects.filter(eval_set=eval_set, assignee__in=reviewers)
            .values_list("assignee_id")
            .annotate(n=Count("id"))
        )
        shared_have = (
            LabelAssignment.objects.filter(eval_set=eval_set)
            .values("trace_id")
            .annotate(n=Count("assignee", distinct=True))
            .filter(n__gte=2)
            .count()
        )
        trace_ids = list(_unassigned_unlabelled(eval_set)[:MAX_ASSIGN])
        shared = max(agreement_target - shared_have, 0)
        rows = [
            LabelAssignment(
                workspace_id=eval_set.workspace_id,
                eval_set=eval_set,
                trace_id=pk,
                assignee=reviewer,
                assigned_by=assigned_by,
            )
            for pk in trace_ids[:shared]
            for reviewer in reviewers
        ]
        turn = sorted(reviewers, key=lambda r: load.get(r.pk, 0))
        rows += [
            LabelAssignment(
                workspace_id=eval_set.workspace_id,
                eval_set=eval_set,
                trace_id=pk,
                assignee=turn[index % len(turn)],
                assigned_by=assigned_by,
            )
            for index, pk in enumerate(trace_ids[shared:])
        ]
        LabelAssignment.objects.bulk_create(rows, ignore_conflicts=True)
        if eval_set.agreement_target != agreement_target:
            eval_set.agreement_target = agreement_target
            eval_set.save(update_fields=["agreement_target", "updated_at"])
    return len(rows)


def assign_trace(*, eval_set: EvalSet, trace: Trace, reviewer_id: int, assigned_by) -> None:
    """Put one trace in one reviewer's queue, by hand."""
    (reviewer,) = _reviewers(eval_set, [reviewer_id])
    if not Trace.objects.in_eval_set(eval_set).filter(pk=trace.pk).exists():
        raise TraceError("This trace is not in the eval set.")
    LabelAssignment.objects.get_or_create(
        eval_set=eval_set,
        trace=trace,
        assignee=reviewer,
        defaults={"workspace_id": eval_set.workspace_id, "assigned_by": assigned_by},
    )


def assign_selected(
    *, eval_set: EvalSet, trace_ids: Iterable[int], reviewer_id: int, assigned_by
) -> int:
    """Put the traces picked on the trace list into the set (a hand-picked one) and in one
    reviewer's queue; return how many assignments are new. Unknown ids raise, and then
    nothing is written."""
    from traces.services import add_traces_to_eval_set

    wanted = list(dict.fromkeys(int(pk) for pk in trace_ids))
    (reviewer,) = _reviewers(eval_set, [reviewer_id])
    with transaction.atomic():
        add_traces_to_eval_set(eval_set=eval_set, trace_ids=wanted)
        # In a conversation set a turn stands for its conversation, which its anchor is.
        anchors = Trace.objects.filter(pk__in=wanted).values("conversation__anchor_id")
        members = list(
            Trace.objects.in_eval_set(eval_set)
            .filter(Q(pk__in=wanted) | Q(pk__in=anchors))
            .values_list("pk", flat=True)
        )
        existing = set(
            LabelAssignment.objects.filter(
                eval_set=eval_set, assignee=reviewer, trace_id__in=members
            ).values_list("trace_id", flat=True)
        )
        LabelAssignment.objects.bulk_create(
            [
                LabelAssignment(
                    workspace_id=eval_set.workspace_id,
                    eval_set=eval_set,
                    trace_id=pk,
                    assignee=reviewer,
                    assigned_by=assigned_by,
                )
                for pk in members
                if pk not in existing
            ],
            ignore_conflicts=True,
        )
    return len(set(members) - existing)


def release_assignments(*, workspace_id: int, user_id: int) -> int:
    """Delete the user's assignments in the workspace that they have not labelled; return
    how many. The labelled ones stay, as their labels do, for the reviewers' figures."""
    labelled = Feedback.objects.filter(
        eval_set=OuterRef("eval_set"), trace=OuterRef("trace"), user=user_id
    )
    deleted, _ = (
        LabelAssignment.objects.for_workspace(workspace_id)
        .filter(assignee=user_id)
        .exclude(Exists(labelled))
        .delete()
    )
    return deleted
