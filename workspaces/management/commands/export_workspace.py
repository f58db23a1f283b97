"""``manage.py export_workspace <slug> <file>``: all of a workspace's data, secrets excluded."""

from django.core.management.base import BaseCommand, CommandError

from iofold.workspace_data import export_workspace
from workspaces.models import Workspace


class Command(BaseCommand):
    help = (
        "Write all of a workspace's data (traces, labels, eval sets, eval versions, runs, "
        "integrations without their keys) to a versioned archive (.jsonl.gz); '-' for stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("file")

    def handle(self, *args, slug, file, **options):
        workspace = Workspace.objects.filter(slug=slug).first()
        if workspace is None:
            raise CommandError(f"No workspace with the slug “{slug}”.")
        if file == "-":
            summary = export_workspace(workspace=workspace, out=self.stdout._out.buffer)
        else:
            with open(file, "wb") as out:
                summary = export_workspace(workspace=workspace, out=out)
        counts = ", ".join(f"{label} {n}" for label, n in summary.counts.items() if n)
        self.stderr.write(f"Exported “{workspace.slug}”: {counts}.")
