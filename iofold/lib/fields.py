import logging
from collections.abc import Iterable

from django.db import models

from iofold.lib import crypto

logger = logging.getLogger(__name__)


class UnreadableSecret(str):
    """A stored secret that no configured key decrypts (a database restored without its
    keys, an old key dropped too early): empty to the code, so pages open and the secret
    can be entered again, and written back unchanged by a save that does not replace it."""

    def __new__(cls, token: str):
        secret = super().__new__(cls, "")
        secret.token = token
        return secret


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; Python code sees the plaintext.

    Every model using it is found by ``rotate_encryption_keys`` through this class.
    """

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        try:
            return crypto.decrypt(value)
        except crypto.DecryptionError:
            logger.warning(
                "a stored secret of %s.%s cannot be decrypted with IOFOLD_ENCRYPTION_KEYS: "
                "treated as not set until it is entered again or its key is configured",
                self.model._meta.label,
                self.name,
            )
            return UnreadableSecret(value)

    def get_prep_value(self, value):
        if isinstance(value, UnreadableSecret):
            return value.token
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(value)


def last_four(secret: str | None) -> str:
    """Return the hint shown in place of a secret: its last four characters."""
    if not secret:
        return ""
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"


# Primary keys are signed 64-bit integers (BigAutoField) on every backend.
MAX_ID = 2**63 - 1


def possible_ids(ids: Iterable[int]) -> list[int]:
    """Return those of ``ids`` that a row can have: for ``pk__in`` with ids a user typed.

    SQLite refuses a query holding a larger integer (OverflowError) rather than finding
    nothing; an id out of range names no row, so it is left out and reported as missing.
    """
    return [pk for pk in ids if 0 < pk <= MAX_ID]


def parse_id(value) -> int | None:
    """Return the id that ``value`` (a query parameter) holds, or None if no row can have it.

    A filter on a foreign key (``integration_id=``) with an integer past 64 bits fails in
    the database (SQLite: OverflowError) instead of matching nothing.
    """
    try:
        pk = int(value)
    except (TypeError, ValueError):
        return None
    return pk if 0 < pk <= MAX_ID else None


def whole_number(value: str | None) -> int | None:
    """Return the whole number that ``value`` spells in ASCII digits, else None.

    ``str.isdigit`` also holds for "²" and other digits that ``int`` refuses, as it
    refuses more than 4,300 digits (a ValueError: a 500 where a query parameter was only
    checked with ``isdigit``).
    """
    if not (value and value.isascii() and value.isdigit()):
        return None
    try:
        return int(value)
    except ValueError:  # past sys.get_int_max_str_digits()
        return None
