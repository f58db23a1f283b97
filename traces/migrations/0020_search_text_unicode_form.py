"""Rewrite stored search texts in the form free-text search compares (``search_form``).

Ingest now stores the search text in NFKC and the trace filter normalises its query the
same way; rows written before kept the form their source sent (NFD "cafe\u0301" from
macOS, full-width letters), which a typed "café" did not find. Only rows with a non-ASCII
character can differ: the database picks those, a batch at a time by primary key, so
neither the payloads nor all rows are read into memory. Not atomic: each batch commits on
its own (no transaction holding a lock on every trace of a big table), and a rerun after
an interruption redoes nothing already done. Backwards is a no-op: the old form is gone,
and the new one searches as well for the old code.
"""

from django.db import migrations

from iofold.lib.text import search_form

BATCH = 500
# Any character past ASCII (NUL cannot be in a PostgreSQL text); Python's re on SQLite.
NON_ASCII = r"[^\x01-\x7f]"


def forwards(apps, schema_editor):
    Trace = apps.get_model("traces", "Trace")
    rows = Trace.objects.using(schema_editor.connection.alias).filter(search_text__regex=NON_ASCII)
    last = 0
    while batch := list(
        rows.filter(pk__gt=last).order_by("pk").values_list("pk", "search_text")[:BATCH]
    ):
        last = batch[-1][0]
        changed = [
            Trace(pk=pk, search_text=normal)
            for pk, text in batch
            if (normal := search_form(text)) != text
        ]
        Trace.objects.using(schema_editor.connection.alias).bulk_update(changed, ["search_text"])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("traces", "0019_criteria_length_cap")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
