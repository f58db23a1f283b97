"""``manage.py delete_workspace <slug>``: erase a workspace after a grace period."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from workspaces.exceptions import WorkspaceError
from workspaces.models import Workspace
from workspaces.services import (
    cancel_workspace_deletion,
    request_workspace_deletion,
    schedule_workspace_deletion,
)


class Command(BaseCommand):
    help = (
        "Schedule the deletion of a workspace and all its data after a grace period "
        "(default 30 days; a periodic task carries it out), cancel it with --cancel, or "
        "start it at once with --now."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--grace-days", type=int, default=30)
        group.add_argument("--cancel", action="store_true")
        group.add_argument("--now", action="store_true")

    def handle(self, *args, slug, grace_days, cancel, now, **options):
        workspace = Workspace.objects.filter(slug=slug).first()
        if workspace is None:
            raise CommandError(f"No workspace with the slug “{slug}”.")
        if grace_days < 0:
            raise CommandError("--grace-days cannot be negative.")
        try:
            if cancel:
                cancel_workspace_deletion(workspace=workspace)
                self.stdout.write(f"Deletion of “{slug}” cancelled.")
            elif now:
                request_workspace_deletion(workspace=workspace)
                self.stdout.write(f"“{slug}” is hidden and being deleted by a worker.")
            else:
                schedule_workspace_deletion(workspace=workspace, grace=timedelta(days=grace_days))
                when = workspace.deletion_scheduled_for
                self.stdout.write(
                    f"“{slug}” will be deleted after {when:%Y-%m-%d %H:%M} UTC; "
                    f"cancel with: manage.py delete_workspace {slug} --cancel"
                )
        except WorkspaceError as exc:
            raise CommandError(str(exc)) from None
