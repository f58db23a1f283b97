from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.views.main import ChangeList
from django.http import HttpResponseRedirect
from django.utils.text import capfirst

from iofold.lib.admin import CountedDeletionMixin
from workspaces.exceptions import WorkspaceError
from workspaces.models import ApiToken, Invitation, Membership, Workspace, WorkspaceOwned
from workspaces.services import ensure_another_owner, release_member


class SameWorkspaceForm(forms.ModelForm):
    """A row's links stay inside its workspace.

    Pages and tasks scope by a row's own workspace and trust its links: a label of one
    workspace pointing at another's trace would show that trace to the wrong tenant.
    """

    def clean(self):
        data = super().clean()
        workspace = data.get("workspace") or getattr(self.instance, "workspace", None)
        if workspace is None:
            return data
        for f in self._meta.model._meta.concrete_fields:
            value = data.get(f.name)
            if f.name == "workspace" or not isinstance(value, WorkspaceOwned):
                continue
            if value.workspace_id != workspace.pk:
                self.add_error(
                    f.name,
                    f"{capfirst(f.verbose_name)} {value.pk} belongs to another workspace "
                    f"(“{value.workspace}”), not “{workspace}”.",
                )
        return data


class _ChangeList(ChangeList):
    def apply_select_related(self, qs):
        qs = super().apply_select_related(qs)
        return qs.defer(*self.model_admin.list_defer) if self.model_admin.list_defer else qs


class WorkspaceOwnedAdmin(CountedDeletionMixin, admin.ModelAdmin):
    """The admin of a workspace's rows: links stay inside the workspace, and a saved row
    stays in its workspace (moving it would leave its own links and children behind)."""

    form = SameWorkspaceForm
    # Columns the list never shows, left unread (``trace__data``: every listed row's trace
    # payload, up to megabytes each, read only to print the trace's name).
    list_defer: tuple[str, ...] = ()

    def get_changelist(self, request, **kwargs):
        return _ChangeList

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and "workspace" not in readonly:
            readonly.append("workspace")
        return readonly


class MembershipAdminForm(SameWorkspaceForm):
    """The admin keeps a workspace's last owner, as the members page does."""

    def clean_role(self):
        role = self.cleaned_data["role"]
        stored = Membership.objects.filter(pk=self.instance.pk).values_list("role", flat=True)
        if stored.first() == Membership.Role.OWNER and role != Membership.Role.OWNER:
            try:
                ensure_another_owner(self.instance)
            except WorkspaceError as exc:
                raise forms.ValidationError(exc.message) from None
        return role


def last_owner_refusal(memberships) -> str:
    """Say which workspace deleting ``memberships`` together would leave without an owner."""
    leaving = [m.pk for m in memberships]
    for membership in memberships:
        if membership.role != Membership.Role.OWNER:
            continue
        try:
            ensure_another_owner(membership, leaving=leaving)
        except WorkspaceError as exc:
            return f"{membership.workspace}: {exc.message} Nothing was deleted."
    return ""


class MembershipInlineFormSet(forms.BaseInlineFormSet):
    """The workspace page's members keep an owner when several rows change in one save:
    each row's own check (``MembershipAdminForm``) sees only the stored others."""

    def clean(self):
        super().clean()
        owner = Membership.Role.OWNER
        kept, leaving = False, []
        for form in self.forms:
            deleting = self._should_delete_form(form)
            role = None if deleting else getattr(form, "cleaned_data", {}).get("role")
            if role == owner:
                kept = True  # an owner stays, or is added in this save
            elif form.instance.pk is not None:
                leaving.append(form.instance)
        stored_owners = set(
            Membership.objects.filter(pk__in=[m.pk for m in leaving], role=owner).values_list(
                "pk", flat=True
            )
        )
        if kept or not stored_owners:
            return
        try:
            ensure_another_owner(leaving[0], leaving=stored_owners)
        except WorkspaceError as exc:
            raise forms.ValidationError(exc.message) from None


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipAdminForm
    formset = MembershipInlineFormSet
    extra = 0
    raw_id_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Workspace)
class WorkspaceAdmin(CountedDeletionMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "member_count",
        "is_demo",
        "created_at",
        "deletion_requested_at",
    ]
    list_filter = ["is_demo", "created_at", ("deletion_requested_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "slug", "memberships__user__email"]
    readonly_fields = ["created_at", "deletion_requested_at"]
    inlines = [MembershipInline]
    actions = ["request_deletion"]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description="Members", ordering="_members")
    def member_count(self, obj) -> int:
        return obj._members

    def has_delete_permission(self, request, obj=None) -> bool:
        # A workspace owns every row of a tenant: deleting it in a request would time out
        # and name each row. The action below hides it at once and a worker deletes it.
        return False

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        # A member removed here leaves as when removed in the app (tokens, review queue).
        for obj in getattr(formset, "deleted_objects", []):
            if isinstance(obj, Membership):
                release_member(membership=obj)

    @admin.action(description="Delete selected workspaces (in the background)")
    def request_deletion(self, request, queryset):
        from workspaces.services import request_workspace_deletion

        workspaces = list(queryset.filter(deletion_requested_at__isnull=True))
        for workspace in workspaces:
            request_workspace_deletion(workspace=workspace)
        self.message_user(request, f"{len(workspaces)} workspace(s) queued for deletion")


@admin.register(Membership)
class MembershipAdmin(WorkspaceOwnedAdmin):
    form = MembershipAdminForm
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role", "created_at"]
    search_fields = ["user__email", "workspace__slug", "workspace__name"]
    list_select_related = ["user", "workspace"]
    raw_id_fields = ["user", "workspace"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["delete_selected"]

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id) if request.method == "POST" else None
        if obj is not None and (refusal := last_owner_refusal([obj])):
            self.message_user(request, refusal, messages.ERROR)
            return HttpResponseRedirect(request.path)
        return super().delete_view(request, object_id, extra_context)

    @admin.action(permissions=["delete"], description="Delete selected memberships")
    def delete_selected(self, request, queryset):
        # Checked before Django's own action, which would report a success.
        if refusal := last_owner_refusal(list(queryset.select_related("workspace"))):
            self.message_user(request, refusal, messages.ERROR)
            return None
        return delete_selected(self, request, queryset)

    def delete_model(self, request, obj):
        # A member removed here leaves as when removed in the app (tokens, review queue).
        release_member(membership=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            release_member(membership=membership)
        super().delete_queryset(request, queryset)


@admin.register(Invitation)
class InvitationAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "email",
        "workspace",
        "role",
        "status",
        "invited_by",
        "expires_at",
        "accepted_at",
    ]
    list_filter = ["role", "accepted_at", "expires_at"]
    search_fields = ["email", "workspace__slug", "invited_by__email"]
    list_select_related = ["workspace", "invited_by"]
    raw_id_fields = ["workspace", "invited_by", "accepted_by"]
    # The token digest is never shown or edited.
    exclude = ["token_digest"]
    readonly_fields = ["created_at", "updated_at", "accepted_at", "accepted_by"]

    @admin.display(description="Status")
    def status(self, obj) -> str:
        if obj.accepted_at is not None:
            return "accepted"
        return "expired" if obj.is_expired else "pending"


@admin.register(ApiToken)
class ApiTokenAdmin(WorkspaceOwnedAdmin):
    list_display = [
        "name",
        "token_prefix",
        "workspace",
        "role",
        "created_by",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["role", ("revoked_at", admin.EmptyFieldListFilter), "last_used_at"]
    search_fields = ["name", "workspace__slug", "created_by__email", "lookup"]
    list_select_related = ["workspace", "created_by"]
    raw_id_fields = ["workspace", "created_by"]
    # The digest is never shown; tokens are issued in the UI, not here.
    exclude = ["digest"]
    readonly_fields = ["lookup", "created_at", "updated_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Token")
    def token_prefix(self, obj) -> str:
        return f"{obj.PREFIX}{obj.lookup}…"

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        from workspaces.services import revoke_token

        tokens = list(queryset.filter(revoked_at__isnull=True))
        for token in tokens:
            revoke_token(token=token)
        self.message_user(request, f"{len(tokens)} token(s) revoked")
