"""A run's and its chunks' trace ids compressed with LZ4 on PostgreSQL, when the server has it.

The start of an automatic run writes every new trace's id twice, in the run's row and
split over its chunks' (10,000 ids: 120 kB of ``jsonb`` each time); pglz took about 10 ms
to compress each, a third of the start task's time before the first chunk can begin, LZ4
about 1 ms at a similar size. See docs/sandbox.md.
"""

from django.db import migrations

from iofold.lib.compression import compress_column_with

COLUMNS = [("evals_evalrun", "trace_ids"), ("evals_evalrunchunk", "trace_ids")]


class Migration(migrations.Migration):
    dependencies = [("evals", "0015_execution_checks_run_and_trace_only")]

    operations = [
        migrations.RunPython(
            compress_column_with("lz4", table, column),
            compress_column_with("pglz", table, column),
        )
        for table, column in COLUMNS
    ]
