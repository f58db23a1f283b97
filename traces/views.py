from functools import partial
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from integrations.constants import MAX_UPLOAD_BYTES
from integrations.forms import UploadForm
from iofold.composition import continuous_pause, eval_set_links
from iofold.lib.confirm import ask_first, confirmed
from iofold.lib.fields import whole_number
from iofold.lib.forms import form_status
from iofold.lib.fragments import fragment_or_page
from iofold.lib.redirects import safe_next
from traces import assignments, deletions, label_import, selectors, services
from traces.agents_responses import response_notes
from traces.exceptions import LabelNotYours, TraceError
from traces.filters import TraceFilters, read_conversation_filters
from traces.forms import (
    AddToEvalSetForm,
    AssignForm,
    BulkAssignForm,
    EvalSetForm,
    FeedbackForm,
    ScoreImportForm,
    SelectedTracesForm,
)
from traces.models import Conversation, DeletionRun, EvalSet, Feedback, ScoreImportRun, Trace
from workspaces.access import workspace_view
from workspaces.models import Membership

# Payloads longer than this are cut in the detail view until "show all" is asked for.
PREVIEW_CHARS = 20_000


def _eval_set(request, pk: int) -> EvalSet:
    eval_set = get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)
    # The set was looked up in this workspace: its URLs need the slug, not another query.
    eval_set.workspace = request.workspace
    return eval_set


def generate_url(eval_set: EvalSet) -> str | None:
    """Return the evals app's generate URL for the set, or None while that app has none."""
    for kwargs in ({"pk": eval_set.pk}, {"eval_set_pk": eval_set.pk}):
        try:
            return reverse("evals:generate", kwargs={"slug": eval_set.workspace.slug, **kwargs})
        except NoReverseMatch:
            continue
    return None


# --- traces -----------------------------------------------------------------------------


# The filter form's labels, to name a filter of the URL the list could not read.
FILTER_LABELS = {
    "date_from": "From",
    "date_to": "To",
    "has_error": "Errors",
    "label": "Labels",
    "integration": "Integration",
    "source": "Source",
    "state": "State",
}


@workspace_view
def trace_list(request):
    """Traces newest first with filters, search and keyset pages; select to add to a set."""
    filters = TraceFilters.from_data(request.GET)
    # A value that does not parse is dropped: say so, or the list reads as if it applied.
    unread = [(FILTER_LABELS[key], why) for key, why in filters.unread(request.GET).items()]
    cursor = request.GET.get("cursor")
    if cursor and selectors.decode_cursor(cursor) is None:
        unread.append(("Page", "not a link to a page of this list; the newest traces are shown."))
        cursor = None
    page = selectors.trace_page(workspace=request.workspace, filters=filters, cursor=cursor)
    query = filters.to_data()
    ctx = {
        "page": page,
        "filters": filters,
        "unread": unread,
        "query": urlencode(query),
        "next_query": urlencode({**query, "cursor": page.next_cursor})
        if page.next_cursor
        else None,
        "is_first_page": not cursor,
        "eval_sets": EvalSet.objects.for_workspace(request.workspace)
        .active()
        .filter(source_kind=EvalSet.SourceKind.MANUAL)
        .only("id", "name"),
        # A callable, so only the full page (the filter form) queries it, not the rows.
        "sources": partial(selectors.source_choices, request.workspace, keep=filters.source),
        "labellers": _labellers(request),
        # Row links are built from this prefix: a reverse() per row costs more than the query.
        "list_url": reverse("traces:list", kwargs={"slug": request.workspace.slug}),
    }
    if request.htmx and request.htmx.target == "trace-rows":
        return render(request, "traces/list.html#rows", ctx)
    return render(request, "traces/list.html", ctx)


@workspace_view
def trace_detail(request, pk: int):
    """One trace: input, the tree of steps, output and metadata."""
    trace = get_object_or_404(Trace.objects.for_workspace(request.workspace).present(), pk=pk)
    feedback = list(
        Feedback.objects.for_workspace(request.workspace)
        .filter(trace=trace)
        .select_related("user", "eval_set")
        # What the page shows: the columns of three whole rows cost more to compile than
        # to fetch.
        .only("rating", "note", "user__email", "eval_set__name")
    )
    mine = {fb.eval_set_id: fb for fb in feedback if fb.user_id == request.user.pk}
    label_sets = selectors.eval_sets_of_trace(trace)
    for eval_set in label_sets:
        # Their links need the slug: without this, one query per set for its workspace.
        eval_set.workspace = request.workspace
    full = request.GET.get("full") == "1"
    tree = selectors.shown_steps(trace.data, full=full)
    ctx = {
        "trace": trace,
        "labellers": _labellers(request),
        "tree": tree,
        "steps": tree.roots,
        "waterfall": selectors.waterfall(tree.roots),
        "feedback": feedback,
        "label_sets": [(eval_set, mine.get(eval_set.pk)) for eval_set in label_sets],
        "full": full,
        "preview_chars": PREVIEW_CHARS,
        "responses": response_notes(trace),
    }
    return render(request, "traces/detail.html", ctx)


@require_POST
@workspace_view
def add_to_eval_set(request):
    """Add the selected traces to a hand-picked eval set."""

    def add(eval_set: EvalSet, data: dict) -> str:
        added = services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=data["trace"])
        return f"Added {added} trace(s) to “{eval_set.name}”."

    return _act_on_selection(
        request, AddToEvalSetForm, act=add, invalid="Select an eval set and at least one trace."
    )


@require_POST
@workspace_view
def bulk_assign(request):
    """Add the selected traces to a hand-picked eval set and one reviewer's queue."""

    def assign(eval_set: EvalSet, data: dict) -> str:
        made = assignments.assign_selected(
            eval_set=eval_set,
            trace_ids=data["trace"],
            reviewer_id=data["reviewer"],
            assigned_by=request.user,
        )
        return f"{made} trace{'s' if made != 1 else ''} assigned in “{eval_set.name}”."

    return _act_on_selection(
        request,
        BulkAssignForm,
        act=assign,
        invalid="Select an eval set, a reviewer and at least one trace.",
    )


def _act_on_selection(request, form_class, *, act, invalid: str):
    """Bind the trace list's selection form and call ``act(eval_set, cleaned_data)``; flash
    what it reports, its refusal, or ``invalid``, then go back to the list."""
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, invalid)
    else:
        eval_set = _eval_set(request, form.cleaned_data["eval_set"])
        try:
            messages.success(request, act(eval_set, form.cleaned_data))
        except TraceError as exc:
            messages.error(request, exc.message)
    return redirect(
        safe_next(request, reverse("traces:list", kwargs={"slug": request.workspace.slug}))
    )


# --- eval sets --------------------------------------------------------------------------


@workspace_view
def evalset_list(request):
    """Eval sets with their labels split by rating, evals and agreement."""
    archived = request.GET.get("archived") == "1"
    sets = EvalSet.objects.for_workspace(request.workspace)
    sets = list(sets.archived() if archived else sets.active())
    for eval_set in sets:
        eval_set.workspace = request.workspace  # its link names the slug: no query per set
    summaries = selectors.eval_set_summaries(sets)
    ctx = {
        "summaries": [summaries[s.pk] for s in sets],
        "archived": archived,
        "deletions": list(deletions.unfinished_deletions(request.workspace)[:10]),
    }
    return render(request, "traces/evalset_list.html", ctx)


@workspace_view(writers_only=True)
def evalset_create(request):
    """Create an eval set; the trace list's filter or selection arrives pre-filled.

    The trace list's "New eval set from selection" POSTs its selection here with
    ``pick`` set (a POST, so the form's CSRF token never lands in a URL); that request
    only fills in the form, the next POST creates the set.
    """
    picking = request.method == "POST" and "pick" in request.POST
    initial = {
        "target_labels": 10,
        "source_kind": EvalSet.SourceKind.MANUAL,
        "unit": EvalSet.Unit.CONVERSATION
        if request.GET.get("unit") == "conversation"
        else EvalSet.Unit.TRACE,
        "conversation_idle_minutes": 30,
    }
    if "filter" in request.GET:
        initial.update(source_kind=EvalSet.SourceKind.FILTER, saved_filter=request.GET["filter"])
    source = request.POST if picking else request.GET
    picked = [pk for pk in source.getlist("trace") if pk.isdigit()]
    if picked:
        initial["trace_ids"] = ",".join(picked)
    bound = request.method == "POST" and not picking
    form = EvalSetForm(request.POST if bound else None, initial=initial)
    if picking and not picked:
        # Pre-filled with nothing, the form would go on to create an empty hand-picked set.
        ctx = {
            "form": form,
            "eval_set": None,
            "back_url": safe_next(
                request, reverse("traces:list", kwargs={"slug": request.workspace.slug})
            ),
        }
        return render(request, "traces/evalset_form.html", ctx, status=400)
    if bound and form.is_valid():
        data = form.cleaned_data
        try:
            eval_set = services.create_eval_set(
                workspace=request.workspace,
                name=data["name"],
                criteria=data["criteria"],
                target_labels=data["target_labels"],
                source_kind=data["source_kind"],
                saved_filter=data["saved_filter"],
                trace_ids=data["trace_ids"],
                score_to_langfuse=data["score_to_langfuse"],
                unit=data["unit"] or EvalSet.Unit.TRACE,
                conversation_idle_minutes=data["conversation_idle_minutes"] or 30,
                created_by=request.user,
            )
        except TraceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Eval set “{eval_set.name}” created.")
            return redirect(eval_set)
    ctx = {"form": form, "eval_set": None}
    return render(request, "traces/evalset_form.html", ctx, status=form_status(form))


@workspace_view(writers_only=True)
def evalset_edit(request, pk: int):
    eval_set = _eval_set(request, pk)
    form = EvalSetForm(request.POST or None, initial=EvalSetForm.initial_for(eval_set))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_eval_set(
                eval_set=eval_set,
                name=data["name"],
                criteria=data["criteria"],
                target_labels=data["target_labels"],
                source_kind=data["source_kind"],
                saved_filter=data["saved_filter"],
                score_to_langfuse=data["score_to_langfuse"],
                unit=data["unit"],
                conversation_idle_minutes=data["conversation_idle_minutes"],
            )
        except TraceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Eval set saved.")
            return redirect(eval_set)
    ctx = {"form": form, "eval_set": eval_set}
    return render(request, "traces/evalset_form.html", ctx, status=form_status(form))


@workspace_view
def evalset_detail(request, pk: int):
    """An eval set's criteria, label summary, warnings and the labels per trace."""
    eval_set = _eval_set(request, pk)
    summary = selectors.eval_set_summary(eval_set)
    ctx = {
        "eval_set": eval_set,
        "summary": summary,
        "labels": selectors.label_rows(eval_set=eval_set, limit=200),
        "origins": selectors.label_origins(eval_set),
        "agreement": selectors.reviewer_agreement(eval_set, summary),
        "labellers": _labellers(request),
        "changes": selectors.label_changes(eval_set, limit=20),
        "pending_count": Trace.objects.pending_review(eval_set, request.user).count(),
        "generate_url": generate_url(eval_set),
        "eval_links": eval_set_links(eval_set),
        "pause": continuous_pause(eval_set),
    }
    return render(request, "traces/evalset_detail.html", ctx)


@require_POST
@workspace_view
def evalset_archive(request, pk: int):
    eval_set = _eval_set(request, pk)
    services.archive_eval_set(eval_set=eval_set)
    messages.success(request, f"“{eval_set.name}” archived. Its labels are kept.")
    return redirect("traces:evalset_list", slug=request.workspace.slug)


@require_http_methods(["GET", "POST"])  # GET: the question only
@workspace_view(manage=True)
def evalset_delete(request, pk: int):
    """Delete the set with its labels and evals: hidden at once, deleted by a worker."""
    # Found while being deleted too: a second click leads to the same deletion's page.
    eval_set = get_object_or_404(
        EvalSet.objects.for_workspace(request.workspace, deleting=True), pk=pk
    )
    eval_set.workspace = request.workspace
    if not confirmed(request):
        return ask_first(
            request,
            question=f"Delete {eval_set.name} for good?",
            detail="Its labels, label history, assignments and evals are deleted with it; "
            "this cannot be undone. Archive it instead to keep them.",
            button="Delete for good",
            back_url=eval_set.get_absolute_url(),
        )
    run = deletions.request_eval_set_deletion(eval_set=eval_set, user=request.user)
    return redirect("traces:deletion", slug=request.workspace.slug, run_pk=run.pk)


@require_POST
@workspace_view(manage=True)
def delete_selected(request):
    """Delete the traces selected in the list: hidden at once, deleted by a worker."""
    form = SelectedTracesForm(request.POST)
    back = safe_next(request, reverse("traces:list", kwargs={"slug": request.workspace.slug}))
    if not form.is_valid():
        messages.error(request, "Select at least one trace to delete.")
        return redirect(back)
    ids = form.cleaned_data["trace"]
    if not confirmed(request):
        return ask_first(
            request,
            question=f"Delete {len(ids)} trace{pluralize(len(ids))} for good?",
            detail="Their labels and verdicts are deleted with them; this cannot be undone. "
            "A source that syncs them again brings them back.",
            button="Delete for good",
            back_url=back,
            keep={"trace": ids, "next": request.POST.get("next", "")},
        )
    try:
        run = deletions.request_traces_deletion(
            workspace=request.workspace, trace_ids=ids, user=request.user
        )
    except TraceError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    return redirect("traces:deletion", slug=request.workspace.slug, run_pk=run.pk)


@workspace_view
def deletion(request, run_pk: int):
    """A deletion's progress, then its outcome (htmx polls the fragment until final)."""
    run = get_object_or_404(DeletionRun.objects.for_workspace(request.workspace), pk=run_pk)
    if request.htmx:
        response = render(request, "traces/deletion.html#progress", {"run": run})
        return HttpResponseStopPolling(response.content) if run.is_final else response
    return render(request, "traces/deletion.html", {"run": run})


@require_POST
@workspace_view(manage=True)
def deletion_resume(request, run_pk: int):
    """Queue a failed deletion again; it carries on from what is left."""
    run = get_object_or_404(DeletionRun.objects.for_workspace(request.workspace), pk=run_pk)
    deletions.resume_deletion(run)
    return redirect("traces:deletion", slug=request.workspace.slug, run_pk=run.pk)


@require_POST
@workspace_view
def evalset_restore(request, pk: int):
    eval_set = _eval_set(request, pk)
    try:
        services.restore_eval_set(eval_set=eval_set)
        messages.success(request, f"“{eval_set.name}” restored.")
    except TraceError as exc:
        messages.error(request, exc.message)
    return redirect(eval_set)


@require_POST
@workspace_view
def evalset_remove_trace(request, pk: int, trace_pk: int):
    eval_set = _eval_set(request, pk)
    trace = get_object_or_404(Trace.objects.for_workspace(request.workspace), pk=trace_pk)
    services.remove_trace_from_eval_set(eval_set=eval_set, trace=trace)
    messages.success(request, "Trace removed from the eval set.")
    return redirect(eval_set)


def _import_page(request, eval_set, *, form=None, score_form=None, **extra):
    sources = label_import.score_sources(request.workspace)
    ctx = {
        "eval_set": eval_set,
        "form": form or UploadForm(),
        "score_form": score_form or ScoreImportForm(sources=sources),
        "has_sources": bool(sources),
        **extra,
    }
    return render(request, "traces/evalset_import.html", ctx, status=form_status(form, score_form))


@require_POST
@workspace_view
def evalset_import_scores(request, pk: int):
    """Queue turning a Langfuse score or LangSmith feedback on the set's synced traces into
    labels; a worker does it (see the run page)."""
    eval_set = _eval_set(request, pk)
    sources = label_import.score_sources(request.workspace)
    form = ScoreImportForm(request.POST, sources=sources)
    if form.is_valid():
        integration = next(i for i in sources if i.pk == form.cleaned_data["integration"])
        try:
            run = label_import.start_score_import(
                eval_set=eval_set,
                integration=integration,
                user=request.user,
                score_name=form.cleaned_data["score_name"],
                mapping=form.cleaned_data["mapping"],
            )
        except TraceError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect(
                "traces:evalset_import_scores_run",
                slug=request.workspace.slug,
                pk=eval_set.pk,
                run_pk=run.pk,
            )
    return _import_page(request, eval_set, score_form=form)


@workspace_view
def evalset_import_scores_run(request, pk: int, run_pk: int):
    """A score import's progress, then its report (htmx polls the fragment until final)."""
    eval_set = _eval_set(request, pk)
    run = get_object_or_404(
        ScoreImportRun.objects.for_workspace(request.workspace).filter(eval_set=eval_set),
        pk=run_pk,
    )
    if request.htmx:
        response = render(request, "traces/evalset_import.html#score_run", {"run": run})
        return HttpResponseStopPolling(response.content) if run.is_final else response
    return _import_page(request, eval_set, run=run)


@workspace_view(writers_only=True)
def evalset_import(request, pk: int):
    """Upload JSONL traces into the set; each line's `label` and `note` become labels."""
    eval_set = _eval_set(request, pk)
    form = UploadForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        if uploaded.size > MAX_UPLOAD_BYTES:
            form.add_error("file", f"The limit is {MAX_UPLOAD_BYTES // 1024 // 1024} MiB.")
        else:
            try:
                report = label_import.import_jsonl(
                    eval_set=eval_set, user=request.user, lines=uploaded
                )
            except TraceError as exc:
                form.add_error(None, exc.message)
    return _import_page(request, eval_set, form=form, report=report)


# --- review -----------------------------------------------------------------------------


def _skipped_key(eval_set: EvalSet) -> str:
    return f"review-skipped-{eval_set.pk}"


def _skipped(request, eval_set: EvalSet) -> list[int]:
    return request.session.get(_skipped_key(eval_set), [])


def _review_response(request, eval_set: EvalSet, *, trace=None, notice=None, status=200):
    """Render the review card (htmx) or page for ``trace`` or the next one in the queue."""
    mine, left_skipped = None, 0
    if trace is None:
        # The queue holds only traces this reviewer has not labelled: no label to look up.
        # Skipped traces do not come back on their own (skipping the last one showed it
        # again at once): when only they are left, the page says so and offers them.
        skipped = _skipped(request, eval_set)
        trace = selectors.next_trace_for_review(
            eval_set=eval_set, user=request.user, skipped=skipped, come_back=False
        )
        if trace is None:
            left_skipped = selectors.skipped_left(
                eval_set=eval_set, user=request.user, skipped=skipped
            )
    else:
        mine = Feedback.objects.filter(eval_set=eval_set, trace=trace, user=request.user).first()
    conversation, turns = None, []
    if trace is not None and eval_set.unit == EvalSet.Unit.CONVERSATION:
        conversation = (
            Conversation.objects.for_workspace(request.workspace).filter(anchor=trace).first()
        )
        turns = selectors.conversation_turn_views(conversation) if conversation else []
    ctx = {
        # A conversation eval reads the whole conversation, not the anchor turn the card is on.
        "eval_input": selectors.conversation_eval_input(conversation, turns)
        if conversation
        else None,
        "eval_set": eval_set,
        "trace": trace,
        "conversation": conversation,
        "turns": turns,
        "mine": mine,
        "skipped_left": left_skipped,
        "progress": selectors.review_progress(eval_set=eval_set, user=request.user),
        "generate_url": generate_url(eval_set),
        "notice": notice or _archived_notice(eval_set),
        "draft_note": (notice or {}).get("note", ""),
        # An archived set takes no labels (services.record_feedback): no buttons that fail.
        "can_write": request.membership.can_write and not eval_set.is_archived,
        "preview_chars": 4000,
    }
    template = "traces/review.html#card" if request.htmx else "traces/review.html"
    return render(request, template, ctx, status=status)


@workspace_view
def review_start(request):
    """Open the review of the newest active eval set, or ask for one."""
    eval_set = EvalSet.objects.for_workspace(request.workspace).active().first()
    if eval_set is None:
        messages.info(request, "Create an eval set first: it says what a good trace is.")
        return redirect("traces:evalset_create", slug=request.workspace.slug)
    return redirect("traces:review", slug=request.workspace.slug, pk=eval_set.pk)


@workspace_view
def review(request, pk: int):
    """One trace at a time from the set's queue; ``?trace=`` reopens a given trace."""
    eval_set = _eval_set(request, pk)
    trace, asked = None, request.GET.get("trace", "")
    notice = request.session.pop(_notice_key(eval_set), None)
    if asked:
        number = whole_number(asked)
        trace = _card_trace(eval_set, number) if number is not None else None
        if trace is None and notice is None:
            # A stale or mistyped link: say why another trace shows.
            text = "That trace is not in this eval set; here is the next one to review."
            notice = {"level": "warning", "text": text}
    return _review_response(request, eval_set, trace=trace, notice=notice)


def _archived_notice(eval_set: EvalSet) -> dict | None:
    if not eval_set.is_archived:
        return None
    return {"level": "warning", "text": "This eval set is archived; restore it to label."}


def _card_trace(eval_set: EvalSet, pk: int) -> Trace | None:
    """The set's trace ``pk`` with what its card shows, or None if the set does not hold it."""
    shown = Trace.objects.in_eval_set(eval_set).only(*selectors.LIST_FIELDS, "data")
    return shown.filter(pk=pk).first()


def _notice_key(eval_set: EvalSet) -> str:
    return f"review-notice-{eval_set.pk}"


def _answer_review(request, eval_set: EvalSet, *, notice: dict, trace=None):
    """Swap in the next card (htmx), or redirect to the review page, which shows the notice."""
    if request.htmx:
        return _review_response(request, eval_set, trace=trace, notice=notice)
    request.session[_notice_key(eval_set)] = notice
    url = reverse("traces:review", kwargs={"slug": request.workspace.slug, "pk": eval_set.pk})
    return redirect(f"{url}?trace={trace.pk}" if trace else url)


@require_POST
@workspace_view
def review_label(request, pk: int, trace_pk: int):
    """Record this reviewer's label, then serve the next trace."""
    eval_set = _eval_set(request, pk)
    trace = get_object_or_404(
        Trace.objects.for_workspace(request.workspace).only("id", "workspace_id"), pk=trace_pk
    )
    form = FeedbackForm(request.POST)
    if not form.is_valid():
        # The same card again, with what was typed in the note box.
        notice = {"level": "error", "text": form.problem(), "note": form.draft_note()}
        if request.htmx:
            card = _card_trace(eval_set, trace.pk)
            return _review_response(request, eval_set, trace=card, notice=notice, status=400)
        if "next" not in request.POST:
            return _answer_review(request, eval_set, notice=notice, trace=trace)
        messages.error(request, notice["text"])
        return redirect(
            safe_next(request, reverse("traces:review", args=[request.workspace.slug, eval_set.pk]))
        )
    try:
        feedback, _ = services.record_feedback(
            eval_set=eval_set,
            trace=trace,
            user=request.user,
            rating=form.cleaned_data["rating"],
            note=form.cleaned_data["note"],
        )
    except TraceError as exc:
        if request.htmx:
            return _review_response(
                request, eval_set, notice={"level": "error", "text": exc.message}, status=400
            )
        messages.error(request, exc.message)
        return redirect(
            safe_next(request, reverse("traces:review", args=[request.workspace.slug, eval_set.pk]))
        )
    if not request.htmx and "next" in request.POST:
        # The trace page labels through this view too, and goes back to the trace.
        messages.success(
            request, f"Labelled {feedback.get_rating_display().lower()} in “{eval_set.name}”."
        )
        return redirect(safe_next(request, eval_set.get_absolute_url()))
    skipped = _skipped(request, eval_set)
    if trace.pk in skipped:
        skipped.remove(trace.pk)
        request.session[_skipped_key(eval_set)] = skipped
    notice = {"level": "info", "text": f"Labelled {feedback.get_rating_display().lower()}."}
    others = (
        Feedback.objects.filter(eval_set=eval_set, trace=trace)
        .exclude(user=request.user)
        .exclude(rating=feedback.rating)
        .exists()
    )
    if others:
        notice = {
            "level": "warning",
            "text": "Another reviewer rated that trace differently; it is flagged on the "
            "eval set until you agree.",
        }
    return _answer_review(request, eval_set, notice=notice)


@require_POST
@workspace_view
def review_undo(request, pk: int):
    """Take back this reviewer's last label in the set and show that trace again."""
    eval_set = _eval_set(request, pk)
    undone = services.undo_last_feedback(eval_set=eval_set, user=request.user)
    if undone is None:
        return _answer_review(
            request, eval_set, notice={"level": "info", "text": "Nothing to undo."}
        )
    # The undone label's note comes back in the note box, for the label that replaces it.
    notice = {"level": "info", "text": "Label undone.", "note": undone.note}
    return _answer_review(request, eval_set, trace=undone.trace, notice=notice)


@require_POST
@workspace_view
def review_skip(request, pk: int, trace_pk: int):
    """Put the trace aside for this session; when only skipped traces are left, the review
    says so and offers them again (``review_unskip``)."""
    eval_set = _eval_set(request, pk)
    if not Trace.objects.in_eval_set(eval_set).filter(pk=trace_pk).exists():
        raise Http404("No such trace in this eval set")
    skipped = _skipped(request, eval_set)
    if trace_pk not in skipped:
        skipped.append(trace_pk)
    request.session[_skipped_key(eval_set)] = skipped[-500:]
    return _answer_review(request, eval_set, notice={"level": "info", "text": "Skipped."})


@require_POST
@workspace_view
def review_unskip(request, pk: int):
    """Bring back the traces this reviewer skipped, from the first."""
    eval_set = _eval_set(request, pk)
    request.session.pop(_skipped_key(eval_set), None)
    return _answer_review(
        request, eval_set, notice={"level": "info", "text": "Back to the traces you skipped."}
    )


# --- queues ---------------------------------------------------------------------------


def _labellers(request) -> list:
    """The workspace's members who can label, for the assign controls."""
    members = (
        Membership.objects.for_workspace(request.workspace)
        .select_related("user")
        .only("role", "user__id", "user__email")  # the options show the email
    )
    return [m.user for m in members.order_by("user__email") if m.can_write]


@require_POST
@workspace_view
def evalset_assign(request, pk: int):
    """Share the set's unlabelled traces among the chosen reviewers, round-robin."""
    eval_set = _eval_set(request, pk)
    form = AssignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick at least one reviewer and a number of shared labels.")
        return redirect(eval_set)
    try:
        made = assignments.assign_round_robin(
            eval_set=eval_set,
            reviewer_ids=form.cleaned_data["reviewer"],
            agreement_target=form.cleaned_data["agreement_target"],
            assigned_by=request.user,
        )
    except TraceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{made} trace assignment{'s' if made != 1 else ''} made.")
    return redirect(eval_set)


@require_POST
@workspace_view
def trace_assign(request, pk: int, trace_pk: int):
    """Put one trace in one reviewer's queue, by hand (from the trace page)."""
    eval_set = _eval_set(request, pk)
    trace = get_object_or_404(Trace.objects.for_workspace(request.workspace), pk=trace_pk)
    reviewer = whole_number(request.POST.get("reviewer"))
    back = safe_next(request, eval_set.get_absolute_url())
    if reviewer is None:
        messages.error(request, "Pick a reviewer.")
        return redirect(back)
    try:
        assignments.assign_trace(
            eval_set=eval_set, trace=trace, reviewer_id=reviewer, assigned_by=request.user
        )
    except TraceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Assigned.")
    return redirect(back)


# --- editing labels ---------------------------------------------------------------------


def _label(request, pk: int, label_pk: int) -> Feedback:
    eval_set = _eval_set(request, pk)
    feedback = get_object_or_404(
        Feedback.objects.for_workspace(request.workspace).select_related("eval_set", "user"),
        eval_set=eval_set,
        pk=label_pk,
    )
    feedback.eval_set = eval_set
    return feedback


def _label_edit_form(request, feedback: Feedback, *, form: FeedbackForm | None = None):
    """One label's edit form: a fragment opened in its row, or a page of its own without
    JavaScript (and when a sent form is refused, shown again with why and what was typed)."""
    eval_set = feedback.eval_set
    back = safe_next(request, f"{eval_set.get_absolute_url()}#row-{feedback.trace_id}")
    ctx = {
        "eval_set": eval_set,
        "label": feedback,
        "back": back,
        "error": form.problem() if form is not None else "",
        "draft_note": form.draft_note() if form is not None else "",
    }
    response = fragment_or_page(
        request,
        "traces/_label_edit.html",
        ctx,
        title=f"Edit {feedback.user.email}'s label",
        back_url=back,
        back_label=f"Back to {eval_set.name}",
    )
    response.status_code = form_status(form)
    return response


@workspace_view(writers_only=True)
def label_edit_form(request, pk: int, label_pk: int):
    """The edit form of one label, loaded into its row when Edit is pressed (a 200-row
    table of inline forms weighed ~870 KB); its own page without JavaScript."""
    feedback = _label(request, pk, label_pk)
    try:
        services.check_may_edit_label(feedback, actor=request.user, role=request.membership.role)
    except LabelNotYours as exc:
        raise PermissionDenied(exc.message) from None
    return _label_edit_form(request, feedback)


@require_POST
@workspace_view
def label_edit(request, pk: int, label_pk: int):
    """Change one label's rating and note (own labels; anyone's for owners and admins)."""
    feedback = _label(request, pk, label_pk)
    back = safe_next(request, feedback.eval_set.get_absolute_url())
    form = FeedbackForm(request.POST)
    try:
        services.check_may_edit_label(feedback, actor=request.user, role=request.membership.role)
        if not form.is_valid():
            return _label_edit_form(request, feedback, form=form)
        services.edit_label(
            feedback=feedback,
            actor=request.user,
            role=request.membership.role,
            rating=form.cleaned_data["rating"],
            note=form.cleaned_data["note"],
        )
    except LabelNotYours as exc:
        raise PermissionDenied(exc.message) from None
    messages.success(request, f"Label changed to {feedback.get_rating_display().lower()}.")
    return redirect(back)


@require_POST
@workspace_view
def label_remove(request, pk: int, label_pk: int):
    feedback = _label(request, pk, label_pk)
    back = safe_next(request, feedback.eval_set.get_absolute_url())
    try:
        services.remove_label(feedback=feedback, actor=request.user, role=request.membership.role)
    except LabelNotYours as exc:
        raise PermissionDenied(exc.message) from None
    messages.success(request, "Label removed.")
    return redirect(back)


# --- conversations ----------------------------------------------------------------------


def _conversation(request, pk: int) -> Conversation:
    return get_object_or_404(Conversation.objects.for_workspace(request.workspace), pk=pk)


@workspace_view
def conversation_list(request):
    """The trace list grouped by conversation, latest activity first."""
    read, unread = read_conversation_filters(request.GET)
    unread = [(FILTER_LABELS[key], why) for key, why in unread.items()]
    source = read["source"]
    page = selectors.conversation_page(
        workspace=request.workspace, cursor=request.GET.get("cursor"), **read
    )
    query = {
        k: v
        for k, v in {
            "source": source,
            "has_error": {True: "true", False: "false"}.get(read["has_error"], ""),
            "state": read["state"],
        }.items()
        if v
    }
    ctx = {
        "page": page,
        "unread": unread,
        "query": urlencode(query),
        "filters": query,
        "next_query": urlencode({**query, "cursor": page.next_cursor})
        if page.next_cursor
        else None,
        "is_first_page": not request.GET.get("cursor"),
        # A callable, so only the full page (the filter form) queries it, not the rows.
        "sources": partial(selectors.source_choices, request.workspace, keep=source),
    }
    return render(request, "traces/conversation_list.html", ctx)


@workspace_view
def conversation_detail(request, pk: int):
    """One conversation as a chat: turns in order, each expandable into its trace's steps."""
    conversation = _conversation(request, pk)
    ctx = {
        "conversation": conversation,
        "turns": selectors.conversation_turn_views(conversation),
        "full": request.GET.get("full") == "1",
        "feedback": selectors.conversation_labels(conversation),
        "judgements": selectors.conversation_judgements(conversation),
        "review_sets": selectors.conversation_review_sets(conversation),
    }
    return render(request, "traces/conversation_detail.html", ctx)


@workspace_view
def conversation_turn_steps(request, pk: int, trace_pk: int):
    """The steps of one turn, loaded when the turn is expanded (keeps long chats fast); a
    page when opened on its own."""
    conversation = _conversation(request, pk)
    trace = get_object_or_404(
        Trace.objects.for_workspace(request.workspace).filter(conversation=conversation),
        pk=trace_pk,
    )
    # A turn's steps are cut as the trace page cuts them; "Show all" opens that page.
    tree = selectors.shown_steps(trace.data)
    ctx = {
        "trace": trace,
        "tree": tree,
        "steps": tree.roots,
        "preview_chars": PREVIEW_CHARS,
        "full_url": reverse("traces:detail", args=[request.workspace.slug, trace.pk]),
    }
    return fragment_or_page(
        request,
        "traces/_turn_steps.html",
        ctx,
        title=f"Steps of {trace}",
        back_url=reverse("traces:conversation_detail", args=[request.workspace.slug, pk]),
        back_label="Back to the conversation",
    )
