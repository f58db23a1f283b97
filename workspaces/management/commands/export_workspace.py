"""``manage.py export_workspace <slug> <file>``: all of a workspace's data, secrets excluded."""

import os
import sys

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
            out = self.stdout._out.buffer
            try:
                summary = export_workspace(workspace=workspace, out=out)
                out.flush()
            except BrokenPipeError:
                # The reader stopped early (``| head``): stop quietly, as cat does. Python
                # would flush stdout again at exit and complain; point it at /dev/null.
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
                sys.exit(1)
        else:
            try:
                out = open(file, "wb")  # noqa: SIM115 - closed below, after the export
            except OSError as exc:
                raise CommandError(f"Cannot write {file}: {exc.strerror}.") from None
            with out:
                summary = export_workspace(workspace=workspace, out=out)
        counts = ", ".join(f"{label} {n}" for label, n in summary.counts.items() if n)
        self.stderr.write(f"Exported “{workspace.slug}”: {counts}.")
