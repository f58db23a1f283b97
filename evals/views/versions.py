"""Eval pages: lists, a version's detail and actions, history, diffs, the matrix, refinement."""

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from evals.collaboration import comments_on
from evals.exceptions import EvalError
from evals.execution.shadow import compare_shadow, shadow_pair
from evals.generation import refinement
from evals.judging.spend import version_spend
from evals.matrix.filters import read_matrix_filters, read_matrix_page
from evals.matrix.selectors import comparison_matrix, matrix_cell
from evals.matrix.types import MatrixFilters
from evals.metrics.measure import (
    label_changes_since_measured,
    mark_out_of_date,
    measured_on_current_labels,
)
from evals.models import Eval, EvalRun, Generation
from evals.versions import display, export, selectors
from evals.versions import services as version_services
from iofold.lib.fields import whole_number
from iofold.lib.redirects import safe_next
from traces.models import EvalSet, Trace
from workspaces.access import workspace_view


def _eval(request, pk: int) -> Eval:
    qs = Eval.objects.for_workspace(request.workspace).select_related("eval_set", "parent")
    return get_object_or_404(qs, pk=pk)


def _eval_set(request, pk: int) -> EvalSet:
    return get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)


def _back(request, eval: Eval):
    return redirect(safe_next(request, eval.get_absolute_url()))


def _change_status(
    request, change: Callable[..., Any], *, eval: Eval, success: Callable[[Any], str]
) -> None:
    """Call a version's status change with the reason posted; flash its refusal, or
    ``success(result)``."""
    try:
        done = change(eval=eval, user=request.user, reason=request.POST.get("reason", ""))
    except EvalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success(done))


# --- lists ---------------------------------------------------------------------------------


@workspace_view
def eval_list(request):
    """Every eval version in the workspace, grouped by eval set; filter by set or status."""
    set_id, status, unread = selectors.read_list_filters(request.GET)
    eval_set = _eval_set(request, set_id) if set_id is not None else None
    evals = mark_out_of_date(
        selectors.eval_list(workspace=request.workspace, eval_set=eval_set, status=status)
    )
    ctx = {
        "evals": evals,
        "eval_set": eval_set,
        "status": status,
        "status_label": Eval.Status(status).label if status else "",
        "statuses": Eval.Status.choices,
        "eval_sets": EvalSet.objects.for_workspace(request.workspace).active().order_by("name"),
        "unread": unread,
    }
    return render(request, "evals/list.html", ctx)


@workspace_view
def versions(request, pk: int):
    """An eval set's versions with lineage, agreement across versions and a diff picker."""
    eval_set = _eval_set(request, pk)
    history = mark_out_of_date(selectors.versions_of(eval_set))
    active = next((v for v in history if v.status == Eval.Status.ACTIVE), None)
    ctx = {
        "eval_set": eval_set,
        "active": active,
        "versions": list(reversed(history)),
        "chart": display.version_chart(selectors.agreement_history(eval_set)),
    }
    return render(request, "evals/versions.html", ctx)


# --- one version -------------------------------------------------------------------------


@workspace_view
def detail(request, pk: int):
    """A version's code, metrics, confusion matrix, how it was made, and its actions."""
    eval = _eval(request, pk)
    run = selectors.latest_run(eval)
    ctx = {
        "eval": eval,
        "run": run,
        "spend": version_spend(eval=eval),
        "confusion": display.confusion(eval.metrics),
        "scopes": display.metric_scopes(eval.metrics),
        "labels_changed": label_changes_since_measured(eval),
        "chart": display.version_chart(selectors.agreement_history(eval.eval_set)),
        "children": list(eval.children.only("id", "version", "status", "workspace_id")),
        "refinements": Generation.objects.filter(parent=eval).order_by("-created_at")[:3],
        "comments": comments_on(workspace=request.workspace, eval=eval),
    }
    return render(request, "evals/detail.html", ctx)


@require_POST
@workspace_view
def activate(request, pk: int):
    eval = _eval(request, pk)

    def activated(done) -> str:
        verb = f"Rolled back from v{done.previous.version} to" if done.rollback else "Activated"
        return f"{verb} v{eval.version}. It now runs on new traces."

    _change_status(request, version_services.activate_or_roll_back, eval=eval, success=activated)
    return _back(request, eval)


@require_POST
@workspace_view
def shadow(request, pk: int):
    """Run the version in shadow beside the active one on new traces."""
    eval = _eval(request, pk)
    _change_status(
        request,
        version_services.shadow_eval,
        eval=eval,
        success=lambda _: (
            f"v{eval.version} now judges new traces in shadow; its verdicts stay here."
        ),
    )
    return redirect(
        safe_next(
            request,
            reverse("evals:shadow_compare", args=[request.workspace.slug, eval.eval_set_id]),
        )
    )


@require_POST
@workspace_view
def unshadow(request, pk: int):
    eval = _eval(request, pk)
    version_services.stop_shadow(eval=eval, user=request.user)
    messages.success(request, f"v{eval.version} no longer runs in shadow.")
    return _back(request, eval)


@require_POST
@workspace_view
def promote(request, pk: int):
    """Make the shadow active, when it beats the active version beyond noise."""
    eval = _eval(request, pk)
    _change_status(
        request,
        version_services.promote_shadow,
        eval=eval,
        success=lambda done: f"Promoted v{done.eval.version}; it now runs on new traces.",
    )
    return _back(request, eval)


@workspace_view
def shadow_compare(request, pk: int):
    """The active version and its shadow on the same new traces: labels, disagreement, time."""
    eval_set = _eval_set(request, pk)
    active, challenger = shadow_pair(eval_set)
    comparison = compare_shadow(active=active, shadow=challenger) if active and challenger else None
    ctx = {"eval_set": eval_set, "active": active, "challenger": challenger, "c": comparison}
    return render(request, "evals/shadow.html", ctx)


@require_POST
@workspace_view
def archive(request, pk: int):
    eval = _eval(request, pk)
    was_active = eval.status == Eval.Status.ACTIVE
    version_services.archive_eval(
        eval=eval, user=request.user, reason=request.POST.get("reason", "")
    )
    note = " The set has no active eval now." if was_active else ""
    messages.success(request, f"Archived v{eval.version}.{note}")
    return _back(request, eval)


@require_POST
@workspace_view
def restore(request, pk: int):
    eval = _eval(request, pk)
    version_services.restore_eval(eval=eval)
    messages.success(request, f"v{eval.version} is a draft again.")
    return _back(request, eval)


@require_POST
@workspace_view
def test_again(request, pk: int):
    """Start a run of the version on the current labels; the page polls its progress."""
    eval = _eval(request, pk)
    try:
        run = version_services.test_again(eval=eval)
    except EvalError as exc:
        messages.error(request, exc.message)
        return redirect(eval.get_absolute_url())
    if request.htmx:
        return render(request, "evals/detail.html#run", {"eval": eval, "run": run})
    return redirect(eval.get_absolute_url())


@workspace_view
def run_progress(request, pk: int, run_pk: int):
    """The progress of a test run (htmx polling); stops polling once it is final."""
    eval = _eval(request, pk)
    run = get_object_or_404(EvalRun.objects.for_workspace(request.workspace), pk=run_pk, eval=eval)
    if not request.htmx:
        # Opened or reloaded as a page, the bare polling fragment showed with no layout:
        # the eval's page shows the same run, in place.
        return redirect(eval)
    # Read only: the run's worker re-measures the version when the run finishes
    # (execution/runs.py, execution/chunks.py), so polling never writes.
    response = render(request, "evals/detail.html#run", {"eval": eval, "run": run})
    if run.is_final:
        response = HttpResponseStopPolling(response.content)
        response["HX-Refresh"] = "true" if request.GET.get("refresh") else "false"
    return response


@workspace_view(writers_only=True)
def edit(request, pk: int):
    """Edit a version's code by hand; saving makes a new validated draft version."""
    eval = _eval(request, pk)
    code, problems = eval.code, []
    if request.method == "POST":
        code = request.POST.get("code", "")
        try:
            edited = version_services.edit_eval_code(eval=eval, code=code, user=request.user)
        except version_services.InvalidEvalCode as exc:
            problems = exc.problems
        except EvalError as exc:
            messages.error(request, exc.message)
        else:
            run = version_services.test_again(eval=edited)
            messages.success(
                request, f"Saved as v{edited.version}; testing it on {run.total} labelled traces."
            )
            return redirect(edited.get_absolute_url())
    marked = tuple(p.line for p in problems if p.line)
    ctx = {
        "eval": eval,
        "code": code,
        "problems": problems,
        "preview": display.highlight_code(code, marked_lines=marked) if problems else None,
    }
    # A POST that reaches here saved nothing: the code is shown again, refused.
    return render(request, "evals/edit.html", ctx, status=400 if request.method == "POST" else 200)


@workspace_view
def export_script(request, pk: int):
    """Download the version as a Python file that runs by itself on JSONL traces."""
    eval = _eval(request, pk)
    response = HttpResponse(export.export_eval_script(eval), content_type="text/x-python")
    response["Content-Disposition"] = f'attachment; filename="{export.eval_filename(eval)}"'
    return response


@workspace_view
def export_set(request, pk: int):
    """Download the eval set, its labels and every version as JSON."""
    eval_set = _eval_set(request, pk)
    response = HttpResponse(export.export_eval_set_json(eval_set), content_type="application/json")
    name = f"eval-set-{eval_set.pk}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _nothing_to_compare(request, *, eval_set, eval):
    ctx = {"eval_set": eval_set, "eval": eval}
    return render(request, "evals/nothing_to_compare.html", ctx)


@workspace_view
def diff(request, pk: int):
    """Side-by-side diff of two versions of a set (?a=<version>&b=<version>)."""
    eval_set = _eval_set(request, pk)
    all_versions = list(Eval.objects.for_eval_set(eval_set).order_by("version"))
    by_number = {v.version: v for v in all_versions}
    if len(all_versions) < 2:
        # A set's first version is not an error: say so, with the way back (not a 404).
        only = all_versions[0] if all_versions else None
        return _nothing_to_compare(request, eval_set=eval_set, eval=only)
    try:
        a = by_number[int(request.GET.get("a") or all_versions[-2].version)]
        b = by_number[int(request.GET.get("b") or all_versions[-1].version)]
    except (KeyError, ValueError):
        raise Http404("No such version") from None
    same = a.code == b.code
    ctx = {
        "eval_set": eval_set,
        "versions": all_versions,
        "a": a,
        "b": b,
        # Identical code has nothing to show side by side: the notice says it all.
        "table": None
        if same
        else display.side_by_side(a.code, b.code, a_label=f"v{a.version}", b_label=f"v{b.version}"),
        "same": same,
        "scope_a": display.metric_scopes(a.metrics)["headline"],
        "scope_b": display.metric_scopes(b.metrics)["headline"],
    }
    return render(request, "evals/diff.html", ctx)


# --- comparison matrix -------------------------------------------------------------------


@workspace_view
def matrix(request, pk: int):
    """Labelled traces by versions: agree, contradict or error, with filters and pages."""
    eval_set = _eval_set(request, pk)
    filters, unread = read_matrix_filters(request.GET)
    page, unread_page = read_matrix_page(request.GET)
    result = comparison_matrix(eval_set=eval_set, filters=filters, page=page)
    unread += unread_page
    # One reverse() each per page instead of one per row or cell (up to 50 x 20 cells).
    slug = request.workspace.slug
    cell_base = reverse("evals:cell", kwargs={"slug": slug, "pk": 0, "trace_pk": 0})
    cell_base = cell_base.removesuffix("0/traces/0/")
    trace_base = reverse("traces:detail", args=[slug, 0]).removesuffix("0/")
    for row in result.rows:
        for c in row.cells:
            c.url = f"{cell_base}{c.eval_id}/traces/{row.trace.pk}/"
        row.trace_url = f"{trace_base}{row.trace.pk}/"
        row.html = display.matrix_row_html(row)
    query = request.GET.copy()
    query.pop("page", None)
    ctx = {
        "eval_set": eval_set,
        "matrix": result,
        "sources": Trace.Source.choices,
        "query": query.urlencode(),
        "chosen": set(result.filters.version_ids),
        "unread": unread,
    }
    template = "evals/matrix.html#table" if request.htmx else "evals/matrix.html"
    return render(request, template, ctx)


@workspace_view
def matrix_csv(request, pk: int):
    """The matrix with the page's filters, every row, as CSV."""
    eval_set = _eval_set(request, pk)
    result = comparison_matrix(
        eval_set=eval_set,
        filters=read_matrix_filters(request.GET)[0],
        page_size=export.MATRIX_CSV_ROWS,
    )
    response = HttpResponse(export.matrix_csv(result), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="matrix-{eval_set.pk}.csv"'
    return response


@workspace_view
def cell(request, pk: int, trace_pk: int):
    """Drill-down on one matrix cell: verdict, reason, time, the trace and the code."""
    eval = _eval(request, pk)
    trace = get_object_or_404(Trace.objects.for_workspace(request.workspace), pk=trace_pk)
    ctx = {
        "detail": matrix_cell(eval=eval, trace=trace),
        "eval": eval,
        "eval_set": eval.eval_set,
    }
    template = "evals/matrix.html#cell" if request.htmx else "evals/cell.html"
    return render(request, template, ctx)


# --- refinement --------------------------------------------------------------------------


@require_POST
@workspace_view
def refine(request, pk: int):
    """Start refining the version from its contradictions; follow it on the next page."""
    eval = _eval(request, pk)
    try:
        generation = refinement.start_refinement(eval=eval, user=request.user)
    except EvalError as exc:
        messages.error(request, exc.message)
        return redirect(eval.get_absolute_url())
    return redirect("evals:refinement", slug=request.workspace.slug, pk=generation.pk)


@workspace_view
def refinement_detail(request, pk: int):
    """A refinement's progress (htmx polling), then the before / after comparison."""
    generation = get_object_or_404(
        Generation.objects.for_workspace(request.workspace)
        .filter(parent__isnull=False)
        .select_related("parent", "result", "eval_set"),
        pk=pk,
    )
    if generation.is_final and generation.result_id and not request.htmx:
        return redirect("evals:compare", slug=request.workspace.slug, pk=generation.result_id)
    ctx = {"generation": generation}
    if request.htmx:
        response = render(request, "evals/refinement.html#progress", ctx)
        if generation.is_final:
            response = HttpResponseStopPolling(response.content)
            if generation.result_id:
                response["HX-Redirect"] = reverse(
                    "evals:compare",
                    kwargs={"slug": request.workspace.slug, "pk": generation.result_id},
                )
        return response
    return render(request, "evals/refinement.html", ctx)


@workspace_view
def compare(request, pk: int):
    """Before / after: a version against its parent (or ?against=<version>), verdict by verdict."""
    after = _eval(request, pk)
    before = after.parent
    if (against := whole_number(request.GET.get("against"))) is not None:
        before = get_object_or_404(Eval.objects.for_eval_set(after.eval_set), version=against)
    if before is None:
        return _nothing_to_compare(request, eval_set=after.eval_set, eval=after)
    result = comparison_matrix(
        eval_set=after.eval_set,
        filters=MatrixFilters(only_disagreements=True, version_ids=(before.pk, after.pk)),
        page_size=200,
    )
    ctx = {
        "before": before,
        "after": after,
        "matrix": result,
        "columns": {c.eval.pk: c for c in result.columns},
        "tiles": display.contradiction_tiles(result.columns),
        # Identical code has nothing to show side by side: the notice says so.
        "table": None
        if before.code == after.code
        else display.side_by_side(
            before.code, after.code, a_label=f"v{before.version}", b_label=f"v{after.version}"
        ),
        "confusion_before": display.confusion(before.metrics),
        "confusion_after": display.confusion(after.metrics),
        # Agreement is the headline figure: held-out when measured, which the tiles say.
        "scope_before": display.metric_scopes(before.metrics)["headline"],
        "scope_after": display.metric_scopes(after.metrics)["headline"],
        # Only then are both measured on one set of labels (the matrix reads them now).
        "same_labels": measured_on_current_labels(before) and measured_on_current_labels(after),
    }
    return render(request, "evals/compare.html", ctx)
