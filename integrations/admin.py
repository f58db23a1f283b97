from django import forms
from django.contrib import admin

from integrations import services
from integrations.adapters import receives
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun, UploadRun
from workspaces.admin import SameWorkspaceForm, WorkspaceOwnedAdmin


class IntegrationAdminForm(SameWorkspaceForm):
    """The admin checks the host as the app does: a URL iofold may connect to.

    No Meta: the admin builds the form's fields from the model admin below.
    """

    def clean_host(self):
        kind = self.cleaned_data.get("kind") or Integration.Kind.LANGFUSE
        if receives(kind):
            return ""  # exporters post to iofold; no host to connect to
        try:
            return services.clean_host(self.cleaned_data.get("host", ""), kind=kind)
        except IntegrationError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self):
        """Check a saved integration's settings with its kind's adapter, as the app does."""
        data = super().clean()
        if self.instance.pk and "options" in self.changed_data and not self.errors:
            try:
                settings = services.clean_settings(
                    kind=data.get("kind") or self.instance.kind,
                    host=data.get("host", ""),
                    public_key=data.get("public_key", ""),
                    secret_key=self.instance.secret_key,
                    options=data.get("options") or {},
                )
            except IntegrationError as exc:
                raise forms.ValidationError(exc.message) from None
            data["options"] = settings.options
        return data


@admin.register(Integration)
class IntegrationAdmin(WorkspaceOwnedAdmin):
    form = IntegrationAdminForm
    list_display = [
        "name",
        "workspace",
        "kind",
        "host",
        "enabled",
        "status",
        "secret_hint",
        "sync_interval_minutes",
        "last_synced_at",
    ]
    list_filter = ["kind", "enabled", "status"]
    search_fields = ["name", "host", "public_key", "workspace__slug", "workspace__name"]
    list_select_related = ["workspace"]
    raw_id_fields = ["workspace", "periodic_task"]
    # Secrets are never form fields: they are set through the app, encrypted, and only
    # their last characters are shown.
    exclude = ["secret_key", "webhook_secret"]
    readonly_fields = [
        "secret_hint",
        "webhook_secret_hint",
        "watermark",
        "sync_cursor",
        "status",
        "last_error",
        "project_name",
        "last_synced_at",
        # Counted by the response reader; saving a new key (in the app) resets it.
        "response_key_rejections",
        "created_at",
        "updated_at",
    ]
    actions = ["sync_now"]

    @admin.display(description="Secret key")
    def secret_hint(self, obj) -> str:
        return obj.secret_hint

    @admin.display(description="Webhook secret")
    def webhook_secret_hint(self, obj) -> str:
        return obj.webhook_secret_hint or "—"

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset):
        queued, skipped = 0, 0
        for integration in queryset:
            try:
                services.start_sync(integration=integration, trigger="manual")
                queued += 1
            except IntegrationError:
                skipped += 1
        self.message_user(
            request, f"{queued} sync(s) queued, {skipped} skipped (disabled or receive-only)."
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.schedule_sync(integration=obj)


@admin.register(SyncRun)
class SyncRunAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "id",
        "integration",
        "workspace",
        "status",
        "trigger",
        "created_count",
        "updated_count",
        "failed_count",
        "pages",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger", "created_at"]
    search_fields = ["integration__name", "workspace__slug", "error"]
    list_select_related = ["integration", "workspace"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UploadRun)
class UploadRunAdmin(WorkspaceOwnedAdmin):
    list_display = ["id", "workspace", "filename", "status", "size", "bytes_done", "created_at"]
    list_filter = ["status"]
    search_fields = ["workspace__slug", "filename", "error"]
    list_select_related = ["workspace"]
    readonly_fields = [f.name for f in UploadRun._meta.fields if f.name not in ("id", "workspace")]
    raw_id_fields = ["workspace"]
