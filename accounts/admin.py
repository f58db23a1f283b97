from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import User
from iofold.lib.admin import CountedDeletionMixin


@admin.register(User)
class UserAdmin(CountedDeletionMixin, BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "workspace_count", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    readonly_fields = ["date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]}),
    ]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_workspaces=Count("memberships"))

    @admin.display(description="Workspaces", ordering="_workspaces")
    def workspace_count(self, obj) -> int:
        return obj._workspaces
