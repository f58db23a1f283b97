"""Generation pages: provider settings, starting a generation and following its progress."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from evals.exceptions import EvalError
from evals.forms import JudgeTemplateForm, ProviderSettingsForm
from evals.generation import provider_settings as settings_services
from evals.generation import services as generation_services
from evals.judging import compare
from evals.judging.templates import CRITERIA
from evals.metrics.agreement import KAPPA_BAR
from evals.models import Eval, Generation
from evals.versions.display import highlight_code
from iofold.lib.fields import last_four
from iofold.lib.forms import form_status
from traces.models import EvalSet
from workspaces.access import workspace_view


def eval_detail_url(eval: Eval) -> str | None:
    """Return the eval's detail page URL, or None while the evals app has none."""
    try:
        return eval.get_absolute_url()
    except NoReverseMatch:
        return None


def result_context(eval: Eval | None) -> dict:
    """Return what templates/evals/_result.html needs to show a generated version."""
    if eval is None:
        return {}
    metrics = eval.metrics or {}
    return {
        "eval": eval,
        "code_html": highlight_code(eval.code, css_class="code-highlight"),
        "training": metrics.get("training"),
        "heldout": metrics.get("heldout"),
        "method": metrics.get("method", ""),
        "label_counts": metrics.get("labels") or {},
        "detail_url": eval_detail_url(eval),
        "kappa_bar": KAPPA_BAR,
    }


@workspace_view(manage=True)
def provider_settings(request):
    """Show and change how this workspace's evals are written (owners and admins)."""
    row = settings_services.get_provider_settings(workspace=request.workspace)
    if request.method == "POST":
        form = ProviderSettingsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                settings_services.update_provider_settings(
                    workspace=request.workspace,
                    provider=data["provider"],
                    model=data["model"],
                    base_url=data["base_url"],
                    api_key=data["api_key"] or None,
                    clear_key=data["clear_key"],
                    monthly_budget_usd=data["monthly_budget_usd"],
                )
            except EvalError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Generation settings saved.")
                return redirect("evals:settings", slug=request.workspace.slug)
    else:
        form = ProviderSettingsForm(
            initial={
                "provider": row.provider,
                "model": row.model,
                "base_url": row.base_url,
                "monthly_budget_usd": row.monthly_budget_usd,
            }
        )
    choice = settings_services.resolve_provider(workspace=request.workspace)
    ctx = {
        "form": form,
        "key_hint": last_four(row.api_key),
        "effective": choice,
        "saved": row.pk is not None,
    }
    return render(request, "evals/settings.html", ctx, status=form_status(form))


@workspace_view(writers_only=True)
def judge_template(request, pk: int):
    """Show and change how the set's LLM judge asks (members who can write)."""
    eval_set = get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)
    template = compare.judge_template(eval_set)
    if request.method == "POST":
        form = JudgeTemplateForm(request.POST, unit=eval_set.unit)
        if form.is_valid():
            try:
                compare.save_judge_template(eval_set=eval_set, **form.cleaned_data)
            except EvalError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Judge template saved; the next generation uses it.")
                return redirect("evals:judge_template", slug=request.workspace.slug, pk=pk)
    else:
        form = JudgeTemplateForm(
            unit=eval_set.unit,
            initial={
                "criterion": template.criterion,
                "question": template.question,
                "material": template.material,
                "shots": template.shots,
            },
        )
    ctx = {"eval_set": eval_set, "form": form, "criteria": CRITERIA.values()}
    return render(request, "evals/judge_template.html", ctx, status=form_status(form))


@require_POST
@workspace_view
def generate(request, pk: int):
    """Start generating an eval for the eval set, then show its progress."""
    eval_set = get_object_or_404(EvalSet.objects.for_workspace(request.workspace), pk=pk)
    try:
        generation = generation_services.start_generation(eval_set=eval_set, user=request.user)
    except EvalError as exc:
        if request.htmx:
            return render(request, "evals/generation.html#progress", {"error": exc.message})
        messages.error(request, exc.message)
        return redirect(eval_set.get_absolute_url())
    if request.htmx:
        ctx = {"generation": generation, "eval_set": eval_set}
        return render(request, "evals/generation.html#progress", ctx)
    return redirect("evals:generation", slug=request.workspace.slug, pk=generation.pk)


@workspace_view
def generation_detail(request, pk: int):
    """Show a generation's progress (the fragment polls every 2 s), then its result."""
    generation = get_object_or_404(
        Generation.objects.for_workspace(request.workspace).select_related("eval_set", "result"),
        pk=pk,
    )
    ctx = {
        "generation": generation,
        "eval_set": generation.eval_set,
        **result_context(generation.result),
    }
    if request.htmx:
        response = render(request, "evals/generation.html#progress", ctx)
        if generation.is_final:
            return HttpResponseStopPolling(response.content)
        return response
    ctx["poll_url"] = reverse(
        "evals:generation", kwargs={"slug": request.workspace.slug, "pk": generation.pk}
    )
    return render(request, "evals/generation.html", ctx)
