"""Cursors for statements whose parameters are big: sent apart from the statement's text."""

from __future__ import annotations

from django.db import connection


def server_bound_cursor():
    """Return a cursor that sends its parameters apart from the statement (PostgreSQL).

    Django's psycopg cursors splice every value into the statement's text: for a batch's
    document of several hundred kilobytes, escaping it here and lexing it back on the
    server cost about as much as parsing it as JSON, and a list of keys is quoted one key
    at a time in Python. Wrapped like Django's own cursors, so query logging and execute
    wrappers still see it.
    """
    import psycopg  # the PostgreSQL driver: only this backend calls here

    connection.ensure_connection()
    return connection._prepare_cursor(psycopg.Cursor(connection.connection))
