"""Comments on eval versions and traces, and each eval set's activity feed."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from evals import collaboration
from evals.exceptions import EvalError
from evals.models import Eval
from iofold.lib.fragments import fragment_or_page
from iofold.lib.links import email_link
from traces.models import EvalSet, Trace
from workspaces.access import workspace_view


def _post_comment(request, url: str, **on):
    """Post the comment typed on ``on`` (``eval=`` or ``trace=``), whose page is ``url``;
    flash why it was refused, if it was, and go back to the page's comments."""
    try:
        collaboration.post_comment(
            workspace=request.workspace,
            author=request.user,
            body=request.POST.get("body", ""),
            url=email_link(url, request.build_absolute_uri("/")),
            **on,
        )
    except EvalError as exc:
        messages.error(request, exc.message)
    return redirect(url + "#comments")


@require_POST
@workspace_view
def comment_on_eval(request, pk: int):
    eval = get_object_or_404(
        Eval.objects.for_workspace(request.workspace).select_related("eval_set"), pk=pk
    )
    return _post_comment(
        request, reverse("evals:detail", args=[request.workspace.slug, pk]), eval=eval
    )


@workspace_view
def trace_comments(request, pk: int):
    """The comments on a trace (loaded into its page; a page when opened on its own), and
    posting one."""
    trace = get_object_or_404(Trace.objects.for_workspace(request.workspace), pk=pk)
    url = reverse("traces:detail", args=[request.workspace.slug, trace.pk])
    if request.method == "POST":
        return _post_comment(request, url, trace=trace)
    ctx = {
        "comments": collaboration.comments_on(workspace=request.workspace, trace=trace),
        "action": reverse("evals:trace_comments", args=[request.workspace.slug, trace.pk]),
    }
    return fragment_or_page(
        request,
        "evals/_comments.html",
        ctx,
        title=f"Comments on {trace}",
        back_url=url,
        back_label="Back to the trace",
    )


@workspace_view
def activity(request, pk: int):
    """Who labelled, generated, activated, rolled back or shadowed what in this set, and why."""
    eval_set = get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)
    ctx = {"eval_set": eval_set, "items": collaboration.activity_feed(eval_set=eval_set)}
    return render(request, "evals/activity.html", ctx)
