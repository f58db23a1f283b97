"""``manage.py import_workspace <file> [--slug new-slug]``: a new workspace from an archive."""

from django.core.management.base import BaseCommand, CommandError

from iofold.workspace_data import ArchiveError, import_workspace


class Command(BaseCommand):
    help = (
        "Create a workspace from an export_workspace archive, with new ids, in one "
        "transaction. Integrations that sync come in disabled: enter their keys again."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--slug", help="slug of the new workspace (default: the archive's)")

    def handle(self, *args, file, slug, **options):
        try:
            with open(file, "rb") as source:
                summary = import_workspace(source=source, slug=slug)
        except FileNotFoundError:
            raise CommandError(f"No such file: {file}") from None
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        except ArchiveError as exc:
            raise CommandError(exc.message) from None
        counts = ", ".join(f"{label} {n}" for label, n in summary.counts.items() if n)
        self.stdout.write(f"Imported “{summary.workspace.slug}”: {counts}.")
        self.stdout.write("Not in the archive, to enter again:")
        for line in summary.to_enter_again:
            self.stdout.write(f"  - {line}")
