"""The OpenTelemetry source's pages: how to point an exporter at iofold, and what arrived."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import HttpRequest
from django.shortcuts import redirect, render
from django.urls import reverse

from integrations.models import Integration
from integrations.otlp.receiver import get_or_create_otlp_source
from workspaces.access import workspace_view

# The five lines a Python app needs (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http).
SETUP_EXAMPLE = "\n".join(
    [
        "from opentelemetry import trace",
        "from opentelemetry.sdk.trace import TracerProvider, export",
        "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter",
        "trace.set_tracer_provider(provider := TracerProvider())",
        "provider.add_span_processor(export.BatchSpanProcessor(OTLPSpanExporter("
        'endpoint="{endpoint}", headers={{"Authorization": "Bearer {token}"}})))',
    ]
)
# Shown where the user puts their own token; not a credential.
TOKEN_PLACEHOLDER = "iof_…"  # noqa: S105


def endpoint_url(request: HttpRequest) -> str:
    """Return the absolute URL of the receiver, as exporters must be told it."""
    return request.build_absolute_uri(reverse("api-otlp-traces"))


def setup_example(endpoint: str, token: str = TOKEN_PLACEHOLDER) -> str:
    """Return the five-line exporter set-up for ``endpoint``."""
    return SETUP_EXAMPLE.format(endpoint=endpoint, token=token)


def _context(request, integration: Integration | None) -> dict:
    endpoint = endpoint_url(request)
    ctx = {
        "integration": integration,
        "endpoint": endpoint,
        "example": setup_example(endpoint),
        "env_example": (
            f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={endpoint}\n"
            f'OTEL_EXPORTER_OTLP_TRACES_HEADERS="Authorization=Bearer {TOKEN_PLACEHOLDER}"'
        ),
    }
    if integration is not None:
        counts = integration.traces.aggregate(spans=Sum("step_count"))
        ctx["trace_count"] = integration.traces.count()
        ctx["span_count"] = counts["spans"] or 0
    return ctx


def detail(request, integration: Integration):
    """The OpenTelemetry source: endpoint, set-up, last received, counts and last error."""
    return render(request, "integrations/otlp.html", _context(request, integration))


@workspace_view
def setup(request):
    """How to send OpenTelemetry traces here; managers create the source (POST)."""
    existing = (
        Integration.objects.for_workspace(request.workspace)
        .filter(kind=Integration.Kind.OTLP)
        .order_by("created_at", "id")
        .first()
    )
    if request.method == "POST":
        if not request.membership.can_manage:
            # workspace_view already refused viewers; members may send, not configure.
            raise PermissionDenied("Only owners and admins can do this.")
        integration = existing or get_or_create_otlp_source(workspace=request.workspace)
        if existing is None:
            messages.success(request, "OpenTelemetry source ready: point an exporter at it.")
        return redirect("integrations:detail", slug=request.workspace.slug, pk=integration.pk)
    if existing is not None:
        return redirect("integrations:detail", slug=request.workspace.slug, pk=existing.pk)
    return render(request, "integrations/otlp.html", _context(request, None))
