"""Automation settings: refinement that runs itself, its budget, promotion and the webhook."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from evals import notifications
from evals.forms import AutomationForm, ThresholdForm
from evals.generation.automatic import contradiction_threshold
from evals.models import AutoRefinement
from iofold.lib.fields import last_four
from iofold.lib.outbound import OutboundURLRefused
from iofold.lib.shown_once import keep_to_show, take_to_show
from traces.models import EvalSet
from workspaces.access import workspace_view


@never_cache  # it may show a new signing secret
@workspace_view(manage=True)
def automation(request):
    """What iofold may do by itself (owners and admins), and what it did lately."""
    row = notifications.automation_settings(request.workspace)
    secret_key, shown_secret, status = f"automation:{request.workspace.pk}", None, 200
    if request.method == "POST":
        form = AutomationForm(request.POST)
        if form.is_valid():
            try:
                row, new_secret = notifications.update_automation(
                    workspace=request.workspace, **form.cleaned_data
                )
            except OutboundURLRefused as exc:
                form.add_error("webhook_url", exc.message)
                status = 400
            else:
                messages.success(request, "Automation settings saved.")
                # Shown after the redirect: a refresh of the POST's own page re-sent the
                # form and replaced the secret just copied ("new secret" still ticked).
                if new_secret is not None:
                    keep_to_show(request, secret_key, new_secret)
                return redirect("evals:automation", slug=request.workspace.slug)
        else:
            status = 400
    else:
        shown_secret = take_to_show(request, secret_key)
        form = AutomationForm(
            initial={
                "auto_refine": row.auto_refine,
                "monthly_refinements": row.monthly_refinements,
                "auto_promote": row.auto_promote,
                "webhook_url": row.webhook_url,
            }
        )
    eval_sets = list(EvalSet.objects.for_workspace(request.workspace).active().order_by("name"))
    for eval_set in eval_sets:
        eval_set.threshold = contradiction_threshold(eval_set)
    ctx = {
        "form": form,
        "shown_secret": shown_secret,
        "secret_hint": last_four(row.webhook_secret),
        "eval_sets": eval_sets,
        "recent": AutoRefinement.objects.for_workspace(request.workspace)
        .select_related("eval_set", "parent", "candidate")
        .order_by("-created_at")[:20],
    }
    return render(request, "evals/automation.html", ctx, status=status)


@require_POST
@workspace_view
def set_threshold(request, pk: int):
    """How many new contradicting labels start an automatic refinement of this set."""
    eval_set = get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)
    form = ThresholdForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a whole number of labels from 1 to 10,000.")
        return redirect("evals:automation", slug=request.workspace.slug)
    threshold = form.cleaned_data["contradiction_threshold"]
    notifications.set_contradiction_threshold(eval_set=eval_set, threshold=threshold)
    messages.success(
        request,
        f"{eval_set.name}: an automatic refinement starts after {threshold} contradicting "
        f"label{pluralize(threshold)}.",
    )
    return redirect("evals:automation", slug=request.workspace.slug)
