"""A verdict's workspace and eval are its run's: the database checks the run and the trace.

The run's own foreign keys hold its eval and that eval's workspace, so checking the same
two rows again for every verdict written (two look-ups a verdict at commit) guarded
nothing more. Deletes still cascade through Django's collector. See docs/sandbox.md.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("evals", "0014_matrix_verdicts_by_word_index"),
        ("workspaces", "0003_workspace_deletion_scheduled_for"),
    ]

    operations = [
        migrations.AlterField(
            model_name="evalexecution",
            name="eval",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="executions",
                to="evals.eval",
            ),
        ),
        migrations.AlterField(
            model_name="evalexecution",
            name="workspace",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                to="workspaces.workspace",
            ),
        ),
    ]
