"""The gallery: browse templates, start from one, publish a version as one."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evals.exceptions import EvalError
from evals.gallery import services
from evals.models import Eval, EvalTemplate, EvalTemplateVersion
from evals.versions.display import highlight_code
from iofold.lib.fields import whole_number
from traces.models import EvalSet
from workspaces.access import workspace_view


@workspace_view
def gallery(request):
    """Every template, built-ins first, with the figures it was measured with."""
    return render(request, "evals/gallery.html", {"templates": services.gallery()})


@workspace_view
def template_detail(request, pk: int):
    services.ensure_builtins()
    template = get_object_or_404(EvalTemplate, pk=pk)
    history = list(template.versions.order_by("-version"))
    chosen = history[0] if history else None
    if (number := whole_number(request.GET.get("version"))) is not None:
        chosen = next((v for v in history if v.version == number), chosen)
    ctx = {
        "template": template,
        "history": history,
        "chosen": chosen,
        "code_html": highlight_code(chosen.code) if chosen else "",
        "eval_sets": EvalSet.objects.for_workspace(request.workspace).active().order_by("name"),
    }
    return render(request, "evals/template.html", ctx)


@require_POST
@workspace_view
def use_template(request, pk: int):
    """Start a draft from a template version: in a new eval set, or in one of this workspace's."""
    version = get_object_or_404(EvalTemplateVersion.objects.select_related("template"), pk=pk)
    eval_set = None
    if (eval_set_id := whole_number(request.POST.get("eval_set"))) is not None:
        eval_set = get_object_or_404(
            EvalSet.objects.for_workspace(request.workspace), pk=eval_set_id
        )
    try:
        eval = services.start_from_template(
            template_version=version,
            workspace=request.workspace,
            user=request.user,
            name=request.POST.get("name", "").strip(),
            eval_set=eval_set,
        )
    except EvalError as exc:
        messages.error(request, exc.message)
        return redirect("evals:template", slug=request.workspace.slug, pk=version.template_id)
    messages.success(
        request,
        f"v{eval.version} is a draft from the gallery. Label traces in “{eval.eval_set.name}” "
        "and test it on them before activating it.",
    )
    return redirect(eval.get_absolute_url())


@require_POST
@workspace_view(manage=True)
def publish(request, pk: int):
    """Publish this version to the gallery: code, criteria and figures, no traces or labels.

    Owners and admins only: it shares the workspace's code with every other workspace.
    """
    eval = get_object_or_404(
        Eval.objects.for_workspace(request.workspace).select_related("eval_set"), pk=pk
    )
    try:
        version = services.publish(
            eval=eval,
            user=request.user,
            name=request.POST.get("name", "") or eval.eval_set.name,
            description=request.POST.get("description", ""),
        )
    except EvalError as exc:
        messages.error(request, exc.message)
        return redirect(eval.get_absolute_url())
    messages.success(request, f"Published as {version.template.name} v{version.version}.")
    return redirect("evals:template", slug=request.workspace.slug, pk=version.template_id)
