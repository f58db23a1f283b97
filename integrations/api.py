"""Integrations and sync runs under /api/v1/."""

from collections.abc import Callable

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import receivers, services
from integrations.constants import MAX_SYNC_INTERVAL_MINUTES
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from integrations.receiver_pages import agents_setup_example
from integrations.validators import validate_public_key, validate_secret_key
from iofold.api import LOCATION, BodyIn, choice_param
from iofold.composition import deletion_data, request_integration_deletion
from workspaces.access import WorkspaceScopedMixin

# --- serializers ------------------------------------------------------------------------


# Shape checks of the keys a kind issues, run on top of the adapter's own checks.
KEY_VALIDATORS = {
    Integration.Kind.LANGFUSE: {
        "public_key": validate_public_key,
        "secret_key": validate_secret_key,
    },
}


class IntegrationIn(BodyIn):
    """A source to connect; ``kind`` picks the adapter that checks the rest."""

    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(
        choices=Integration.Kind.choices, default=Integration.Kind.LANGFUSE
    )
    # Optional here: OpenAI's adapter defaults it, the others say it is missing.
    host = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        default="",
        help_text="The source's base URL, e.g. https://cloud.langfuse.com or "
        "https://api.smith.langchain.com; OpenAI: default https://api.openai.com/v1",
    )
    public_key = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="Langfuse: the project's public key (pk-lf-…); LangSmith: empty.",
    )
    secret_key = serializers.CharField(
        write_only=True,
        trim_whitespace=True,
        help_text="Langfuse: the secret key (sk-lf-…); LangSmith: the API key.",
    )
    options = serializers.DictField(
        required=False,
        help_text='Settings of this kind only; LangSmith: {"project": …, "tenant_id": …}.',
    )
    filter_names = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False
    )
    filter_tags = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    filter_environments = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False
    )
    since_date = serializers.DateTimeField(required=False, allow_null=True)
    sync_interval_minutes = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_SYNC_INTERVAL_MINUTES,
        help_text="Minutes between scheduled syncs (5 to a week); 0 or null: manual only.",
    )

    def validate(self, attrs: dict) -> dict:
        kind = self.context.get("kind") or attrs.get("kind") or Integration.Kind.LANGFUSE
        errors = {}
        if "host" in attrs:
            try:
                attrs["host"] = services.clean_host(attrs["host"], kind=kind)
            except IntegrationError as exc:
                errors["host"] = [exc.message]
        if kind == Integration.Kind.LANGFUSE and not self.partial and not attrs.get("public_key"):
            errors["public_key"] = ["This field is required."]
        for field, validator in KEY_VALIDATORS.get(kind, {}).items():
            if attrs.get(field):
                try:
                    validator(attrs[field])
                except DjangoValidationError as exc:
                    errors[field] = list(exc.messages)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class IntegrationUpdateIn(IntegrationIn):
    """Every field optional; an omitted or empty ``secret_key`` keeps the stored one.

    The kind never changes; pass it in the context (``{"kind": integration.kind}``).
    """

    enabled = serializers.BooleanField(required=False)
    # The Agents SDK source's only credential: the OpenAI key its response spans are read
    # with (the UI's "OpenAI key" form). Stored encrypted, never returned.
    response_key = serializers.CharField(
        write_only=True,
        allow_blank=True,
        max_length=500,
        help_text="OpenAI Agents SDK only: the OpenAI API key response content is read "
        "with; empty removes it. Saving one reads again the traces that wait for it.",
    )
    response_base_url = serializers.CharField(
        max_length=300,
        allow_blank=True,
        help_text="OpenAI Agents SDK only, with response_key: the API base URL "
        "(default https://api.openai.com/v1).",
    )

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if "response_key" not in attrs and "response_base_url" not in attrs:
            return attrs
        if self.context.get("kind") != Integration.Kind.OPENAI_AGENTS:
            # A refusal of the logic ({"detail": ...}), as set_response_key's own.
            raise IntegrationError("Only the OpenAI Agents SDK source reads response content.")
        if attrs.get("response_key"):
            # Checked before anything is saved, so a bad URL changes nothing.
            try:
                attrs["response_base_url"] = services.clean_host(
                    attrs.get("response_base_url", ""), kind=Integration.Kind.OPENAI
                )
            except IntegrationError as exc:
                raise serializers.ValidationError({"response_base_url": [exc.message]}) from None
        return attrs

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)
        del self.fields["kind"]
        for field in self.fields.values():
            field.required = False
        self.fields["secret_key"].allow_blank = True


class IntegrationOut(serializers.ModelSerializer):
    secret_key_hint = serializers.CharField(source="secret_hint", read_only=True)

    class Meta:
        model = Integration
        fields = [
            "id",
            "name",
            "kind",
            "host",
            "public_key",
            "secret_key_hint",
            "options",
            "enabled",
            "status",
            "last_error",
            "project_name",
            "filter_names",
            "filter_tags",
            "filter_environments",
            "since_date",
            "sync_interval_minutes",
            "watermark",
            "last_synced_at",
            "created_at",
        ]


class SyncRunOut(serializers.ModelSerializer):
    created = serializers.IntegerField(source="created_count")
    updated = serializers.IntegerField(source="updated_count")
    unchanged = serializers.IntegerField(source="unchanged_count")
    failed = serializers.IntegerField(source="failed_count")
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "integration",
            "status",
            "trigger",
            "created",
            "updated",
            "unchanged",
            "failed",
            "pages",
            "progress",
            "resumed",
            "error",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "duration_seconds",
        ]

    def get_duration_seconds(self, run) -> float | None:
        return run.duration.total_seconds() if run.duration is not None else None


ConnectionOut = inline_serializer(
    "ConnectionOut",
    {
        "ok": serializers.BooleanField(),
        "project_id": serializers.CharField(),
        "project_name": serializers.CharField(),
        "server_version": serializers.CharField(allow_null=True),
        "message": serializers.CharField(),
    },
)
ConnectionFailedOut = inline_serializer(
    "ConnectionFailedOut",
    {
        "ok": serializers.BooleanField(),
        "detail": serializers.CharField(),
        "code": serializers.CharField(help_text="What failed, for a program: unreachable, ..."),
    },
)


# --- views ---------------------------------------------------------------------------------


class IntegrationMixin(WorkspaceScopedMixin):
    model = Integration
    # Connecting and changing credentials is for owners and admins.
    manage_only = True

    def get_queryset(self):
        # One being deleted is gone for every endpoint but its deletion.
        return super().get_queryset().present()

    def get_integration(self, *, deleting: bool = False) -> Integration:
        integrations = Integration.objects.for_workspace(self.request.workspace)
        if not deleting:
            integrations = integrations.present()
        return get_object_or_404(integrations, pk=self.kwargs["pk"])


@extend_schema(tags=["integrations"])
class IntegrationListApi(IntegrationMixin, generics.ListAPIView):
    serializer_class = IntegrationOut

    @extend_schema(request=IntegrationIn, responses={201: IntegrationOut}, parameters=[LOCATION])
    def post(self, request):
        data = IntegrationIn(data=request.data)
        data.is_valid(raise_exception=True)
        integration = services.create_integration(
            workspace=request.workspace, **data.validated_data
        )
        return Response(
            IntegrationOut(integration).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api-integration", args=[integration.pk])},
        )


@extend_schema(tags=["integrations"])
class IntegrationDetailApi(IntegrationMixin, APIView):
    @extend_schema(responses=IntegrationOut)
    def get(self, request, pk: int):
        return Response(IntegrationOut(self.get_integration()).data)

    @extend_schema(request=IntegrationUpdateIn, responses=IntegrationOut)
    def patch(self, request, pk: int):
        integration = self.get_integration()
        data = IntegrationUpdateIn(data=request.data, context={"kind": integration.kind})
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        enabled = changes.pop("enabled", None)
        response_base_url = changes.pop("response_base_url", "")
        response_key = changes.pop("response_key", None)
        integration = services.update_integration(integration=integration, **changes)
        if response_key is not None:
            integration = services.set_response_key(
                integration=integration, host=response_base_url, secret_key=response_key
            )
        if enabled is not None and enabled != integration.enabled:
            services.set_integration_enabled(integration=integration, enabled=enabled)
        return Response(IntegrationOut(integration).data)

    @extend_schema(
        summary="Delete the integration in the background; its traces are kept",
        description="The integration is hidden at once (no more syncs, nor scores sent to "
        "it) and a worker unlinks its traces in batches (they are kept, with their labels), "
        "then deletes it; with ?traces=delete its traces are hidden at once and deleted "
        "instead, with their labels and verdicts. "
        "Answers 202 with the deletion (as GET /api/v1/deletions/<id>/ shows it) and its "
        "Location to poll until its status is succeeded or failed. Asking again returns "
        "the same deletion (queued again if it failed).",
        responses={202: OpenApiResponse(description="The deletion, queued or running.")},
        parameters=[
            LOCATION,
            OpenApiParameter(
                "traces", str, enum=["keep", "delete"], description="keep (the default)"
            ),
        ],
    )
    def delete(self, request, pk: int):
        delete_traces = choice_param(request, "traces", ("keep", "delete")) == "delete"
        # Found while being deleted too: asking again returns the same deletion.
        integration = self.get_integration(deleting=True)
        run = request_integration_deletion(integration, request.user, delete_traces=delete_traces)
        out = deletion_data(run)
        return Response(out, status=status.HTTP_202_ACCEPTED, headers={"Location": out["url"]})


@extend_schema(tags=["integrations"])
class IntegrationTestApi(IntegrationMixin, APIView):
    @extend_schema(request=None, responses={200: ConnectionOut, 400: ConnectionFailedOut})
    def post(self, request, pk: int):
        """Check the stored credentials against the platform."""
        integration = self.get_integration()
        try:
            info = services.test_connection(integration=integration)
        except IntegrationError as exc:
            return Response(
                {"ok": False, "detail": exc.message, "code": exc.code},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(
            {
                "ok": True,
                "project_id": info.project_id,
                "project_name": info.project_name,
                "server_version": info.server_version,
                "message": services.connection_message(info),
            }
        )


@extend_schema(tags=["integrations"])
class IntegrationSyncApi(IntegrationMixin, APIView):
    manage_only = False  # members may start a sync

    @extend_schema(request=None, responses={202: SyncRunOut})
    def post(self, request, pk: int):
        """Queue a sync (or return the one already running)."""
        run = services.start_sync(integration=self.get_integration(), trigger=SyncRun.Trigger.API)
        return Response(SyncRunOut(run).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["integrations"])
class IntegrationRunsApi(IntegrationMixin, generics.ListAPIView):
    serializer_class = SyncRunOut

    def get_queryset(self):
        integration = self.get_integration()
        return SyncRun.objects.for_workspace(self.request.workspace).filter(integration=integration)


@extend_schema(tags=["integrations"])
class SyncRunDetailApi(WorkspaceScopedMixin, generics.RetrieveAPIView):
    model = SyncRun
    serializer_class = SyncRunOut


# --- sources that receive traces ---------------------------------------------------------


def receiver_source_out(name: str):
    """Return the schema of a receiving source's answer (one component per kind)."""
    return inline_serializer(
        name,
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


def receiver_schema(out) -> Callable:
    """The schema of a ``ReceiverSourceApi`` subclass whose answers are ``out``."""
    return extend_schema_view(
        get=extend_schema(responses=out),
        post=extend_schema(request=None, responses={201: out, 200: out}, parameters=[LOCATION]),
    )


class ReceiverSourceApi(WorkspaceScopedMixin, APIView):
    """Where a receiving kind's exporter posts, and what the workspace's source received.

    GET answers before the source exists too (``integration`` null); POST creates it now
    rather than on the first post an exporter makes. A subclass names the ``kind``, the
    receiving endpoint and the set-up example.
    """

    model = Integration
    manage_only = True
    kind: str = ""

    def endpoint(self, request) -> str:
        raise NotImplementedError

    def example(self, endpoint: str) -> str:
        raise NotImplementedError

    def _source(self) -> Integration | None:
        return receivers.find_receiver(workspace=self.request.workspace, kind=self.kind)

    def _out(self, request, integration: Integration | None) -> dict:
        endpoint = self.endpoint(request)
        out = {
            "integration": None,
            "endpoint": endpoint,
            "enabled": True,
            "status": Integration.Status.NEW,
            "last_received_at": None,
            "last_error": "",
            "traces": 0,
            "spans": 0,
            "example": self.example(endpoint),
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

    def get(self, request):
        return Response(self._out(request, self._source()))

    def post(self, request):
        """Create the source now rather than on the first traces received."""
        existing = self._source()
        integration = existing or receivers.get_or_create_receiver(
            workspace=request.workspace, kind=self.kind
        )
        if existing:
            return Response(self._out(request, integration))
        # The source is read back here, at this address (GET), as the answer shows it.
        return Response(
            self._out(request, integration),
            status=status.HTTP_201_CREATED,
            headers={"Location": request.path},
        )


@extend_schema(tags=["integrations"])
@receiver_schema(receiver_source_out("OpenAIAgentsSourceOut"))
class OpenAIAgentsSourceApi(ReceiverSourceApi):
    """Where the Agents SDK's exporter posts, and what the workspace's Agents SDK source
    received."""

    kind = Integration.Kind.OPENAI_AGENTS

    def endpoint(self, request) -> str:
        return request.build_absolute_uri(reverse("api-openai-agents-ingest"))

    def example(self, endpoint: str) -> str:
        return agents_setup_example(endpoint)
