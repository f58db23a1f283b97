"""Attach traces the Agents SDK exporter sent before its source existed to that source.

They were stored without an integration (natural key namespace ``openai``); the receiver
now records them on the workspace's OpenAI Agents SDK source (namespace ``i<pk>``), so a
trace posted again after this is merged into its row rather than stored twice.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    Trace = apps.get_model("traces", "Trace")
    Integration = apps.get_model("integrations", "Integration")
    orphans = Trace.objects.filter(source="openai", source_key="openai", integration=None)
    for workspace_id in orphans.values_list("workspace_id", flat=True).distinct():
        source = (
            Integration.objects.filter(workspace_id=workspace_id, kind="openai_agents")
            .order_by("created_at", "id")
            .first()
        )
        if source is None:
            taken = Integration.objects.filter(
                workspace_id=workspace_id, name="OpenAI Agents SDK"
            ).exists()
            source = Integration.objects.create(
                workspace_id=workspace_id,
                kind="openai_agents",
                name="OpenAI Agents SDK (received)" if taken else "OpenAI Agents SDK",
                host="",
            )
        orphans.filter(workspace_id=workspace_id).update(
            integration=source, source_key=f"i{source.pk}"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("traces", "0006_sources_of_every_integration_kind"),
        ("integrations", "0006_openai_agents_source_kind"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
