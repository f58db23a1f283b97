"""PostgreSQL-only indexes for the trace list's free-text and tag filters.

Free-text search is ``search_text__icontains``, which Django renders on PostgreSQL as
``UPPER("search_text"::text) LIKE UPPER(%s)``; a trigram GIN index on exactly that
expression answers it without a sequential scan of every payload. Tags use JSON
containment (``@>``). SQLite keeps plain scans: it serves single-user installs.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS trace_search_trgm_idx ON traces_trace "
    'USING gin ((UPPER("search_text"::text)) gin_trgm_ops)',
    "CREATE INDEX IF NOT EXISTS trace_tags_gin_idx ON traces_trace USING gin (tags jsonb_path_ops)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS trace_search_trgm_idx",
    "DROP INDEX IF EXISTS trace_tags_gin_idx",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("traces", "0002_eval_sets_and_feedback")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
