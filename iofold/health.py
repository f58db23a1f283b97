"""Liveness of the two things iofold cannot work without: the database and the broker."""

from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from iofold.celery import app


def check_database(db=None) -> tuple[bool, str]:
    """Return whether the database answers with its schema in place, and why not.

    ``SELECT 1`` is not enough: SQLite opens a deleted database file as a new, empty one
    and answers it happily. The migrations table must be there and filled, as it is in
    every migrated database.
    """
    db = db or connection
    table = MigrationRecorder.Migration._meta.db_table
    try:
        with db.cursor() as cursor:
            # Introspection rather than a failing SELECT: an error would break the
            # transaction the caller may be in.
            if table not in db.introspection.table_names(cursor):
                return False, "schema missing"
            cursor.execute(f"SELECT 1 FROM {db.ops.quote_name(table)} LIMIT 1")  # noqa: S608
            if cursor.fetchone() is None:
                return False, "schema missing"
    except Exception as exc:  # any driver error means "down"
        return False, type(exc).__name__
    return True, "ok"


def check_broker() -> tuple[bool, str]:
    """Return whether the Celery broker accepts a connection, and why not."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return False, type(exc).__name__
    return True, "ok"
