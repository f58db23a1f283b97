"""Liveness of the two things iofold cannot work without: the database and the broker."""

from django.db import connection

from iofold.celery import app, ensure_broker_folders


def check_database() -> tuple[bool, str]:
    """Return whether the database answers a trivial query, and why not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"
        return False, type(exc).__name__
    return True, "ok"


def check_broker() -> tuple[bool, str]:
    """Return whether the Celery broker accepts a connection, and why not."""
    try:
        ensure_broker_folders()
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return False, type(exc).__name__
    return True, "ok"
