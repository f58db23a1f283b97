"""A JSON column kept as the text written: PostgreSQL's ``json`` rather than ``jsonb``.

A trace's payload is written once and read whole, as text, by every eval run; nothing
queries inside it but a few key reads for a page's snippets. ``jsonb`` made PostgreSQL
parse each payload into its binary form on every write and print it back as text on
every read: in ``psql`` on 10,000 synced Langfuse payloads (2.6 kB each, LZ4 as
``traces 0013`` sets), the batch upsert's statements took 289 ms instead of 405 and
reading ``data::text`` 50 ms instead of 150 (``data -> 'input'`` 93 ms instead of 12: a
``json`` value is parsed to find a key). ``json`` has no equality operator, so the column
cannot be compared, grouped by or DISTINCT-ed, nor indexed as ``jsonb``: none of which
a payload needs.

The stored text is the payload's canonical encoding (``jsontext.dumps_sorted``: sorted
keys, no spaces), the one its content hash is taken of, whether the batch upsert or the
ORM writes it. Other databases store JSON as Django's ``JSONField`` does.
"""

from __future__ import annotations

from django.db import models

from iofold.lib import jsontext


class PayloadField(models.JSONField):
    """``JSONField`` stored as ``json`` on PostgreSQL, read back as the text stored.

    psycopg decodes ``json`` results itself unless told otherwise, and ``JSONField``
    decodes the text it expects again: ``register_text_loader`` makes a connection return
    ``json`` as text, as Django does for ``jsonb``.
    """

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        from psycopg.types.json import Json  # the PostgreSQL driver: only this backend

        if not prepared:
            value = self.get_prep_value(value)
        # json, not jsonb: a jsonb parameter would be stored as jsonb prints it.
        return Json(value, dumps=jsontext.dumps_sorted)


def register_text_loader(sender, connection, **kwargs) -> None:
    """Make a new PostgreSQL connection return ``json`` values as text (``connection_created``)."""
    if connection.vendor != "postgresql":
        return
    from psycopg.types.string import TextLoader

    connection.connection.adapters.register_loader("json", TextLoader)
