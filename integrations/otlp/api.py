"""The workspace's OpenTelemetry source under /api/v1/integrations/otlp/."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import receivers
from integrations.models import Integration
from integrations.otlp.receiver import get_or_create_otlp_source
from integrations.otlp.views import endpoint_url, setup_example
from workspaces.access import WorkspaceScopedMixin

OtlpSourceOut = inline_serializer(
    "OtlpSourceOut",
    {
        "integration": serializers.IntegerField(allow_null=True),
        "endpoint": serializers.URLField(),
        "enabled": serializers.BooleanField(),
        "status": serializers.CharField(),
        "last_received_at": serializers.DateTimeField(allow_null=True),
        "last_error": serializers.CharField(),
        "traces": serializers.IntegerField(),
        "spans": serializers.IntegerField(),
        "example": serializers.CharField(),
    },
)


def _out(request, integration: Integration | None) -> dict:
    endpoint = endpoint_url(request)
    out = {
        "integration": None,
        "endpoint": endpoint,
        "enabled": True,
        "status": Integration.Status.NEW,
        "last_received_at": None,
        "last_error": "",
        "traces": 0,
        "spans": 0,
        "example": setup_example(endpoint),
    }
    if integration is not None:
        out.update(
            integration=integration.pk,
            enabled=integration.enabled,
            status=integration.status,
            last_received_at=integration.last_synced_at,
            last_error=integration.last_error,
            **receivers.received_counts(integration),
        )
    return out


@extend_schema(tags=["integrations"])
class OtlpSourceApi(WorkspaceScopedMixin, APIView):
    """Where to send OTLP spans, and what the workspace's OpenTelemetry source received."""

    model = Integration
    manage_only = True

    def _source(self) -> Integration | None:
        return receivers.find_receiver(workspace=self.request.workspace, kind=Integration.Kind.OTLP)

    @extend_schema(responses=OtlpSourceOut)
    def get(self, request):
        return Response(_out(request, self._source()))

    @extend_schema(request=None, responses={201: OtlpSourceOut, 200: OtlpSourceOut})
    def post(self, request):
        """Create the source now rather than on the first spans received."""
        existing = self._source()
        integration = existing or get_or_create_otlp_source(workspace=request.workspace)
        code = status.HTTP_200_OK if existing else status.HTTP_201_CREATED
        return Response(_out(request, integration), status=code)
