from django.core.management.base import BaseCommand, CommandError

from iofold.lib.crypto import DecryptionError


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (every EncryptedTextField of every model) under the "
        "first key of IOFOLD_ENCRYPTION_KEYS. Put the new key first, keep the old ones after "
        "it, run this, then drop the old keys."
    )

    def handle(self, *args, **options):
        from integrations.encryption import rotate_encrypted_fields

        try:
            counts = rotate_encrypted_fields()
        except DecryptionError as exc:
            raise CommandError(
                f"{exc}. Keep every old key in IOFOLD_ENCRYPTION_KEYS until rotation succeeds."
            ) from None
        for label, count in counts.items():
            self.stdout.write(f"{label}: {count} re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"Done: {sum(counts.values())} secrets re-encrypted."))
