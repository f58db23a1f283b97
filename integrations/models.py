from datetime import timedelta
from pathlib import Path

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from iofold.lib.fields import EncryptedTextField, last_four
from iofold.lib.runs import ACTIVE as ACTIVE_RUN_STATUSES
from iofold.lib.runs import BackgroundRun, BackgroundRunQuerySet, RunStatus
from workspaces.models import WorkspaceOwned
from workspaces.querysets import WorkspaceQuerySet

LANGFUSE_CLOUD_EU = "https://cloud.langfuse.com"
LANGFUSE_CLOUD_US = "https://us.cloud.langfuse.com"


class IntegrationQuerySet(WorkspaceQuerySet):
    def enabled(self):
        return self.filter(enabled=True)

    def present(self):
        """Integrations not being deleted (a worker deletes them with their traces)."""
        return self.filter(deletion_requested_at__isnull=True)


class Integration(WorkspaceOwned):
    """A source of traces: a platform iofold pulls from, or an endpoint that receives them."""

    class Kind(models.TextChoices):
        LANGFUSE = "langfuse", "Langfuse"
        LANGSMITH = "langsmith", "LangSmith"
        OPENAI = "openai", "OpenAI"
        OPENAI_AGENTS = "openai_agents", "OpenAI Agents SDK"
        OTLP = "otlp", "OpenTelemetry (OTLP)"

    class Status(models.TextChoices):
        NEW = "new", "Not synced yet"
        OK = "ok", "OK"
        ERROR = "error", "Error"
        AUTH_FAILED = "auth_failed", "Credentials rejected"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.LANGFUSE)
    enabled = models.BooleanField(default=True)
    # Not a URLField: self-hosted Langfuse often lives at a bare host name (http://langfuse:3000).
    # Blank for a receiving source without a read-back key; each kind's adapter checks its
    # own host (clean_settings).
    host = models.CharField(max_length=300, default=LANGFUSE_CLOUD_EU, blank=True)
    # The public key identifies the project (Langfuse prints it in its UI); only the
    # secret key is a credential.
    public_key = models.CharField(max_length=200, blank=True)
    secret_key = EncryptedTextField(blank=True)
    # Per-integration selection of traces to sync; empty means everything.
    filter_names = models.JSONField(default=list, blank=True)
    filter_tags = models.JSONField(default=list, blank=True)
    filter_environments = models.JSONField(default=list, blank=True)
    since_date = models.DateTimeField(null=True, blank=True)
    # Settings only one kind of source has (a LangSmith project, an OpenAI metadata
    # filter), validated by that source's adapter; credentials never go here.
    options = models.JSONField(default=dict, blank=True)
    sync_interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    periodic_task = models.OneToOneField(
        PeriodicTask, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Sync progress. ``watermark`` is the newest trace time of the last finished scan;
    # ``sync_cursor`` is the adapter's resume point of an unfinished one, saved per page so
    # that a killed worker costs at most one page.
    watermark = models.DateTimeField(null=True, blank=True)
    sync_cursor = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    last_error = models.TextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    project_name = models.CharField(max_length=200, blank=True)
    # Signs traces pushed to the webhook endpoint (HMAC-SHA256); shown once when generated.
    webhook_secret = EncryptedTextField(blank=True)
    # Verdicts sent back as Langfuse scores: the last delivery, and the failures since the
    # last delivery without any, with the latest reason, shown on the integration's page.
    scores_pushed_at = models.DateTimeField(null=True, blank=True)
    scores_pushed_count = models.PositiveIntegerField(default=0)
    score_push_failures = models.PositiveIntegerField(default=0)
    score_push_error = models.TextField(blank=True)
    score_push_failed_at = models.DateTimeField(null=True, blank=True)
    # An Agents SDK source's response reads that OpenAI refused (401/403) in a row; at
    # traces.agents_responses.MAX_KEY_REJECTIONS reading stops until the key changes.
    response_key_rejections = models.PositiveIntegerField(default=0)
    # Set when its deletion is asked for: hidden, never synced nor scored again, while a
    # worker deletes its traces and then the row (traces.deletions).
    deletion_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = IntegrationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name"], name="integrations_integration_unique_name"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Integration {self.pk} {self.name!r} {self.kind}>"

    @property
    def source_key(self) -> str:
        return f"i{self.pk}"

    @property
    def secret_hint(self) -> str:
        return last_four(self.secret_key)

    @property
    def schedule_text(self) -> str:
        """How often a scheduled sync runs ("every day"); empty when it syncs when asked."""
        from integrations.constants import interval_text

        minutes = self.sync_interval_minutes
        return interval_text(minutes) if minutes else ""

    @property
    def receives(self) -> bool:
        """Whether exporters post this source's traces to iofold (nothing to sync or test)."""
        from integrations.adapters import receives

        return receives(self.kind)

    @property
    def receive_endpoint(self) -> str:
        """The path exporters post this source's traces to; empty for a pulled source."""
        from integrations.adapters import get_adapter_class

        return get_adapter_class(self.kind).endpoint if self.receives else ""

    @property
    def webhook_secret_hint(self) -> str:
        return last_four(self.webhook_secret)


class SyncRunQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    def active(self):
        return self.unfinished()


class SyncRun(BackgroundRun, WorkspaceOwned):
    """One sync of one integration: its progress, counts and outcome."""

    Status = RunStatus

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULE = "schedule", "Schedule"
        API = "api", "API"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    # Share of the scanned time range done, 0 to 1; the total number of traces is unknown.
    progress = models.FloatField(default=0.0)
    resumed = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    objects = SyncRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One queued or running sync per integration; the database settles races.
            models.UniqueConstraint(
                fields=["integration"],
                condition=Q(status__in=ACTIVE_RUN_STATUSES),
                name="integrations_syncrun_one_active",
            )
        ]

    def __str__(self) -> str:
        return f"Sync #{self.pk} of {self.integration_id} ({self.status})"

    @property
    def processed(self) -> int:
        return self.created_count + self.updated_count + self.unchanged_count + self.failed_count

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


class UploadRunQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    def fail(self, error: str, **fields) -> int:
        """Fail these uploads unless finished, and delete their files: nothing reads them again."""
        paths = list(self.unfinished().values_list("path", flat=True))
        count = super().fail(error, **fields)
        if count:
            # After the commit: a rolled-back failure leaves the run, and so its file.
            transaction.on_commit(lambda: [Path(p).unlink(missing_ok=True) for p in paths])
        return count


class UploadRun(BackgroundRun, WorkspaceOwned):
    """One JSONL upload, ingested by a worker from the file the request stored."""

    Status = RunStatus

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    filename = models.CharField(max_length=255)
    # Where the request stored the file (under IOFOLD_VAR_DIR, shared with the workers);
    # deleted once ingested.
    path = models.CharField(max_length=500)
    size = models.PositiveBigIntegerField(default=0)
    # Bytes ingested so far: the progress bar's value.
    bytes_done = models.PositiveBigIntegerField(default=0)
    # IngestReport.as_dict() once finished: counts and the first rejected lines.
    report = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = UploadRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Upload #{self.pk} {self.filename} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.bytes_done / self.size) if self.size else 0
