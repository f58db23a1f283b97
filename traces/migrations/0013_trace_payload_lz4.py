"""Trace payloads compressed with LZ4 on PostgreSQL, when the server has it.

A payload is a few kB of JSON, so PostgreSQL compresses it out of line (TOAST) on every
write; with pglz, the default, that was about a fifth of a batch upsert's INSERT time
(OTLP receive bench). LZ4 compresses and decompresses several times faster. Rows written
before keep pglz until rewritten, and read back alike. SQLite, servers before 14 and
servers built without LZ4 are left as they are.
"""

from django.db import migrations

from iofold.lib.compression import compress_column_with


class Migration(migrations.Migration):
    dependencies = [("traces", "0012_feedback_labels_covering_index")]

    operations = [
        migrations.RunPython(
            compress_column_with("lz4", "traces_trace", "data"),
            compress_column_with("pglz", "traces_trace", "data"),
        )
    ]
