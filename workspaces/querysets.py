from django.db import models


class WorkspaceQuerySet(models.QuerySet):
    """Base queryset of every customer-owned model: the one way to scope a query."""

    def for_workspace(self, workspace):
        return self.filter(workspace=workspace)


class WorkspaceManagerQuerySet(models.QuerySet):
    """Queries on workspaces themselves."""

    def for_user(self, user):
        if not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user, deletion_requested_at__isnull=True)


class MembershipQuerySet(WorkspaceQuerySet):
    def for_user(self, user):
        if not user.is_authenticated:
            return self.none()
        return self.filter(user=user, workspace__deletion_requested_at__isnull=True)


class ApiTokenQuerySet(WorkspaceQuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class InvitationQuerySet(WorkspaceQuerySet):
    def pending(self):
        from django.utils import timezone

        # A workspace being deleted waits for nobody: joining it would lead to a 404.
        return self.filter(
            accepted_at__isnull=True,
            expires_at__gt=timezone.now(),
            workspace__deletion_requested_at__isnull=True,
        )
