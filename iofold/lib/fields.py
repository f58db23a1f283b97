from django.db import models

from iofold.lib import crypto


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; Python code sees the plaintext.

    Every model using it is found by ``rotate_encryption_keys`` through this class.
    """

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(value)


def last_four(secret: str | None) -> str:
    """Return the hint shown in place of a secret: its last four characters."""
    if not secret:
        return ""
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"
