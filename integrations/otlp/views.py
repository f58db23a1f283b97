"""The OpenTelemetry source's pages: how to point an exporter at iofold, and what arrived."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse

from integrations import receiver_pages
from integrations.models import Integration
from integrations.receiver_pages import TOKEN_PLACEHOLDER, received_context
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


def endpoint_url(request: HttpRequest) -> str:
    """Return the absolute URL of the receiver, as exporters must be told it."""
    return request.build_absolute_uri(reverse("api-otlp-traces"))


def setup_example(endpoint: str, token: str = TOKEN_PLACEHOLDER) -> str:
    """Return the five-line exporter set-up for ``endpoint``."""
    return SETUP_EXAMPLE.format(endpoint=endpoint, token=token)


def _context(request, integration: Integration | None) -> dict:
    endpoint = endpoint_url(request)
    return {
        **received_context(integration),
        "endpoint": endpoint,
        "example": setup_example(endpoint),
        "env_example": (
            f"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={endpoint}\n"
            f'OTEL_EXPORTER_OTLP_TRACES_HEADERS="Authorization=Bearer {TOKEN_PLACEHOLDER}"'
        ),
    }


def detail(request, integration: Integration | None):
    """The OpenTelemetry source: endpoint, set-up, last received, counts and last error."""
    return render(request, "integrations/otlp.html", _context(request, integration))


@workspace_view
def setup(request):
    """How to send OpenTelemetry traces here; managers create the source (POST)."""
    return receiver_pages.setup(request, kind=Integration.Kind.OTLP, page=detail)
