"""Re-encryption of every stored secret under the first key of IOFOLD_ENCRYPTION_KEYS."""

from __future__ import annotations

import logging

from django.apps import apps
from django.db import connections, router, transaction

from iofold.lib import crypto
from iofold.lib.fields import EncryptedTextField

logger = logging.getLogger(__name__)

BATCH = 500


def encrypted_fields() -> list[tuple[type, EncryptedTextField]]:
    """Return every (concrete model, field) pair stored with ``EncryptedTextField``."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField) and field.model is model:
                found.append((model, field))
    return found


def rotate_encrypted_fields() -> dict[str, int]:
    """Re-encrypt every stored secret under the first key; return counts per model field.

    Raw column values are read and written with SQL, so the plaintext never passes through
    model instances, signals or ``save()``. Each column is rotated in one transaction.
    """
    counts: dict[str, int] = {}
    for model, field in encrypted_fields():
        alias = router.db_for_write(model)
        connection = connections[alias]
        table = connection.ops.quote_name(model._meta.db_table)
        column = connection.ops.quote_name(field.column)
        pk = connection.ops.quote_name(model._meta.pk.column)
        label = f"{model._meta.label}.{field.name}"
        rotated = 0
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {pk}, {column} FROM {table} "  # noqa: S608 - quoted identifiers only
                f"WHERE {column} IS NOT NULL AND {column} <> '' ORDER BY {pk}"
            )
            rows = cursor.fetchall()
            for start in range(0, len(rows), BATCH):
                updates = [
                    (crypto.rotate(token), key) for key, token in rows[start : start + BATCH]
                ]
                cursor.executemany(
                    f"UPDATE {table} SET {column} = %s WHERE {pk} = %s",  # noqa: S608
                    updates,
                )
                rotated += len(updates)
        counts[label] = rotated
        logger.info("secrets re-encrypted field=%s count=%d", label, rotated)
    return counts
