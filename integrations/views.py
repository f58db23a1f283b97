from django.contrib import messages
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from integrations import receiver_pages, services
from integrations.adapters.openai import OPENAI_API
from integrations.constants import MAX_UPLOAD_BYTES
from integrations.exceptions import IntegrationError
from integrations.forms import INTEGRATION_FORMS, ResponseKeyForm, UploadForm, integration_form_for
from integrations.models import Integration, SyncRun, UploadRun
from integrations.otlp import views as otlp_views
from integrations.uploads import count_lines, start_upload
from iofold.composition import request_integration_deletion, responses_waiting, trace_origins
from iofold.exceptions import ApplicationError, RateLimited
from iofold.lib.confirm import ask_first, confirmed
from iofold.lib.forms import form_status
from iofold.lib.fragments import fragment_or_page
from iofold.pipeline import admit_traces
from workspaces.access import workspace_view


def _integration(request, pk: int) -> Integration:
    # One being deleted is gone for every page but its deletion's.
    return get_object_or_404(Integration.objects.for_workspace(request.workspace).present(), pk=pk)


@workspace_view
def integration_list(request):
    """The workspace's integrations with their latest run, and where its other traces came
    from (the API, uploads, the demo need no integration)."""
    integrations = (
        Integration.objects.for_workspace(request.workspace)
        .present()
        .prefetch_related(
            Prefetch("runs", queryset=SyncRun.objects.order_by("-created_at")[:1], to_attr="latest")
        )
    )
    ctx = {"integrations": integrations, "origins": trace_origins(request.workspace)}
    return render(request, "integrations/list.html", ctx)


def _form_class(kind: str):
    form_class = integration_form_for(kind)
    if form_class is None:
        raise Http404("No such kind of source.")
    return form_class


def _kinds() -> list[tuple[str, str]]:
    return [(kind, Integration.Kind(kind).label) for kind in INTEGRATION_FORMS]


def _testing(request) -> bool:
    """Whether the form came by its "Test connection" button: a submit of its own, so the
    test works without JavaScript (htmx posts it to the test URL instead)."""
    return request.method == "POST" and request.POST.get("action") == "test"


@workspace_view(manage=True)
def integration_create(request):
    """Connect a source of the kind picked (``?kind=``; Langfuse by default)."""
    kind = request.GET.get("kind") or Integration.Kind.LANGFUSE
    form = _form_class(kind)(request.POST or None)
    if _testing(request):
        result = _entered_connection(request, kind=kind)
        return _form_page(request, form, integration=None, kind=kind, **result)
    if request.method == "POST" and form.is_valid():
        try:
            integration = services.create_integration(
                workspace=request.workspace, kind=kind, **form.service_kwargs()
            )
        except IntegrationError as exc:
            form.add_error(None, exc.message)
        else:
            ok, message = services.saved_message(integration=integration)
            (messages.success if ok else messages.warning)(request, message)
            return redirect("integrations:detail", slug=request.workspace.slug, pk=integration.pk)
    return _form_page(request, form, integration=None, kind=kind)


def _form_page(request, form, *, integration: Integration | None, kind: str, **result):
    """The connect or edit form; ``result`` is a connection test's ``ok`` and ``message``."""
    if result:
        # The typed key is never sent back: say so, or the next "Connect" lacks it.
        form.ask_key_again()
    ctx = {"form": form, "integration": integration, "kind": kind, **result}
    if integration is None:
        ctx["kinds"] = _kinds()
    return render(request, "integrations/form.html", ctx, status=form_status(form))


def _openai_agents_page(request, integration: Integration | None, key_form=None):
    """The Agents SDK source: where its exporter posts, how to point it there, what came."""
    endpoint = request.build_absolute_uri(reverse("api-openai-agents-ingest"))
    ctx = {
        **receiver_pages.received_context(integration),
        "responses_waiting": responses_waiting(integration) if integration else 0,
        "endpoint": endpoint,
        "example": receiver_pages.agents_setup_example(endpoint),
        "key_form": key_form
        or ResponseKeyForm(initial={"base_url": (integration and integration.host) or OPENAI_API}),
    }
    return render(request, "integrations/openai_agents.html", ctx, status=400 if key_form else 200)


@require_POST
@workspace_view(manage=True)
def openai_agents_key(request, pk: int):
    """Set (or remove) the OpenAI key the Agents SDK source reads response content with."""
    integration = _integration(request, pk)
    if integration.kind != Integration.Kind.OPENAI_AGENTS:
        raise Http404
    if request.POST.get("remove"):
        services.set_response_key(integration=integration, host="", secret_key="")
        messages.success(request, "The OpenAI key was removed.")
        return redirect("integrations:detail", request.workspace.slug, integration.pk)
    form = ResponseKeyForm(request.POST)
    if form.is_valid():
        try:
            services.set_response_key(
                integration=integration,
                host=form.cleaned_data["base_url"],
                secret_key=form.cleaned_data["api_key"],
            )
        except IntegrationError as exc:
            form.add_error("base_url", exc.message)
        else:
            waiting = responses_waiting(integration)
            messages.success(
                request,
                "Saved. Response content of traces received from now on is read with it"
                + (
                    f", and that of the {waiting} received while reading was stopped, "
                    "in the background."
                    if waiting
                    else "."
                ),
            )
            return redirect("integrations:detail", request.workspace.slug, integration.pk)
    return _openai_agents_page(request, integration, key_form=form)


@workspace_view
def openai_agents_setup(request):
    """How to point the Agents SDK's exporter here; managers create the source (POST)."""
    return receiver_pages.setup(
        request, kind=Integration.Kind.OPENAI_AGENTS, page=_openai_agents_page
    )


# The page of each source that receives traces: its set-up, and what it received.
RECEIVER_PAGES = {
    Integration.Kind.OTLP: otlp_views.detail,
    Integration.Kind.OPENAI_AGENTS: _openai_agents_page,
}


@workspace_view(manage=True)
def integration_edit(request, pk: int):
    """Change an integration's connection, filters or schedule."""
    integration = _integration(request, pk)
    form_class = _form_class(integration.kind)
    form = form_class(
        request.POST or None,
        initial=form_class.initial_from(integration),
        secret_hint=integration.secret_hint,
    )
    if _testing(request):
        result = _entered_connection(
            request, kind=integration.kind, stored_secret=integration.secret_key
        )
        return _form_page(request, form, integration=integration, kind=integration.kind, **result)
    if request.method == "POST" and form.is_valid():
        before = services.connection_settings(integration)
        try:
            services.update_integration(integration=integration, **form.service_kwargs())
        except IntegrationError as exc:
            form.add_error(None, exc.message)
        else:
            if services.connection_settings(integration) != before:
                ok, message = services.saved_message(integration=integration)
                (messages.success if ok else messages.warning)(request, message)
            else:
                messages.success(request, f"“{integration.name}” saved.")
            return redirect("integrations:detail", slug=request.workspace.slug, pk=integration.pk)
    return _form_page(request, form, integration=integration, kind=integration.kind)


def _entered_connection(request, *, kind: str, stored_secret: str = "") -> dict:
    """Test the connection typed into the form, unsaved: its ``ok`` and ``message``.

    An empty secret key falls back to ``stored_secret`` (the edit form never shows it).
    """
    connection_form = _form_class(kind).connection_form
    form = connection_form(request.POST, secret_hint="stored" if stored_secret else "")
    ctx = {"ok": False}
    if not form.is_valid():
        fields = form.credential_fields
        errors = [e for field in fields for e in form.errors.get(field, [])]
        ctx["message"] = " ".join(errors) or form.missing_message
    else:
        try:
            info = services.check_connection(**form.connection_kwargs(stored_secret))
            ctx.update(ok=True, message=services.connection_message(info))
        except IntegrationError as exc:
            ctx["message"] = exc.message
    return ctx


@require_POST
@workspace_view(manage=True)
def check_new_connection(request):
    """Test the keys typed into the connect form, before saving them (htmx fragment)."""
    kind = request.POST.get("kind") or Integration.Kind.LANGFUSE
    result = _entered_connection(request, kind=kind)
    return render(request, "integrations/form.html#connection", result)


@require_POST
@workspace_view(manage=True)
def check_edited_connection(request, pk: int):
    """Test the connection typed into an edit form, before saving it (htmx fragment)."""
    integration = _integration(request, pk)
    result = _entered_connection(
        request, kind=integration.kind, stored_secret=integration.secret_key
    )
    return render(request, "integrations/form.html#connection", result)


@require_POST
@workspace_view(manage=True)
def check_connection(request, pk: int):
    """Test a saved integration's connection."""
    integration = _integration(request, pk)
    ok, message = services.connection_outcome(integration=integration)
    if request.htmx:
        return render(request, "integrations/form.html#connection", {"ok": ok, "message": message})
    (messages.success if ok else messages.error)(request, message)
    return redirect("integrations:detail", slug=request.workspace.slug, pk=pk)


@workspace_view
def integration_detail(request, pk: int):
    """An integration: its connection, the current sync and the sync history."""
    integration = _integration(request, pk)
    if integration.receives:
        return RECEIVER_PAGES[integration.kind](request, integration)
    runs = list(
        SyncRun.objects.for_workspace(request.workspace).filter(integration=integration)[:20]
    )
    active = next((r for r in runs if not r.is_final), None)
    ctx = {
        "integration": integration,
        "runs": runs,
        "run": active or (runs[0] if runs else None),
        "trace_count": integration.traces.count(),
    }
    return render(request, "integrations/detail.html", ctx)


@workspace_view
def run_progress(request, pk: int, run_pk: int):
    """The progress fragment of one sync run (a page outside htmx); polling stops when the
    run is final."""
    integration = _integration(request, pk)
    run = get_object_or_404(
        SyncRun.objects.for_workspace(request.workspace).filter(integration=integration), pk=run_pk
    )
    ctx = {"integration": integration, "run": run, "trace_count": integration.traces.count()}
    response = fragment_or_page(
        request,
        "integrations/detail.html#progress",
        ctx,
        title=f"Sync of {integration.name}",
        back_url=reverse("integrations:detail", args=[request.workspace.slug, integration.pk]),
        back_label=f"Back to {integration.name}",
    )
    if run.is_final and request.htmx:
        # The page around the box (status badge, "Synced up to", history) changed with the
        # run: reload it rather than leave "not synced yet" beside "Done".
        response = HttpResponseStopPolling(response.content)
        response["HX-Refresh"] = "true"
    return response


@require_POST
@workspace_view
def sync_now(request, pk: int):
    """Queue a sync and show its progress."""
    integration = _integration(request, pk)
    try:
        run = services.start_sync(integration=integration, trigger=SyncRun.Trigger.MANUAL)
    except IntegrationError as exc:
        if request.htmx:
            return render(request, "integrations/detail.html#progress", {"error": exc.message})
        messages.error(request, exc.message)
        return redirect("integrations:detail", slug=request.workspace.slug, pk=pk)
    if request.htmx:
        ctx = {"integration": integration, "run": run, "trace_count": integration.traces.count()}
        return render(request, "integrations/detail.html#progress", ctx)
    if run.status == SyncRun.Status.RUNNING:  # start_sync returned the run under way
        messages.info(request, "A sync is already running: its progress is below.")
    else:
        messages.success(request, "Sync started.")
    return redirect("integrations:detail", slug=request.workspace.slug, pk=pk)


@require_POST
@workspace_view(manage=True)
def disable(request, pk: int):
    integration = services.set_integration_enabled(
        integration=_integration(request, pk), enabled=False
    )
    messages.success(request, f"“{integration.name}” disabled: no syncs until you enable it.")
    return redirect("integrations:detail", slug=request.workspace.slug, pk=pk)


@require_POST
@workspace_view(manage=True)
def enable(request, pk: int):
    integration = services.set_integration_enabled(
        integration=_integration(request, pk), enabled=True
    )
    messages.success(request, f"“{integration.name}” enabled.")
    return redirect("integrations:detail", slug=request.workspace.slug, pk=pk)


@require_http_methods(["GET", "POST"])  # GET: the question only
@workspace_view(manage=True)
def delete(request, pk: int):
    """Delete the integration: hidden at once, deleted by a worker; its traces are kept
    unless ``traces=delete`` (its own button) asks to delete them too."""
    # Found while being deleted too: a second click leads to the same deletion's page.
    integration = get_object_or_404(Integration.objects.for_workspace(request.workspace), pk=pk)
    delete_traces = (request.POST or request.GET).get("traces") == "delete"
    if not confirmed(request):
        return ask_first(
            request,
            question=f"Delete {integration.name}?",
            detail="Its traces are deleted with it, with their labels and verdicts; this "
            "cannot be undone."
            if delete_traces
            else "Its traces are kept, with their labels, no longer linked to it.",
            button="Delete",
            back_url=reverse("integrations:detail", args=[request.workspace.slug, pk]),
            keep={"traces": "delete"} if delete_traces else None,
        )
    try:
        run = request_integration_deletion(integration, request.user, delete_traces=delete_traces)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("integrations:list", slug=request.workspace.slug)
    traces = "being deleted" if run.delete_traces else "kept"
    messages.success(
        request, f"“{integration.name}” is hidden and being deleted; its traces are {traces}."
    )
    return redirect("traces:deletion", slug=request.workspace.slug, run_pk=run.pk)


@workspace_view(writers_only=True)
def upload(request):
    """Upload traces as JSON Lines; a worker ingests the file while the page shows progress."""
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        if uploaded.size > MAX_UPLOAD_BYTES:
            form.add_error(
                "file",
                f"The file is {uploaded.size / 1024 / 1024:.1f} MiB; the limit is "
                f"{MAX_UPLOAD_BYTES // 1024 // 1024} MiB. Split it, or send batches to "
                "POST /api/v1/traces/.",
            )
        else:
            try:
                admit_traces(workspace=request.workspace, count=count_lines(uploaded))
            except RateLimited as exc:
                form.add_error("file", exc.message)
                response = render(request, "integrations/upload.html", {"form": form}, status=429)
                response["Retry-After"] = str(exc.retry_after)
                return response
            run = start_upload(workspace=request.workspace, uploaded=uploaded)
            return redirect("integrations:upload_run", slug=request.workspace.slug, run_pk=run.pk)
    return render(request, "integrations/upload.html", {"form": form}, status=form_status(form))


@workspace_view
def upload_run(request, run_pk: int):
    """An upload's progress, then its report (htmx polls the fragment until it is final)."""
    run = get_object_or_404(UploadRun.objects.for_workspace(request.workspace), pk=run_pk)
    if request.htmx:
        response = render(request, "integrations/upload.html#run", {"run": run})
        return HttpResponseStopPolling(response.content) if run.is_final else response
    return render(request, "integrations/upload.html", {"form": UploadForm(), "run": run})
