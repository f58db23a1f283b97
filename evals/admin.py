from django.contrib import admin

from evals.exceptions import EvalError
from evals.generation.services import start_generation
from evals.models import (
    Activity,
    AutomationSettings,
    AutoRefinement,
    Comment,
    ConversationJudgement,
    Eval,
    EvalExecution,
    EvalRun,
    EvalRunChunk,
    EvalTemplate,
    EvalTemplateVersion,
    Generation,
    ProviderSettings,
)
from iofold.lib.admin import CountedDeletionMixin, changelist_link
from iofold.lib.fields import last_four
from workspaces.admin import WorkspaceOwnedAdmin


@admin.register(ProviderSettings)
class ProviderSettingsAdmin(WorkspaceOwnedAdmin):
    list_display = ["workspace", "provider", "model", "base_url", "key_hint", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["workspace__slug", "workspace__name", "model"]
    list_select_related = ["workspace"]
    raw_id_fields = ["workspace"]
    # The key is set through the workspace's settings page, encrypted; never shown here.
    exclude = ["api_key"]
    readonly_fields = ["key_hint", "created_at", "updated_at"]

    @admin.display(description="API key")
    def key_hint(self, obj) -> str:
        return last_four(obj.api_key) or "—"


class EvalRunChunkInline(admin.TabularInline):
    """A split run's chunks: who holds each, how far, how often it was taken over."""

    model = EvalRunChunk
    fields = ["index", "status", "judged", "owner", "takeovers", "heartbeat_at", "error"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(Eval)
class EvalAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "__str__",
        "workspace",
        "status",
        "provider",
        "model",
        "agreement",
        "labels_tested",
        "low_confidence",
        "cost_usd",
        "created_at",
    ]
    list_filter = ["status", "provider", "origin", "low_confidence"]
    search_fields = ["eval_set__name", "workspace__slug", "workspace__name", "model"]
    list_select_related = ["workspace", "eval_set"]
    raw_id_fields = ["workspace", "eval_set", "parent", "created_by"]
    readonly_fields = [
        "code",
        "prompt",
        "prompt_version",
        "provider",
        "model",
        "origin",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "metrics",
        "agreement",
        "labels_tested",
        "low_confidence",
        "low_confidence_reason",
        "activated_at",
        "created_at",
        "updated_at",
    ]


@admin.register(Generation)
class GenerationAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "id",
        "eval_set",
        "workspace",
        "status",
        "provider",
        "model",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "provider"]
    search_fields = ["eval_set__name", "workspace__slug", "error"]
    list_select_related = ["workspace", "eval_set"]
    raw_id_fields = ["workspace", "eval_set", "parent", "result", "created_by"]
    readonly_fields = [
        "stage",
        "attempts",
        "error",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "owner",
        "takeovers",
        "created_at",
    ]
    actions = ["generate_again"]

    @admin.action(description="Generate again for these eval sets")
    def generate_again(self, request, queryset):
        queued = skipped = 0
        for eval_set in {g.eval_set for g in queryset.select_related("eval_set")}:
            try:
                start_generation(eval_set=eval_set, user=request.user)
                queued += 1
            except EvalError:
                skipped += 1
        self.message_user(request, f"{queued} generation(s) queued, {skipped} skipped.")


@admin.register(EvalRun)
class EvalRunAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "id",
        "eval",
        "workspace",
        "trigger",
        "status",
        "total",
        "done",
        "passed",
        "failed",
        "errors",
        "created_at",
    ]
    list_filter = ["status", "trigger"]
    search_fields = ["eval__eval_set__name", "workspace__slug", "error"]
    list_select_related = ["workspace", "eval", "eval__eval_set"]
    raw_id_fields = ["workspace", "eval"]
    readonly_fields = [
        "trace_ids",
        "total",
        "done",
        "passed",
        "failed",
        "errors",
        "error",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "owner",
        "takeovers",
        "inputs",
        "results",
        "executions",
        "created_at",
    ]
    # Executions are one a trace, so a run can have 100,000: linked, not listed inline.
    inlines = [EvalRunChunkInline]

    @admin.display(description="Executions")
    def executions(self, obj) -> str:
        return changelist_link(
            EvalExecution, "run", obj, EvalExecution.objects.filter(run=obj).count()
        )


@admin.register(EvalExecution)
class EvalExecutionAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "id",
        "eval",
        "trace",
        "workspace",
        "passed",
        "duration_ms",
        "score_pushed_at",
        "created_at",
    ]
    list_filter = ["passed"]
    search_fields = [
        "eval__eval_set__name",
        "workspace__slug",
        "trace__external_id",
        "reason",
        "error",
    ]
    list_select_related = ["workspace", "eval", "eval__eval_set", "trace"]
    list_defer = ("trace__data", "trace__search_text", "eval__code", "eval__prompt", "output")
    raw_id_fields = ["workspace", "eval", "run", "trace"]
    readonly_fields = [
        "passed",
        "reason",
        "error",
        "duration_ms",
        "output",
        "score_pushed_at",
        "score_error",
        "created_at",
        "updated_at",
    ]


@admin.register(ConversationJudgement)
class ConversationJudgementAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "__str__",
        "workspace",
        "eval",
        "completion",
        "turn_count",
        "cause",
        "passed",
        "created_at",
    ]
    list_filter = ["passed", "cause", "created_at"]
    search_fields = ["conversation__external_id", "workspace__slug", "fingerprint"]
    list_select_related = ["workspace", "eval__eval_set", "conversation"]
    raw_id_fields = ["workspace", "conversation", "eval", "run"]
    # The history is what the evals said: never edited by hand.
    readonly_fields = [
        "conversation",
        "eval",
        "run",
        "completion",
        "turn_count",
        "last_turn_at",
        "cause",
        "fingerprint",
        "passed",
        "reason",
        "error",
        "created_at",
    ]


@admin.register(AutomationSettings)
class AutomationSettingsAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "workspace",
        "auto_refine",
        "monthly_refinements",
        "auto_promote",
        "webhook_url",
    ]
    search_fields = ["workspace__slug", "workspace__name"]
    list_select_related = ["workspace"]
    raw_id_fields = ["workspace"]
    # The signing secret is shown once to the workspace; never here.
    exclude = ["webhook_secret"]
    readonly_fields = ["secret_hint", "created_at", "updated_at"]

    @admin.display(description="Signing secret")
    def secret_hint(self, obj) -> str:
        return last_four(obj.webhook_secret) or "—"


@admin.register(AutoRefinement)
class AutoRefinementAdmin(WorkspaceOwnedAdmin):
    list_display = ["eval_set", "parent", "trigger", "status", "candidate", "created_at"]
    list_filter = ["status", "trigger"]
    search_fields = ["workspace__slug", "eval_set__name", "reason"]
    list_select_related = ["eval_set", "parent__eval_set", "candidate__eval_set"]
    raw_id_fields = ["workspace", "eval_set", "parent", "generation", "candidate"]


@admin.register(Comment)
class CommentAdmin(WorkspaceOwnedAdmin):
    list_display = ["workspace", "author", "eval", "trace", "created_at"]
    search_fields = ["workspace__slug", "body"]
    list_select_related = ["workspace", "author", "eval__eval_set", "trace"]
    list_defer = ("trace__data", "trace__search_text", "eval__code", "eval__prompt")
    raw_id_fields = ["workspace", "author", "eval", "trace"]


@admin.register(Activity)
class ActivityAdmin(WorkspaceOwnedAdmin):
    list_display = ["eval_set", "actor", "verb", "eval", "created_at"]
    list_filter = ["verb"]
    search_fields = ["workspace__slug", "eval_set__name", "reason"]
    list_select_related = ["eval_set", "actor", "eval__eval_set"]
    raw_id_fields = ["workspace", "eval_set", "actor", "eval"]


class EvalTemplateVersionInline(admin.TabularInline):
    model = EvalTemplateVersion
    fields = ["version", "measured_on", "published_by", "created_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(EvalTemplate)
class EvalTemplateAdmin(CountedDeletionMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "builtin", "publisher", "updated_at"]
    list_filter = ["builtin"]
    search_fields = ["name", "slug", "publisher__slug"]
    raw_id_fields = ["publisher"]
    inlines = [EvalTemplateVersionInline]
