"""Fold the case of stored search texts (``search_form`` now case folds, after NFKC).

Free-text search is ``icontains``: SQLite's LIKE folds ASCII letters only, so a stored
"ÉCOLE" was not found by "école" there. Ingest now stores the search text case folded and
the filter folds its query the same way. Rows written before are rewritten by the same
batched pass as 0020 (non-ASCII rows only, by primary key, each batch committed on its
own, a rerun redoing nothing done); backwards is a no-op, as folded text searches as well
for the old code.
"""

import importlib

from django.db import migrations

unicode_form = importlib.import_module("traces.migrations.0020_search_text_unicode_form")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("traces", "0022_feedback_set_created_index")]

    operations = [migrations.RunPython(unicode_form.forwards, migrations.RunPython.noop)]
