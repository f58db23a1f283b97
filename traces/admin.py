from django.contrib import admin

from iofold.lib.admin import changelist_link
from traces.models import Conversation, DeletionRun, EvalSet, EvalSetTrace, Feedback, Trace
from workspaces.admin import WorkspaceOwnedAdmin


@admin.register(Trace)
class TraceAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "__str__",
        "workspace",
        "source",
        "integration",
        "timestamp",
        "has_error",
        "step_count",
        "latency_ms",
    ]
    list_filter = ["source", "has_error", "timestamp"]
    search_fields = ["external_id", "name", "workspace__slug"]
    list_select_related = ["workspace", "integration"]
    list_defer = ("data", "search_text")
    raw_id_fields = ["workspace", "integration", "conversation"]
    readonly_fields = ["source_key", "content_hash", "deletion", "created_at", "updated_at"]
    date_hierarchy = "timestamp"
    # The trace list can be very long: don't count it on every page.
    show_full_result_count = False


@admin.register(Conversation)
class ConversationAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "__str__",
        "workspace",
        "source",
        "turn_count",
        "last_activity_at",
        "completed_at",
        "completion_count",
        "has_error",
    ]
    list_filter = ["source", "has_error", ("completed_at", admin.EmptyFieldListFilter)]
    search_fields = ["external_id", "workspace__slug"]
    list_select_related = ["workspace"]
    raw_id_fields = ["workspace", "integration", "anchor"]
    # Kept by ingestion and the completion sweep; editing them by hand would desynchronise.
    readonly_fields = [
        "source_key",
        "started_at",
        "last_activity_at",
        "turn_count",
        "ended_at",
        "completion_count",
        "created_at",
        "updated_at",
    ]
    date_hierarchy = "last_activity_at"
    show_full_result_count = False
    actions = ["reopen"]

    @admin.action(description="Reopen (judged again when it next completes)")
    def reopen(self, request, queryset):
        updated = queryset.update(completed_at=None, ended_at=None)
        self.message_user(request, f"Reopened {updated} conversation(s).")


@admin.register(EvalSet)
class EvalSetAdmin(WorkspaceOwnedAdmin):
    list_display = ["name", "workspace", "source_kind", "target_labels", "archived_at"]
    list_filter = ["source_kind", "archived_at", "score_to_langfuse"]
    search_fields = ["name", "criteria", "workspace__slug"]
    list_select_related = ["workspace"]
    raw_id_fields = ["workspace", "created_by"]
    # Labels can number 10,000: linked, not listed inline.
    readonly_fields = ["labels", "deletion", "created_at", "updated_at"]

    @admin.display(description="Labels")
    def labels(self, obj) -> str:
        return changelist_link(Feedback, "eval_set", obj, obj.feedback.count())


@admin.register(EvalSetTrace)
class EvalSetTraceAdmin(WorkspaceOwnedAdmin):
    list_display = ["eval_set", "trace", "workspace", "created_at"]
    search_fields = ["eval_set__name", "trace__external_id", "workspace__slug"]
    list_select_related = ["eval_set", "trace", "workspace"]
    list_defer = ("trace__data", "trace__search_text")
    raw_id_fields = ["workspace", "eval_set", "trace"]


@admin.register(Feedback)
class FeedbackAdmin(WorkspaceOwnedAdmin):
    list_display = ["trace", "eval_set", "user", "rating", "updated_at"]
    list_filter = ["rating", "updated_at"]
    search_fields = ["note", "user__email", "eval_set__name", "workspace__slug"]
    list_select_related = ["trace", "eval_set", "user"]
    list_defer = ("trace__data", "trace__search_text")
    raw_id_fields = ["workspace", "trace", "eval_set", "user"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(DeletionRun)
class DeletionRunAdmin(WorkspaceOwnedAdmin):
    list_display = ["__str__", "workspace", "kind", "status", "done", "total", "created_at"]
    list_filter = ["kind", "status", "created_at"]
    search_fields = ["name", "error", "workspace__slug", "user__email"]
    list_select_related = ["workspace"]
    raw_id_fields = ["workspace", "user"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
