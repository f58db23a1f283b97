from django.db import models

from integrations.models import Integration
from traces.querysets import TraceQuerySet
from workspaces.models import WorkspaceOwned


class Trace(WorkspaceOwned):
    """One normalised trace (DESIGN.md); ``data`` is exactly what an eval receives."""

    class Source(models.TextChoices):
        LANGFUSE = "langfuse", "Langfuse"
        UPLOAD = "upload", "Upload"
        API = "api", "API"
        WEBHOOK = "webhook", "Webhook"
        DEMO = "demo", "Demo"

    integration = models.ForeignKey(
        Integration, on_delete=models.SET_NULL, null=True, blank=True, related_name="traces"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    # "i<integration id>" for synced traces, else the source: with external_id, the natural
    # key that makes every sync, upload and webhook an idempotent upsert.
    source_key = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    timestamp = models.DateTimeField()
    data = models.JSONField()
    # Denormalised from ``data`` for filtering and listing without reading payloads.
    search_text = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    has_error = models.BooleanField(default=False)
    step_count = models.PositiveIntegerField(default=0)
    tool_call_count = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True)
    content_hash = models.CharField(max_length=64)

    objects = TraceQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "source_key", "external_id"],
                name="traces_trace_one_per_source_id",
            )
        ]
        indexes = [
            # Keyset pagination of the trace list, newest first.
            models.Index(fields=["workspace", "-timestamp", "-id"], name="trace_ws_time_idx"),
            models.Index(fields=["workspace", "name"], name="trace_ws_name_idx"),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id
