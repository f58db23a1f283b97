"""A conversation's turns indexed with the figures ingest recomputes: SQLite reads them index-only.

Every batch that touches a conversation recomputes its turn count, first and last turn,
errors and cost from all its turns (traces.conversations). SQLite read those from the
trace rows, stepping over each payload to reach has_error and cost, so a batch cost a
read of every touched conversation's payloads and grew with the conversations. The new
index leads with the conversation, so it also serves the foreign key, whose own index
(conversation_id alone) is dropped here by name: altering the field would make SQLite
copy the whole table.
"""

from django.db import migrations, models

# Django's name for the foreign key's index (table, column and a hash of both).
FK_INDEX = "traces_trace_conversation_id_869f822b"


class Migration(migrations.Migration):
    dependencies = [("traces", "0014_trace_list_index_includes_source")]

    operations = [
        migrations.AddIndex(
            model_name="trace",
            index=models.Index(
                fields=["conversation", "timestamp", "id", "has_error", "cost"],
                name="trace_conversation_turns_idx",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="trace",
                    name="conversation",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        related_name="turns",
                        to="traces.conversation",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{FK_INDEX}"',
                    f'CREATE INDEX "{FK_INDEX}" ON "traces_trace" ("conversation_id")',
                ),
            ],
        ),
    ]
