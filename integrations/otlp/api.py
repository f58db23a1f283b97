"""The workspace's OpenTelemetry source under /api/v1/integrations/otlp/."""

from drf_spectacular.utils import extend_schema

from integrations.api import ReceiverSourceApi, receiver_schema, receiver_source_out
from integrations.models import Integration
from integrations.otlp.views import endpoint_url, setup_example


@extend_schema(tags=["integrations"])
@receiver_schema(receiver_source_out("OtlpSourceOut"))
class OtlpSourceApi(ReceiverSourceApi):
    """Where to send OTLP spans, and what the workspace's OpenTelemetry source received."""

    kind = Integration.Kind.OTLP

    def endpoint(self, request) -> str:
        return endpoint_url(request)

    def example(self, endpoint: str) -> str:
        return setup_example(endpoint)
