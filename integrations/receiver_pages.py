"""The pages every receiving source shares: set it up, then see what it received."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect

from integrations import receivers
from integrations.adapters import get_adapter_class

# The five lines that point the Agents SDK's exporter at iofold (``add_trace_processor``
# instead of ``set_trace_processors`` keeps OpenAI's dashboard too).
AGENTS_SETUP_EXAMPLE = "\n".join(
    [
        "from agents import set_trace_processors",
        "from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor",
        "",
        'exporter = BackendSpanExporter(api_key="{token}", endpoint="{endpoint}")',
        "set_trace_processors([BatchTraceProcessor(exporter)])",
    ]
)
# Shown where the user puts their own token; not a credential.
TOKEN_PLACEHOLDER = "iof_…"  # noqa: S105


def agents_setup_example(endpoint: str, token: str = TOKEN_PLACEHOLDER) -> str:
    """Return the Agents SDK exporter set-up for ``endpoint``."""
    return AGENTS_SETUP_EXAMPLE.format(endpoint=endpoint, token=token)


def received_context(integration) -> dict:
    """Return what the "Received" panel shows: the source and its trace and span counts."""
    if integration is None:
        return {"integration": None}
    counts = receivers.received_counts(integration)
    return {
        "integration": integration,
        "trace_count": counts["traces"],
        "span_count": counts["spans"],
    }


def setup(request, *, kind: str, page: Callable[..., HttpResponse]) -> HttpResponse:
    """How to send traces of ``kind`` here; managers create the source (POST).

    Once the source exists its page is the integration's: this redirects there.
    """
    existing = receivers.find_receiver(workspace=request.workspace, kind=kind)
    if request.method == "POST":
        if not request.membership.can_manage:
            # workspace_view already refused viewers; members may send, not configure.
            raise PermissionDenied("Only owners and admins can do this.")
        integration = existing or receivers.get_or_create_receiver(
            workspace=request.workspace, kind=kind
        )
        if existing is None:
            label = get_adapter_class(kind).label
            messages.success(request, f"{label} source ready: point an exporter at it.")
        return redirect("integrations:detail", slug=request.workspace.slug, pk=integration.pk)
    if existing is not None:
        return redirect("integrations:detail", slug=request.workspace.slug, pk=existing.pk)
    return page(request, None)
