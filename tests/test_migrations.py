import pytest
from django.core.management import call_command


def test_models_and_migrations_agree(db):
    """A model change without its migration fails here (``makemigrations --check``)."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_agents_sdk_traces_stored_before_their_source_join_it(transactional_db):
    """Traces the Agents SDK posted before its source existed are attached to one, so a
    later post of the same trace merges into them instead of storing a second copy."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("traces", "0006_sources_of_every_integration_kind"),
              ("integrations", "0006_openai_agents_source_kind")]  # fmt: skip
    after = [("traces", "0007_agents_sdk_traces_to_their_source")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Workspace = apps.get_model("workspaces", "Workspace")
    Trace = apps.get_model("traces", "Trace")
    workspace = Workspace.objects.create(name="W", slug="w")
    Trace.objects.create(
        workspace=workspace, source="openai", source_key="openai", external_id="trace_1",
        timestamp="2026-01-01T00:00:00Z", data={"id": "trace_1"},
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    from integrations.models import Integration
    from traces.models import Trace as CurrentTrace

    source = Integration.objects.get(workspace_id=workspace.pk, kind="openai_agents")
    trace = CurrentTrace.objects.get(external_id="trace_1")
    assert (trace.integration_id, trace.source_key) == (source.pk, f"i{source.pk}")


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("traces_trace", "data"),
        # Written at every automatic run's start (a run's ids, then its chunks').
        ("evals_evalrun", "trace_ids"),
        ("evals_evalrunchunk", "trace_ids"),
    ],
)
def test_large_values_are_compressed_with_lz4_on_postgresql(db, table, column):
    """Where the server has LZ4, payloads and run trace ids use it (faster than pglz)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("TOAST compression is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        if not cursor.fetchone()[0]:
            pytest.skip("this server has no LZ4")
        cursor.execute(
            "SELECT attcompression FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = %s",
            [table, column],
        )
        assert cursor.fetchone()[0] == "l"
