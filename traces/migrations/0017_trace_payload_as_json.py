"""Trace payloads stored as PostgreSQL ``json`` (the text written) instead of ``jsonb``.

See traces/fields.py for why and the measurements. On PostgreSQL the table is rewritten
(ACCESS EXCLUSIVE lock: traces can be neither read nor written meanwhile, roughly as long
as copying the table; docs/operations.md, "Upgrade notes"). Existing payloads keep the
text ``jsonb`` printed for them, which is what evals received so far; payloads written
from now on are stored as their canonical encoding. LZ4 compression (``traces 0013``) is
kept. SQLite stores JSON as text either way: nothing to do there.
"""

from django.db import migrations

import traces.fields


def _retype(to: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT attcompression FROM pg_attribute"
                " WHERE attrelid = 'traces_trace'::regclass AND attname = 'data'"
            )
            (compression,) = cursor.fetchone()
        sql = f'ALTER TABLE traces_trace ALTER COLUMN "data" TYPE {to} USING "data"::{to}'
        # A new type resets the column's compression: set again in the same statement, the
        # rewrite compresses with it.
        if compression == "l":
            sql += ', ALTER COLUMN "data" SET COMPRESSION lz4'
        schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("traces", "0016_matrix_stamp_rewritten_traces")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="trace", name="data", field=traces.fields.PayloadField()
                )
            ],
            database_operations=[migrations.RunPython(_retype("json"), _retype("jsonb"))],
        )
    ]
