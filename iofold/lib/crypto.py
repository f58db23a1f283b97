"""Encryption of secrets at rest: MultiFernet over ``settings.IOFOLD_ENCRYPTION_KEYS``.

The first key encrypts; every key decrypts, so a new key can be put first and the stored
values re-encrypted (``rotate_encryption_keys``) before the old one is dropped.
"""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


def _fernet() -> MultiFernet:
    keys = settings.IOFOLD_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured("IOFOLD_ENCRYPTION_KEYS is empty")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "IOFOLD_ENCRYPTION_KEYS must be comma-separated Fernet keys"
        ) from exc


def encrypt(plaintext: str) -> str:
    """Return the token that stores ``plaintext`` under the first key."""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str, *, ttl: int | None = None) -> str:
    """Return the plaintext of a stored token, trying every key; with ``ttl``, only of a
    token made at most that many seconds ago (else ``DecryptionError``)."""
    try:
        return _fernet().decrypt(token.encode(), ttl=ttl).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with the configured keys"
        ) from None


def rotate(token: str) -> str:
    """Return ``token`` re-encrypted under the first key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with the configured keys"
        ) from None
