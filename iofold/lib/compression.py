"""Which method PostgreSQL compresses a column's large values with (TOAST), for migrations.

pglz, the server's default, is slow to compress: a few kB of JSON per row, or a run's
10,000 trace ids (120 kB as ``jsonb``) in one, spent more time being compressed than
written. LZ4 compresses several times faster at a similar size. Rows written before keep
their method until rewritten, and read back alike. SQLite, servers before 14 and servers
built without LZ4 are left as they are.
"""

from collections.abc import Callable


def compress_column_with(method: str, table: str, column: str) -> Callable:
    """Return a ``RunPython`` function that makes ``table.column`` use ``method``."""

    def run(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT %s = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'",
                [method],
            )
            row = cursor.fetchone()
        if row and row[0]:
            quote = schema_editor.quote_name
            schema_editor.execute(
                f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} SET COMPRESSION {method}"
            )

    return run
