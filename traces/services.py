"""Writes for eval sets and labels; views, the API and the demo command all call these."""

from collections.abc import Iterable, Mapping

from django.db import IntegrityError, transaction
from django.utils import timezone

from iofold.lib import jsontext
from iofold.lib.fields import possible_ids
from iofold.lib.text import has_nul
from traces.constants import MAX_CRITERIA_CHARS
from traces.exceptions import LabelNotYours, TraceError, TraceNotFound
from traces.filters import TraceFilters
from traces.models import EvalSet, EvalSetTrace, Feedback, LabelChange, Trace
from workspaces.models import Membership, Workspace

RATINGS = tuple(Feedback.Rating.values)


def _check_name(*, workspace: Workspace, name: str, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise TraceError("Give the eval set a name.")
    longest = EvalSet._meta.get_field("name").max_length
    if len(name) > longest:
        raise TraceError(f"An eval set's name is at most {longest} characters.")
    if has_nul(name):
        raise TraceError("An eval set's name cannot contain a NUL character.")
    clash = EvalSet.objects.for_workspace(workspace).active().filter(name=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise TraceError(f"An eval set named “{name}” already exists.")
    return name


def _check_fields(*, criteria: str, target_labels: int, source_kind: str) -> None:
    if not (criteria or "").strip():
        raise TraceError("Describe in plain words what makes a trace good.")
    if has_nul(criteria):
        raise TraceError("The criteria cannot contain a NUL character.")
    if len(criteria) > MAX_CRITERIA_CHARS:
        raise TraceError(
            f"The criteria are {len(criteria):,} characters long: at most "
            f"{MAX_CRITERIA_CHARS:,} are allowed."
        )
    if not isinstance(target_labels, int) or not 1 <= target_labels <= 10_000:
        raise TraceError("The target number of labels must be between 1 and 10000.")
    if source_kind not in EvalSet.SourceKind.values:
        raise TraceError(f"Unknown source “{source_kind}”.")


def _check_unit(*, unit: str, idle_minutes: int) -> None:
    if unit not in EvalSet.Unit.values:
        raise TraceError(f"Unknown unit “{unit}”: judge a trace or a conversation.")
    if not isinstance(idle_minutes, int) or not 1 <= idle_minutes <= 7 * 24 * 60:
        raise TraceError("The idle time must be between 1 minute and 7 days.")


def create_eval_set(
    *,
    workspace: Workspace,
    name: str,
    criteria: str,
    created_by=None,
    target_labels: int = 10,
    source_kind: str = EvalSet.SourceKind.MANUAL,
    saved_filter: Mapping | None = None,
    trace_ids: Iterable[int] = (),
    score_to_langfuse: bool = False,
    unit: str = EvalSet.Unit.TRACE,
    conversation_idle_minutes: int = 30,
) -> EvalSet:
    """Create an eval set, optionally with hand-picked traces (or their conversations)."""
    name = _check_name(workspace=workspace, name=name)
    _check_fields(criteria=criteria, target_labels=target_labels, source_kind=source_kind)
    _check_unit(unit=unit, idle_minutes=conversation_idle_minutes)
    with transaction.atomic():
        eval_set = EvalSet(
            workspace=workspace,
            name=name,
            criteria=criteria.strip(),
            target_labels=target_labels,
            source_kind=source_kind,
            # Normalised so a saved filter always reads back the way the trace list wrote it.
            saved_filter=TraceFilters.from_data(saved_filter).to_data(),
            score_to_langfuse=score_to_langfuse,
            unit=unit,
            conversation_idle_minutes=conversation_idle_minutes,
            created_by=created_by,
        )
        eval_set.full_clean()
        eval_set.save()
        trace_ids = list(trace_ids)
        if trace_ids:
            add_traces_to_eval_set(eval_set=eval_set, trace_ids=trace_ids)
    return eval_set


def update_eval_set(
    *,
    eval_set: EvalSet,
    name: str | None = None,
    criteria: str | None = None,
    target_labels: int | None = None,
    source_kind: str | None = None,
    saved_filter: Mapping | None = None,
    score_to_langfuse: bool | None = None,
    unit: str | None = None,
    conversation_idle_minutes: int | None = None,
) -> EvalSet:
    """Change the given fields of an eval set; labels already given are kept.

    The unit cannot change once the set has labels: they judge what the set judged.
    """
    changed = []
    relabel = unit is not None and unit != eval_set.unit
    if relabel and Feedback.objects.filter(eval_set=eval_set).exists():
        raise TraceError(
            f"This eval set has labels of single {eval_set.get_unit_display().lower()}s; "
            f"create a new set to judge {EvalSet.Unit(unit).label.lower()}s."
        )
    _check_unit(
        unit=unit if unit is not None else eval_set.unit,
        idle_minutes=conversation_idle_minutes
        if conversation_idle_minutes is not None
        else eval_set.conversation_idle_minutes,
    )
    if name is not None and name.strip() != eval_set.name:
        eval_set.name = _check_name(workspace=eval_set.workspace, name=name, exclude_pk=eval_set.pk)
        changed.append("name")
    for field, value in (
        ("criteria", criteria.strip() if criteria is not None else None),
        ("target_labels", target_labels),
        ("source_kind", source_kind),
        ("score_to_langfuse", score_to_langfuse),
        ("unit", unit),
        ("conversation_idle_minutes", conversation_idle_minutes),
    ):
        if value is not None and getattr(eval_set, field) != value:
            setattr(eval_set, field, value)
            changed.append(field)
    if saved_filter is not None:
        eval_set.saved_filter = TraceFilters.from_data(saved_filter).to_data()
        changed.append("saved_filter")
    _check_fields(
        criteria=eval_set.criteria,
        target_labels=eval_set.target_labels,
        source_kind=eval_set.source_kind,
    )
    if changed:
        eval_set.save(update_fields=[*changed, "updated_at"])
    return eval_set


def archive_eval_set(*, eval_set: EvalSet) -> EvalSet:
    """Hide an eval set from the lists and the review flow; its labels are kept."""
    if eval_set.archived_at is None:
        eval_set.archived_at = timezone.now()
        eval_set.save(update_fields=["archived_at", "updated_at"])
    return eval_set


def restore_eval_set(*, eval_set: EvalSet) -> EvalSet:
    """Bring an archived eval set back, unless an active one has taken its name."""
    if eval_set.archived_at is not None:
        _check_name(workspace=eval_set.workspace, name=eval_set.name, exclude_pk=eval_set.pk)
        eval_set.archived_at = None
        eval_set.save(update_fields=["archived_at", "updated_at"])
    return eval_set


def add_traces_to_eval_set(*, eval_set: EvalSet, trace_ids: Iterable[int]) -> int:
    """Hand-pick traces into the set; return how many were new. Unknown ids raise."""
    wanted = list(dict.fromkeys(int(pk) for pk in trace_ids))
    if not wanted:
        raise TraceError("Select at least one trace.")
    if eval_set.is_archived:
        raise TraceError("This eval set is archived.")
    found = dict(
        Trace.objects.for_workspace(eval_set.workspace_id)
        .filter(pk__in=possible_ids(wanted))
        .values_list("pk", "conversation__anchor_id")
    )
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise TraceNotFound(missing)
    if eval_set.unit == EvalSet.Unit.CONVERSATION:
        # Any turn picks its whole conversation, which its anchor turn stands for.
        loose = [pk for pk in wanted if found[pk] is None]
        if loose:
            raise TraceError(
                f"{len(loose)} of the selected traces belong to no conversation (they carry "
                "no session id); this eval set judges conversations."
            )
        wanted = list(dict.fromkeys(found[pk] for pk in wanted))
    existing = set(
        EvalSetTrace.objects.filter(eval_set=eval_set, trace_id__in=wanted).values_list(
            "trace_id", flat=True
        )
    )
    new = [
        EvalSetTrace(workspace_id=eval_set.workspace_id, eval_set=eval_set, trace_id=pk)
        for pk in wanted
        if pk not in existing
    ]
    # ignore_conflicts: two people adding the same trace at once both succeed.
    EvalSetTrace.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def remove_trace_from_eval_set(*, eval_set: EvalSet, trace: Trace) -> None:
    """Take a hand-picked trace out of the set; its labels stay for the record."""
    EvalSetTrace.objects.filter(eval_set=eval_set, trace=trace).delete()


def _audit(feedback: Feedback, *, action: str, changed_by, before: Feedback | None) -> None:
    LabelChange.objects.create(
        workspace_id=feedback.workspace_id,
        eval_set_id=feedback.eval_set_id,
        trace_id=feedback.trace_id,
        labeller_id=feedback.user_id,
        changed_by=changed_by,
        action=action,
        origin=feedback.origin,
        rating_before=before.rating if before else "",
        note_before=before.note if before else "",
        rating_after="" if action == LabelChange.Action.REMOVED else feedback.rating,
        note_after="" if action == LabelChange.Action.REMOVED else feedback.note,
    )


def _clean_note(note: str | None) -> str:
    """Return a label's note as stored; raise ``TraceError`` for one no text column holds.

    A note from elsewhere (a source's score comment) may hold a NUL or a lone surrogate:
    refused here, one label, rather than failing a whole import in the database.
    """
    note = (note or "").strip()[:5000]
    if problem := jsontext.text_problem(note):
        raise TraceError(f"The note {problem}.")
    return note


def record_feedback(
    *,
    eval_set: EvalSet,
    trace: Trace,
    user,
    rating: str,
    note: str = "",
    origin: str = Feedback.Origin.REVIEW,
) -> tuple[Feedback, bool]:
    """Store this reviewer's label of the trace (replacing an earlier one); return it and
    whether it is new. Every change lands in the set's audit (``LabelChange``)."""
    if rating not in RATINGS:
        raise TraceError(f"Rating must be one of {', '.join(RATINGS)}.")
    if trace.workspace_id != eval_set.workspace_id:
        # Callers resolve both through the workspace; this guards against a mixed-up caller.
        raise TraceNotFound([trace.pk])
    if eval_set.is_archived:
        raise TraceError("This eval set is archived; restore it to label.")
    if not Trace.objects.in_eval_set(eval_set).filter(pk=trace.pk).exists():
        raise TraceError("This trace is not in the eval set.")
    note = _clean_note(note)
    with transaction.atomic():
        before = (
            Feedback.objects.select_for_update()
            .filter(trace=trace, eval_set=eval_set, user=user)
            .first()
        )
        if before is not None:
            return _replace_label(before, rating=rating, note=note, origin=origin, user=user)
        # One savepoint around the insert, not update_or_create()'s two and its second
        # read: a double-click racing the first insert hits the unique constraint, and the
        # row the other request wrote is updated instead.
        try:
            with transaction.atomic():
                feedback = Feedback.objects.create(
                    workspace_id=eval_set.workspace_id,
                    trace=trace,
                    eval_set=eval_set,
                    user=user,
                    rating=rating,
                    note=note,
                    origin=origin,
                )
        except IntegrityError as exc:
            try:
                before = Feedback.objects.select_for_update().get(
                    trace=trace, eval_set=eval_set, user=user
                )
            except Feedback.DoesNotExist:
                raise exc from None
            return _replace_label(before, rating=rating, note=note, origin=origin, user=user)
        _audit(feedback, action=LabelChange.Action.CREATED, changed_by=user, before=None)
    return feedback, True


def _replace_label(before: Feedback, *, rating: str, note: str, origin: str, user):
    """Overwrite a reviewer's stored label; audit it as a change when it differs."""
    previous = Feedback(rating=before.rating, note=before.note)
    before.rating, before.note, before.origin = rating, note, origin
    before.save(update_fields=["rating", "note", "origin", "updated_at"])
    if (previous.rating, previous.note) != (rating, note):
        _audit(before, action=LabelChange.Action.CHANGED, changed_by=user, before=previous)
    return before, False


def check_may_edit_label(feedback: Feedback, *, actor, role: str) -> None:
    """Reviewers change their own labels; owners and admins change anyone's.

    ``role`` is the actor's role in the workspace: a membership's, or an API token's (which
    is capped by its creator's).
    """
    if role == Membership.Role.VIEWER:
        raise LabelNotYours()
    if feedback.user_id != actor.pk and role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        raise LabelNotYours()


def edit_label(*, feedback: Feedback, actor, role: str, rating: str, note: str) -> Feedback:
    """Change a label's rating and note; its reviewer stays, the audit names the editor."""
    check_may_edit_label(feedback, actor=actor, role=role)
    if rating not in RATINGS:
        raise TraceError(f"Rating must be one of {', '.join(RATINGS)}.")
    note = _clean_note(note)
    if (feedback.rating, feedback.note) == (rating, note):
        return feedback
    with transaction.atomic():
        before = Feedback(rating=feedback.rating, note=feedback.note)
        feedback.rating, feedback.note = rating, note
        feedback.save(update_fields=["rating", "note", "updated_at"])
        _audit(feedback, action=LabelChange.Action.CHANGED, changed_by=actor, before=before)
    return feedback


def remove_label(*, feedback: Feedback, actor, role: str) -> None:
    """Delete a label; the audit keeps what it was and who removed it."""
    check_may_edit_label(feedback, actor=actor, role=role)
    with transaction.atomic():
        _audit(feedback, action=LabelChange.Action.REMOVED, changed_by=actor, before=feedback)
        feedback.delete()


def undo_last_feedback(*, eval_set: EvalSet, user) -> Feedback | None:
    """Delete this reviewer's most recent label in the set and return it (unsaved): its
    trace to review again and its note to offer back, so relabelling keeps what was written."""
    last = (
        Feedback.objects.filter(eval_set=eval_set, user=user)
        .select_related("trace")
        .order_by("-updated_at", "-id")
        .first()
    )
    if last is None:
        return None
    with transaction.atomic():
        _audit(last, action=LabelChange.Action.REMOVED, changed_by=user, before=last)
        last.delete()
    return last


def resolve_label(counts: Mapping[str, int]) -> str | None:
    """Return the majority rating of one trace's labels, or None for a tie or no labels."""
    ranked = sorted(((n, rating) for rating, n in counts.items() if n > 0), reverse=True)
    if not ranked or (len(ranked) > 1 and ranked[0][0] == ranked[1][0]):
        return None
    return ranked[0][1]
